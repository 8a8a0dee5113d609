#include "workers/thread_relay.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "common/log.hpp"
#include "workers/connection.hpp"
#include "workers/sandbox.hpp"
#include "workers/stream_relay.hpp"

namespace pfp::worker {

namespace {

// Per direction. Larger than the event engine's copy buffer: a blocking thread holds its buffer
// for the connection's life anyway, and a bigger one halves the calls of a bulk transfer.
constexpr size_t kBuffer = 128 * 1024;
// The threads run one small loop and call nothing that recurses; the rest is glibc's TLS.
constexpr size_t kStack = 256 * 1024;
constexpr auto kFoldEvery = std::chrono::seconds(1);

int64_t coarse_now_ns() {
    // The coarse clock is read from the vDSO's data page without a system call on every
    // clocksource, which matters where a system call is expensive (a guest under emulation).
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

bool set_blocking(int fd, bool blocking) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) return false;
    const int want = blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK;
    return want == fl || ::fcntl(fd, F_SETFL, want) == 0;
}

// One direction: read until EOF, pass the FIN on, report. Blocking calls only; an early end by
// the other thread or the loop arrives as shutdown() of these sockets, which wakes the calls.
void* run_way(void* arg) {
    auto& w = *static_cast<ThreadPair::Way*>(arg);
    ThreadPair& p = *w.pair;
    int err = 0;
    for (bool eof = false; !eof && err == 0;) {
        const ssize_t n = ::recv(w.from, w.buffer, kBuffer, 0);
        if (n == 0) {
            eof = true;
            break;
        }
        if (n < 0) {
            if (errno != EINTR) err = errno;
            continue;
        }
        for (size_t off = 0; off < static_cast<size_t>(n);) {
            const ssize_t m =
                ::send(w.to, w.buffer + off, static_cast<size_t>(n) - off, MSG_NOSIGNAL);
            if (m < 0) {
                if (errno == EINTR) continue;
                err = errno;
                break;
            }
            off += static_cast<size_t>(m);
            w.bytes.fetch_add(static_cast<uint64_t>(m), std::memory_order_relaxed);
        }
        if (p.stamp) p.last_activity_ns.store(coarse_now_ns(), std::memory_order_relaxed);
    }
    if (p.aborting.load(std::memory_order_acquire)) {
        // Ended from outside: the 0 or error came from our own shutdown, not from the peer.
    } else if (err == 0) {
        // Half-close exactly as the event engine does: the other direction keeps flowing.
        if (::shutdown(w.to, SHUT_WR) < 0 && errno != ENOTCONN) err = errno;
    }
    if (err != 0 && !p.aborting.exchange(true, std::memory_order_acq_rel)) {
        // This direction failed: the connection ends, so wake the other thread's blocking call.
        ::shutdown(w.from, SHUT_RDWR);
        ::shutdown(w.to, SHUT_RDWR);
    }
    w.error.store(err, std::memory_order_relaxed);
    w.finished.store(true, std::memory_order_release);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t ignored = ::write(p.notify_fd, &one, sizeof one);
    return nullptr;
}

}  // namespace

ThreadRelay::ThreadRelay(StreamRelay& relay, int bound) : relay_(relay), bound_(bound) {
    notify_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!notify_) throw_errno("eventfd(thread relay)");
    sandbox::start_thread_runtime();  // before lock-down: this is built with the worker body
}

ThreadRelay::~ThreadRelay() {
    stop_all();
}

void ThreadRelay::start() {
    if (!relay_.loop().add(notify_.get(), EPOLLIN, this)) throw_errno("epoll_ctl(thread relay)");
}

void ThreadRelay::abort(ThreadPair& p) {
    if (p.aborting.exchange(true, std::memory_order_acq_rel)) return;
    ::shutdown(p.up.from, SHUT_RDWR);
    ::shutdown(p.up.to, SHUT_RDWR);
}

void ThreadRelay::log_refusal(const char* why, int err) {
    const auto now = Clock::now();
    if (now - last_log_ < std::chrono::seconds(1)) {
        ++logs_suppressed_;
        return;
    }
    last_log_ = now;
    log::info(relay_.options().tag, ": ", why, err ? ": " : "", err ? std::strerror(err) : "",
              "; the connection is served by the event engine",
              logs_suppressed_ ? " (" + std::to_string(logs_suppressed_) + " similar suppressed)"
                               : std::string());
    logs_suppressed_ = 0;
}

bool ThreadRelay::adopt(Connection& c) {
    if (static_cast<int>(pairs_.size()) >= bound_) {
        log_refusal(
            ("relay_threads bound (" + std::to_string(bound_) + " connections) reached").c_str(),
            0);
        return false;
    }
    const int client = c.client.fd.get();
    const int upstream = c.upstream.fd.get();
    auto pair = std::make_unique<ThreadPair>();
    pair->conn = &c;
    pair->notify_fd = notify_.get();
    pair->stamp = relay_.options().idle_timeout.count() > 0;
    pair->since = relay_.loop().now();
    pair->last_activity_ns.store(coarse_now_ns(), std::memory_order_relaxed);
    pair->buffers = std::make_unique_for_overwrite<std::byte[]>(2 * kBuffer);
    pair->up.pair = pair->down.pair = pair.get();
    pair->up.from = pair->down.to = client;
    pair->up.to = pair->down.from = upstream;
    pair->up.buffer = pair->buffers.get();
    pair->down.buffer = pair->buffers.get() + kBuffer;

    // Off the event loop before the threads block on the sockets.
    relay_.loop().remove(client);
    relay_.loop().remove(upstream);
    const auto back_to_events = [&](const char* why, int err) {
        set_blocking(client, false);
        set_blocking(upstream, false);
        log_refusal(why, err);
        return c.register_sides();
    };
    if (!set_blocking(client, true) || !set_blocking(upstream, true)) {
        const int err = errno;
        back_to_events("making a socket blocking failed", err);
        return false;
    }
    pthread_attr_t attr;
    if (int err = ::pthread_attr_init(&attr); err != 0) {
        back_to_events("pthread_attr_init failed", err);
        return false;
    }
    ::pthread_attr_setstacksize(&attr, kStack);
    int err = ::pthread_create(&pair->up.thread, &attr, run_way, &pair->up);
    if (err != 0) {
        ::pthread_attr_destroy(&attr);
        back_to_events("no relay thread", err);  // EAGAIN: RLIMIT_NPROC or memory
        return false;
    }
    pair->up.started = true;
    err = ::pthread_create(&pair->down.thread, &attr, run_way, &pair->down);
    ::pthread_attr_destroy(&attr);
    if (err == 0) {
        pair->down.started = true;
    } else {
        // The first thread already blocks on the sockets: end the connection through it.
        log::warning(relay_.options().tag, ": no second relay thread: ", std::strerror(err),
                     "; closing the connection");
        pair->down.error.store(err, std::memory_order_relaxed);
        pair->down.finished.store(true, std::memory_order_release);
        abort(*pair);
    }
    c.pair = pair.get();
    pairs_.push_back(std::move(pair));
    return true;
}

void ThreadRelay::on_event(uint32_t) {
    uint64_t n;
    while (::read(notify_.get(), &n, sizeof n) == sizeof n) {
    }
    reap();
}

void ThreadRelay::fold(ThreadPair& p) {
    Connection& c = *p.conn;
    auto& stats = relay_.mutable_stats();
    const uint64_t up = p.up.bytes.load(std::memory_order_relaxed);
    const uint64_t down = p.down.bytes.load(std::memory_order_relaxed);
    stats.bytes_up += up - p.folded_up;
    stats.bytes_down += down - p.folded_down;
    c.bytes_up += up - p.folded_up;
    c.bytes_down += down - p.folded_down;
    p.folded_up = up;
    p.folded_down = down;
}

void ThreadRelay::reap() {
    for (auto it = pairs_.begin(); it != pairs_.end();) {
        ThreadPair& p = **it;
        for (ThreadPair::Way* w : {&p.up, &p.down}) {
            if (w->reported || !w->finished.load(std::memory_order_acquire)) continue;
            w->reported = true;
            relay_.thread_direction_done(*p.conn, w == &p.up,
                                         w->error.load() == 0 && !p.aborting.load());
        }
        if (!p.up.reported || !p.down.reported) {
            ++it;
            continue;
        }
        for (ThreadPair::Way* w : {&p.up, &p.down})
            if (w->started) ::pthread_join(w->thread, nullptr);
        fold(p);
        int err = p.up.error.load();
        if (err == 0) err = p.down.error.load();
        Connection& c = *p.conn;
        c.pair = nullptr;
        it = pairs_.erase(it);
        relay_.thread_connection_done(c, err);
    }
}

std::optional<Clock::time_point> ThreadRelay::tick(Clock::time_point now) {
    if (pairs_.empty()) return std::nullopt;
    const auto idle = relay_.options().idle_timeout;
    std::optional<Clock::time_point> next;
    if (now >= next_fold_) {
        for (auto& p : pairs_) fold(*p);
        next_fold_ = now + kFoldEvery;
    }
    next = next_fold_;
    if (idle.count() > 0) {
        for (auto& p : pairs_) {
            // CLOCK_MONOTONIC_COARSE and the steady clock count from the same origin
            // (CLOCK_MONOTONIC); the coarse one lags by at most a tick.
            const Clock::time_point stamped(std::chrono::duration_cast<Clock::duration>(
                std::chrono::nanoseconds(p->last_activity_ns.load(std::memory_order_relaxed))));
            const auto last = std::max(p->since, stamped);
            const auto deadline = last + idle;
            if (deadline <= now) {
                abort(*p);  // the threads end; reap() closes the connection
                continue;
            }
            if (deadline < *next) next = deadline;
        }
    }
    return next;
}

void ThreadRelay::stop_all() {
    for (auto& p : pairs_) abort(*p);
    for (auto& p : pairs_)
        for (ThreadPair::Way* w : {&p->up, &p->down})
            if (w->started) {
                ::pthread_join(w->thread, nullptr);
                w->started = false;
            }
    reap();
}

}  // namespace pfp::worker
