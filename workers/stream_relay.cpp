#include "workers/stream_relay.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "common/log.hpp"

namespace pfp::worker {

namespace {
constexpr size_t kPipeSize = 256 * 1024;
constexpr int kAcceptBatch = 64;
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr uint32_t kListenEvents = EPOLLIN | EPOLLEXCLUSIVE;  // one worker woken per connection
}  // namespace

StreamRelay::StreamRelay(EventLoop& loop, unique_fd listener, Connector& connector,
                         RelayOptions opts)
    : loop_(loop),
      listener_(std::move(listener)),
      connector_(connector),
      opts_(std::move(opts)),
      pipes_(std::make_unique<PipePool>(kPipeSize)),
      buffers_(std::make_unique<BufferPool>()) {}

StreamRelay::~StreamRelay() {
    connecting_.clear();
    relaying_.clear();
    closed_.clear();
    ready_.clear();
    awaiting_fd_.clear();
}

void StreamRelay::start() {
    if (!loop_.add(listener_.get(), kListenEvents, this)) throw_errno("epoll_ctl(listener)");
    accepting_ = true;
}

void StreamRelay::stop_accepting() {
    if (!listener_) return;
    if (accepting_ && !paused_) loop_.remove(listener_.get());
    accepting_ = false;
    listener_.reset();
}

void StreamRelay::on_event(uint32_t) {
    accept_ready();
}

bool StreamRelay::log_allowed(Clock::time_point& last, uint64_t& suppressed) {
    auto now = Clock::now();
    if (now - last < std::chrono::seconds(1)) {
        ++suppressed;
        return false;
    }
    last = now;
    return true;
}

void StreamRelay::pause_accepting(Clock::duration for_how_long) {
    if (paused_ || !accepting_) return;
    loop_.remove(listener_.get());
    paused_ = true;
    if (for_how_long.count() > 0) resume_at_ = Clock::now() + for_how_long;
}

void StreamRelay::resume_accepting() {
    if (!paused_ || !accepting_) return;
    if (static_cast<int>(active_) >= opts_.max_connections) return;
    if (!loop_.add(listener_.get(), kListenEvents, this)) {
        resume_at_ = Clock::now() + kAcceptRetry;
        return;
    }
    paused_ = false;
    resume_at_.reset();
}

void StreamRelay::accept_ready() {
    for (int i = 0; i < kAcceptBatch && accepting_ && !paused_; ++i) {
        if (static_cast<int>(active_) >= opts_.max_connections) {
            // Leave further clients in the kernel backlog until a connection closes.
            pause_accepting(Clock::duration::zero());
            return;
        }
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EINTR) return;
            if (err == ECONNABORTED || err == EPROTO || err == EPERM) continue;
            // EMFILE, ENFILE, ENOBUFS, ENOMEM...: never fatal. Clients wait in the backlog and
            // accepting resumes shortly (or as soon as a connection closes).
            stats_.accept_errors++;
            if (log_allowed(last_accept_log_, accept_logs_suppressed_)) {
                log::warning(
                    opts_.tag, ": accept failed: ", std::strerror(err), "; pausing accept for ",
                    kAcceptRetry.count(), " ms", accept_logs_suppressed_ ? " (" : "",
                    accept_logs_suppressed_
                        ? std::to_string(accept_logs_suppressed_) + " similar messages suppressed)"
                        : "");
                accept_logs_suppressed_ = 0;
            }
            pause_accepting(kAcceptRetry);
            return;
        }
        unique_fd client(fd);
        stats_.accepted++;
        connector_.prepare_client(client.get());
        auto it = all_.emplace(all_.end(), *this, std::move(client), !opts_.splice);
        Connection& c = *it;
        c.self = it;
        c.since = Clock::now();
        ++active_;
        stats_.active = active_;
        connecting_.push_back(c);
        if (!c.register_client()) continue;
        if (!connect_upstream(c)) return;  // out of fds: stop accepting for now
    }
}

bool StreamRelay::connect_upstream(Connection& c) {
    unique_fd up;
    int err = connector_.start_connect(c.client.fd.get(), up);
    if (err == 0) {
        c.attach_upstream(std::move(up));
        return true;
    }
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Keep the client: it waits (within its connect timeout) until an fd frees up.
        if (!c.awaiting_fd) {
            c.awaiting_fd = true;
            awaiting_fd_.push_back(c);
        }
        stats_.accept_errors++;
        if (log_allowed(last_accept_log_, accept_logs_suppressed_)) {
            log::warning(opts_.tag, ": no fd for an upstream socket: ", std::strerror(err),
                         "; pausing accept for ", kAcceptRetry.count(), " ms");
            accept_logs_suppressed_ = 0;
        }
        pause_accepting(kAcceptRetry);
        if (!resume_at_) resume_at_ = Clock::now() + kAcceptRetry;
        return false;
    }
    stats_.connect_failures++;
    c.close("connect failed", err);
    return true;
}

void StreamRelay::retry_awaiting() {
    while (!awaiting_fd_.empty()) {
        Connection& c = awaiting_fd_.front();
        awaiting_fd_.pop_front();
        c.awaiting_fd = false;
        if (!connect_upstream(c)) return;  // still none: back in the list, try later
    }
}

void StreamRelay::connected(Connection& c) {
    connecting_.erase(connecting_.iterator_to(c));
    c.since = Clock::now();
    relaying_.push_back(c);
}

void StreamRelay::touch(Connection& c) {
    if (opts_.idle_timeout.count() == 0) return;
    c.since = Clock::now();
    relaying_.erase(relaying_.iterator_to(c));
    relaying_.push_back(c);
}

void StreamRelay::requeue(Connection& c) {
    if (c.queued) return;
    c.queued = true;
    ready_.push_back(c);
}

void StreamRelay::connection_closed(Connection& c, const char* reason, int err) {
    if (c.connecting) {
        connecting_.erase(connecting_.iterator_to(c));
        if (reason != nullptr && log_allowed(last_connect_log_, connect_logs_suppressed_)) {
            log::warning(opts_.tag, ": ", reason, " to ", connector_.describe(), err ? ": " : "",
                         err ? std::strerror(err) : "", connect_logs_suppressed_ ? " (" : "",
                         connect_logs_suppressed_
                             ? std::to_string(connect_logs_suppressed_) + " similar suppressed)"
                             : "");
            connect_logs_suppressed_ = 0;
        }
    } else {
        relaying_.erase(relaying_.iterator_to(c));
    }
    if (c.queued) {
        ready_.erase(ready_.iterator_to(c));
        c.queued = false;
    }
    if (c.awaiting_fd) {
        awaiting_fd_.erase(awaiting_fd_.iterator_to(c));
        c.awaiting_fd = false;
    }
    closed_.push_back(c);
    --active_;
    stats_.active = active_;
    if (!awaiting_fd_.empty()) {
        retry_awaiting();  // this close freed fds
        if (!awaiting_fd_.empty()) return;
    }
    if (paused_ && (!resume_at_ || awaiting_fd_.empty())) resume_accepting();
}

std::optional<Clock::time_point> StreamRelay::tick(Clock::time_point now) {
    // Connections whose budget ran out continue now; each gets one more round per tick.
    if (!ready_.empty()) {
        ReadyList batch;
        batch.swap(ready_);
        while (!batch.empty()) {
            Connection& c = batch.front();
            batch.pop_front();
            c.queued = false;
            c.pump();
        }
    }
    while (!connecting_.empty() && connecting_.front().since + opts_.connect_timeout <= now) {
        stats_.connect_failures++;
        connecting_.front().close("connect timed out", ETIMEDOUT);
    }
    if (opts_.idle_timeout.count() > 0) {
        while (!relaying_.empty() && relaying_.front().since + opts_.idle_timeout <= now)
            relaying_.front().close(nullptr);
    }
    while (!closed_.empty()) {
        Connection& c = closed_.front();
        closed_.pop_front();
        all_.erase(c.self);
    }
    if (paused_ && resume_at_ && *resume_at_ <= now) {
        retry_awaiting();
        if (awaiting_fd_.empty())
            resume_accepting();
        else
            resume_at_ = now + kAcceptRetry;
    }

    std::optional<Clock::time_point> next;
    auto consider = [&](Clock::time_point t) {
        if (!next || t < *next) next = t;
    };
    if (!ready_.empty()) consider(now);
    if (!connecting_.empty()) consider(connecting_.front().since + opts_.connect_timeout);
    if (opts_.idle_timeout.count() > 0 && !relaying_.empty())
        consider(relaying_.front().since + opts_.idle_timeout);
    if (paused_ && resume_at_) consider(*resume_at_);
    return next;
}

}  // namespace pfp::worker
