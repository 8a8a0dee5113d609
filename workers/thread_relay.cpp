#include "workers/thread_relay.hpp"

#include <fcntl.h>
#include <pthread.h>
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

// Per thread. Larger than the event engine's copy buffer: a blocking thread holds its buffer
// for the connection's life anyway, and a bigger one halves the calls of a bulk transfer. It
// stays with the thread while it is parked: a buffer per connection was a malloc and free of
// 256 KiB each time, which moved the heap's top (brk) and faulted its pages in again.
constexpr size_t kBuffer = 128 * 1024;
// The threads run one small loop and call nothing that recurses; the rest is glibc's TLS.
constexpr size_t kStack = 256 * 1024;
constexpr auto kFoldEvery = std::chrono::seconds(1);
// Parked threads. A parked thread costs its stack's touched pages (glibc would keep a joined
// thread's stack in its cache anyway) and a kernel task; creating one costs a clone and its
// set-up, tens of microseconds, which only a high connection rate notices. So: park at most 64
// (32 connections' worth, and never more than the bound's 2 * relay_threads) and end a thread
// that went 2 s without work. The most recently parked thread is taken first, so a steady rate
// keeps reusing a few hot threads while the rest of a burst's expire; below one connection per
// 2 s a thread is created per direction again, as before, which costs nothing at that rate.
constexpr size_t kMaxParked = 64;
constexpr auto kIdleExpiry = std::chrono::seconds(2);

int64_t coarse_now_ns() {
    // The coarse clock is read from the vDSO's data page without a system call on every
    // clocksource, which matters where a system call is expensive (a guest under emulation).
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// A relayed socket has no file status flag but O_NONBLOCK (accept4 and socket() gave it only
// that), so one F_SETFL sets the mode without an F_GETFL first.
bool set_blocking(int fd, bool blocking) {
    return ::fcntl(fd, F_SETFL, blocking ? 0 : O_NONBLOCK) == 0;
}

// One direction: read until EOF, pass the FIN on; returns the errno that ended it (0: EOF passed
// on). Blocking calls only; an early end by the other thread or the loop arrives as shutdown()
// of these sockets, which wakes the calls. The caller reports the end.
int relay_way(ThreadPair::Way& w, std::byte* buffer) {
    ThreadPair& p = *w.pair;
    int err = 0;
    for (bool eof = false; !eof && err == 0;) {
        const ssize_t n = ::recv(w.from, buffer, kBuffer, 0);
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
                ::send(w.to, buffer + off, static_cast<size_t>(n) - off, MSG_NOSIGNAL);
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
    return err;
}

void notify(int fd) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t ignored = ::write(fd, &one, sizeof one);
}

}  // namespace

struct ThreadRelay::Runner {
    ThreadRelay* relay = nullptr;
    pthread_t thread{};
    std::unique_ptr<std::byte[]> buffer;  // allocated by the loop thread, freed after the join
    std::condition_variable wake;         // a job or the stop
    ThreadPair::Way* job = nullptr;  // under mu_: given by the loop thread, taken by the thread
    bool exited = false;             // under mu_: the thread left its loop; join it
};

ThreadRelay::ThreadRelay(StreamRelay& relay, int bound)
    : relay_(relay),
      bound_(bound),
      idle_cap_(std::min(2 * static_cast<size_t>(bound), kMaxParked)) {
    notify_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!notify_) throw_errno("eventfd(thread relay)");
    // The threads push themselves here: reserved now, a push never allocates in a thread (the
    // first malloc in a thread would make it a malloc arena).
    idle_.reserve(idle_cap_);
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
    pair->stamp = relay_.options().idle_timeout.count() > 0;
    pair->report_each = relay_.logs_each_direction(c);
    pair->since = relay_.loop().now();
    pair->last_activity_ns.store(coarse_now_ns(), std::memory_order_relaxed);
    pair->up.pair = pair->down.pair = pair.get();
    pair->up.from = pair->down.to = client;
    pair->up.to = pair->down.from = upstream;

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
    if (const int err = dispatch(pair->up); err != 0) {
        back_to_events("no relay thread", err);  // EAGAIN: RLIMIT_NPROC or memory
        return false;
    }
    if (const int err = dispatch(pair->down); err != 0) {
        // The first thread already blocks on the sockets: end the connection through it.
        log::warning(relay_.options().tag, ": no second relay thread: ", std::strerror(err),
                     "; closing the connection");
        pair->down.error.store(err, std::memory_order_relaxed);
        // Before the abort wakes the first thread, so that its end finds this one and reports.
        pair->ended.fetch_or(ThreadPair::kDown, std::memory_order_acq_rel);
        abort(*pair);
    }
    c.pair = pair.get();
    pairs_.push_back(std::move(pair));
    return true;
}

int ThreadRelay::dispatch(ThreadPair::Way& w) {
    Runner* parked = nullptr;
    {
        std::lock_guard lock(mu_);
        if (!idle_.empty()) {
            parked = idle_.back();
            idle_.pop_back();
            parked->job = &w;
        }
    }
    if (parked) {
        // Outside the lock: a thread with a job does not exit, and runners_ keeps the Runner.
        parked->wake.notify_one();
        return 0;
    }
    auto r = std::make_unique<Runner>();
    r->relay = this;
    r->job = &w;
    r->buffer = std::make_unique_for_overwrite<std::byte[]>(kBuffer);
    pthread_attr_t attr;
    if (int err = ::pthread_attr_init(&attr); err != 0) return err;
    ::pthread_attr_setstacksize(&attr, kStack);
    const int err = ::pthread_create(&r->thread, &attr, run, r.get());
    ::pthread_attr_destroy(&attr);
    if (err == 0) runners_.push_back(std::move(r));
    return err;
}

void* ThreadRelay::run(void* arg) {
    Runner& r = *static_cast<Runner*>(arg);
    ThreadRelay& self = *r.relay;
    const int notify_fd = self.notify_.get();
    std::unique_lock lock(self.mu_);
    for (;;) {
        if (r.job == nullptr) {
            // Parked: a futex wait (the filter's baseline), until a job, the stop or the expiry.
            const auto expiry = std::chrono::steady_clock::now() + kIdleExpiry;
            while (r.job == nullptr && !self.stopping_)
                if (r.wake.wait_until(lock, expiry) == std::cv_status::timeout) break;
            if (r.job == nullptr) {
                std::erase(self.idle_, &r);  // under the lock: no job can come any more
                break;
            }
        }
        ThreadPair::Way& w = *std::exchange(r.job, nullptr);
        lock.unlock();
        const int err = relay_way(w, r.buffer.get());
        lock.lock();
        // Park before the end is reported, so the loop finds this thread for the next
        // connection; beyond the cap, or when stopping, exit instead.
        const bool park = !self.stopping_ && self.idle_.size() < self.idle_cap_;
        if (park) self.idle_.push_back(&r);
        w.error.store(err, std::memory_order_relaxed);
        const unsigned bit = w.bit();
        const bool report_each = w.pair->report_each;
        // The last touch of the pair: from here on the loop may free it.
        const unsigned before = w.pair->ended.fetch_or(bit, std::memory_order_acq_rel);
        lock.unlock();
        if (before != 0 || report_each) notify(notify_fd);
        lock.lock();
        if (!park) break;
    }
    r.exited = true;
    lock.unlock();
    notify(notify_fd);
    return nullptr;
}

void ThreadRelay::join_exited() {
    std::vector<pthread_t> done;
    {
        std::lock_guard lock(mu_);
        for (auto it = runners_.begin(); it != runners_.end();) {
            if (!(*it)->exited) {
                ++it;
                continue;
            }
            done.push_back((*it)->thread);
            it = runners_.erase(it);  // the thread no longer touches its Runner
        }
    }
    for (pthread_t t : done) ::pthread_join(t, nullptr);
}

void ThreadRelay::on_event(uint32_t) {
    uint64_t n;
    // One read takes the whole count (no EFD_SEMAPHORE).
    [[maybe_unused]] ssize_t ignored = ::read(notify_.get(), &n, sizeof n);
    reap();
    join_exited();
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
            if (w->reported || !w->finished()) continue;
            w->reported = true;
            relay_.thread_direction_done(*p.conn, w == &p.up,
                                         w->error.load() == 0 && !p.aborting.load());
        }
        if (!p.up.reported || !p.down.reported) {
            ++it;
            continue;
        }
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
    {
        // From here no thread parks: a parked one wakes and exits, a busy one exits after its
        // (aborted) direction.
        std::lock_guard lock(mu_);
        stopping_ = true;
        for (Runner* r : idle_) r->wake.notify_one();
    }
    for (auto& r : runners_) ::pthread_join(r->thread, nullptr);
    runners_.clear();
    reap();
}

}  // namespace pfp::worker
