#include "workers/stream_relay.hpp"

#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/original_dst.hpp"
#include "common/proxy_protocol.hpp"
#include "common/transparent_header.hpp"
#include "workers/redirected_destination.hpp"

namespace pfp::worker {

namespace {
constexpr size_t kPipeSize = 256 * 1024;
constexpr int kAcceptBatch = 64;
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr uint32_t kListenEvents = EPOLLIN | EPOLLEXCLUSIVE;  // one worker woken per connection
}  // namespace

StreamRelay::StreamRelay(EventLoop& loop, unique_fd listener, const Route& route, RelayOptions opts)
    : loop_(loop),
      listener_(std::move(listener)),
      route_(route),
      opts_(std::move(opts)),
      pipes_(std::make_unique<PipePool>(kPipeSize)),
      buffers_(std::make_unique<BufferPool>()) {
    if (!route_.upstream_host.empty())
        addresses_ = std::make_shared<const std::vector<SockAddr>>(route_.upstream_addresses);
    if (opts_.relay_threads > 0)
        threads_ = std::make_unique<ThreadRelay>(*this, opts_.relay_threads);
}

std::chrono::milliseconds StreamRelay::attempt_timeout() const {
    // connect_timeout shared by a host name's addresses, so one that never answers (its SYNs
    // dropped) leaves the others their turn; every connection gets the same slice, so the list
    // stays ordered by deadline.
    if (!addresses_ || addresses_->size() < 2) return opts_.connect_timeout;
    const auto n = static_cast<std::chrono::milliseconds::rep>(addresses_->size());
    return std::max(opts_.connect_timeout / n, std::chrono::milliseconds(250));
}

void StreamRelay::set_upstream_addresses(std::vector<SockAddr> addresses) {
    if (!addresses.empty())
        addresses_ = std::make_shared<const std::vector<SockAddr>>(std::move(addresses));
}

bool StreamRelay::try_next_address(Connection& c, int err) {
    Setup* s = c.setup.get();
    if (!s || !s->candidates || s->next_candidate >= s->candidates->size()) return false;
    const SockAddr next = (*s->candidates)[s->next_candidate++];
    if (log_allowed(last_connect_log_, connect_logs_suppressed_)) {
        log::warning(opts_.tag, ": connect to ", format_sockaddr(s->dest.addr), " (",
                     route_.upstream_host, ") failed: ", std::strerror(err), "; trying ",
                     format_sockaddr(next), suppressed_note(connect_logs_suppressed_));
        connect_logs_suppressed_ = 0;
    }
    c.detach_upstream();
    s->dest.addr = next;
    connect_upstream(c);
    return true;
}

StreamRelay::~StreamRelay() {
    if (threads_) threads_->stop_all();  // joins every thread before the connections go
    threaded_.clear();
    header_.clear();
    connecting_.clear();
    relaying_.clear();
    closed_.clear();
    ready_.clear();
    awaiting_fd_.clear();
}

void StreamRelay::start() {
    if (threads_) threads_->start();
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

std::string StreamRelay::suppressed_note(uint64_t n) {
    return n ? " (" + std::to_string(n) + " similar messages suppressed)" : "";
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
                log::warning(opts_.tag, ": accept failed: ", std::strerror(err),
                             "; pausing accept for ", kAcceptRetry.count(), " ms",
                             suppressed_note(accept_logs_suppressed_));
                accept_logs_suppressed_ = 0;
            }
            pause_accepting(kAcceptRetry);
            return;
        }
        unique_fd client(fd);
        stats_.accepted++;
        auto it = all_.emplace(all_.end(), *this, std::move(client), !opts_.splice,
                               route_.listen.family());
        Connection& c = *it;
        c.self = it;
        c.since = loop_.now();
        c.setup = std::make_unique<Setup>();
        c.setup->peer.storage = peer;
        c.setup->peer.len = len;
        ++active_;
        stats_.active = active_;
        connecting_.push_back(c);
        if (auto why = route_.admit(c.setup->peer)) {
            refuse(c, *why);
            continue;
        }
        // Client sockets inherit TCP_NODELAY and keep-alive from the listener (set by the
        // supervisor); only upstream sockets are tuned here.
        if (!c.register_client()) continue;
        if (route_.target == Target::destination_header) {
            c.phase = Phase::reading_header;  // the header arrives as client data
            connecting_.erase(connecting_.iterator_to(c));
            header_.push_back(c);
            continue;
        }
        Endpoint dest = route_.upstream;
        if (addresses_) {  // a host name: its first address, the others on failure
            c.setup->candidates = addresses_;
            c.setup->next_candidate = 1;
            dest.addr = addresses_->front();
        }
        if (!begin_connect(c, std::move(dest))) return;  // out of fds: stop accepting for now
    }
}

void StreamRelay::refuse(Connection& c, const std::string& why) {
    stats_.denied++;
    if (log_allowed(last_deny_log_, deny_logs_suppressed_)) {
        std::string from = c.setup ? format_sockaddr(c.setup->peer) : "?";
        if (from == "unix:") from = "an unnamed peer on " + to_string(route_.listen);
        log::warning(opts_.tag, ": refused connection from ", from, ": ", why,
                     suppressed_note(deny_logs_suppressed_));
        deny_logs_suppressed_ = 0;
    }
    c.close(nullptr);
}

bool StreamRelay::begin_connect(Connection& c, Endpoint dest) {
    Setup& s = *c.setup;
    std::optional<SockAddr> original;
    if (route_.reads_original_destination()) {
        original = original_destination(c.client.fd.get());
        if (!original) {
            refuse(c, "Failed to retrieve original destination from TCP stream");
            return true;
        }
    }
    if (route_.target == Target::original_port) {
        uint16_t port =
            ntohs(original->family() == AF_INET6
                      ? reinterpret_cast<const sockaddr_in6*>(&original->storage)->sin6_port
                      : reinterpret_cast<const sockaddr_in*>(&original->storage)->sin_port);
        dest.port = port;
        dest.original_port = false;
        if (dest.scheme == Scheme::vsock)
            reinterpret_cast<sockaddr_vm*>(&dest.addr.storage)->svm_port = port;
    }
    if (route_.target == Target::original_destination) dest = tcp_endpoint(*original);
    if (route_.target == Target::base_address) {
        auto moved = base_address_destination(dest.addr, port_of(*original),
                                              port_of(local_address(c.client.fd.get())));
        if (!moved) {
            refuse(c, "original destination " + format_sockaddr(*original) +
                          " takes the base address " + to_string(dest) + " out of range");
            return true;
        }
        dest = tcp_endpoint(*moved);
    }
    if (route_.client_chooses_destination() && route_.allow) {
        Decision d = route_.allow->decide(dest.addr);
        if (!d.allowed()) {
            refuse(c, "destination " + format_sockaddr(dest.addr) +
                          " denied: " + std::string(d.reason));
            return true;
        }
    }
    if (route_.proxy_protocol) {
        SockAddr local;
        local.len = sizeof local.storage;
        ::getsockname(c.client.fd.get(), local.get(), &local.len);
        auto h = encode_proxy_v2(s.peer, local);
        s.preamble.append(reinterpret_cast<const char*>(h.data()), h.size);
    }
    if (route_.send_original_destination) {
        auto h = encode_transparent_header(route_.header, original->get(), original->len);
        if (!h) {
            refuse(c, "original destination " + format_sockaddr(*original) +
                          " cannot be sent in the oyster-v4 header (IPv4 only)");
            return true;
        }
        s.preamble.append(reinterpret_cast<const char*>(h->data()), h->size);
    }
    s.fc_handshake = dest.scheme == Scheme::fc_vsock;
    if (route_.log_connections || route_.statistics) {
        c.log = make_connection_log(route_.kind, route_.listen, s.peer, dest,
                                    original ? &*original : nullptr);
        if (route_.log_connections) {
            if (original) log::info("Original destination: ", format_sockaddr(*original));
            log::info(proxying_line(route_.kind, *c.log));
        }
    }
    s.dest = std::move(dest);
    c.phase = Phase::connecting;
    return connect_upstream(c);
}

bool StreamRelay::connect_upstream(Connection& c) {
    unique_fd up;
    int err = start_connect(route_, c.setup->dest, up);
    if (err == 0) {
        c.attach_upstream(std::move(up), c.setup->dest.family());
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
    if (try_next_address(c, err)) return true;
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

void StreamRelay::header_read(Connection& c) {
    header_.erase(header_.iterator_to(c));
    c.phase = Phase::connecting;
    c.since = loop_.now();
    connecting_.push_back(c);
}

void StreamRelay::connected(Connection& c, int upstream_family) {
    connecting_.erase(connecting_.iterator_to(c));
    c.since = loop_.now();
    relaying_.push_back(c);
    if (route_.wants_keepalive(upstream_family)) {
        c.keepalive_at = c.since + route_.keepalive_delay();
        keepalive_due_.push_back(c);
    }
}

void StreamRelay::touch(Connection& c) {
    if (opts_.idle_timeout.count() == 0) return;
    c.since = loop_.now();
    relaying_.erase(relaying_.iterator_to(c));
    relaying_.push_back(c);
}

bool StreamRelay::hand_to_threads(Connection& c) {
    if (!threads_ || !threads_->adopt(c)) return false;
    relaying_.erase(relaying_.iterator_to(c));
    c.threaded = true;
    threaded_.push_back(c);
    return true;
}

bool StreamRelay::logs_each_direction(const Connection& c) const {
    return c.log && route_.log_connections;
}

void StreamRelay::thread_direction_done(Connection& c, bool up, bool clean) {
    if (clean && logs_each_direction(c)) log::info(copy_done_line(route_.kind, *c.log, up));
}

void StreamRelay::thread_connection_done(Connection& c, int err) {
    c.close(err ? "relay thread" : nullptr, err);
}

void StreamRelay::requeue(Connection& c) {
    if (c.queued) return;
    c.queued = true;
    ready_.push_back(c);
}

void StreamRelay::connection_closed(Connection& c, const char* reason, int err) {
    if (c.phase == Phase::reading_header) {
        header_.erase(header_.iterator_to(c));
    } else if (c.connecting()) {
        connecting_.erase(connecting_.iterator_to(c));
        if (reason != nullptr && route_.log_connections && c.phase != Phase::reading_header)
            log::info(connect_error_line(route_.kind));
        if (reason != nullptr && log_allowed(last_connect_log_, connect_logs_suppressed_)) {
            const std::string to =
                c.setup && c.setup->dest.addr.len ? to_string(c.setup->dest) : "upstream";
            log::warning(opts_.tag, ": ", reason, " to ", to, err ? ": " : "",
                         err ? std::strerror(err) : "", suppressed_note(connect_logs_suppressed_));
            connect_logs_suppressed_ = 0;
        }
    } else {
        (c.threaded ? threaded_ : relaying_)
            .erase((c.threaded ? threaded_ : relaying_).iterator_to(c));
        if (err != 0 && c.log && route_.log_connections)
            log::info("Failed to transfer data: error=", std::strerror(err));
    }
    if (c.queued) {
        ready_.erase(ready_.iterator_to(c));
        c.queued = false;
    }
    if (c.keepalive_hook.is_linked()) keepalive_due_.erase(keepalive_due_.iterator_to(c));
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

void StreamRelay::report_statistics(Clock::time_point now) {
    // At most one line per connection per second, and only when bytes moved.
    constexpr auto kEvery = std::chrono::seconds(1);
    if (now < next_statistics_) return;
    const double seconds =
        next_statistics_ == Clock::time_point{}
            ? 1.0
            : std::chrono::duration<double>(now - (next_statistics_ - kEvery)).count();
    for (Connection& c : relaying_) report_one(c, seconds);
    for (Connection& c : threaded_) report_one(c, seconds);
    next_statistics_ = now + kEvery;
}

void StreamRelay::report_one(Connection& c, double seconds) {
    {
        if (!c.log || (c.bytes_up == c.reported_up && c.bytes_down == c.reported_down)) return;
        log::info(opts_.tag, ": ",
                  statistics_line(*c.log, c.bytes_up, c.bytes_down, c.bytes_up - c.reported_up,
                                  c.bytes_down - c.reported_down, seconds));
        c.reported_up = c.bytes_up;
        c.reported_down = c.bytes_down;
    }
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
    while (!header_.empty() && header_.front().since + opts_.header_timeout <= now) {
        Connection& c = header_.front();
        if (route_.log_connections) log::info(header_error_line());
        refuse(c, "no complete destination header within " +
                      std::to_string(opts_.header_timeout.count()) + " ms");
    }
    while (!connecting_.empty() && connecting_.front().since + attempt_timeout() <= now) {
        Connection& c = connecting_.front();
        // A host name's address that does not answer gives its turn to the next one.
        if (c.phase == Phase::connecting && !c.awaiting_fd && c.setup && c.setup->candidates &&
            c.setup->next_candidate < c.setup->candidates->size()) {
            connecting_.erase(connecting_.iterator_to(c));
            c.since = now;
            connecting_.push_back(c);
            try_next_address(c, ETIMEDOUT);
            continue;
        }
        stats_.connect_failures++;
        connecting_.front().close("connect timed out", ETIMEDOUT);
    }
    if (opts_.idle_timeout.count() > 0) {
        while (!relaying_.empty() && relaying_.front().since + opts_.idle_timeout <= now)
            relaying_.front().close(nullptr);
    }
    while (!keepalive_due_.empty() && keepalive_due_.front().keepalive_at <= now) {
        Connection& c = keepalive_due_.front();
        keepalive_due_.pop_front();
        route_.arm_keepalive(c.upstream.fd.get());
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
    if (!header_.empty()) consider(header_.front().since + opts_.header_timeout);
    if (!connecting_.empty()) consider(connecting_.front().since + attempt_timeout());
    if (opts_.idle_timeout.count() > 0 && !relaying_.empty())
        consider(relaying_.front().since + opts_.idle_timeout);
    if (paused_ && resume_at_) consider(*resume_at_);
    if (!keepalive_due_.empty()) consider(keepalive_due_.front().keepalive_at);
    if (threads_)
        if (auto t = threads_->tick(now)) consider(*t);
    if (route_.statistics && (!relaying_.empty() || !threaded_.empty())) {
        report_statistics(now);
        consider(next_statistics_);
    }
    return next;
}

}  // namespace pfp::worker
