#pragma once
// The opt-in blocking relay engine (policy `"relay": "threads"`): once a connection is a
// conversation (connected on the event loop, and its client spoke again after an answer:
// Connection::conversation_turned), its two sockets leave the epoll set and two threads, one per
// direction, move the bytes with blocking recv() and send(). A blocking read is also the
// wake-up, so a small exchange costs one recv and one send per direction instead of epoll_wait +
// recv + send (what a blocking relay saves where a system call is expensive, such as a guest
// under emulation).
//
// The threads own nothing: the Connection keeps the fds, the loop thread allocates each thread's
// buffer and closes the sockets. The second of a pair's threads to end reports it through one
// eventfd the loop thread reads, and each then parks to take the next direction it is given, so a
// stream of short connections creates no threads (the pool is below). At most `bound` connections
// are served so at once; the rest stay on the event engine (StreamRelay::hand_to_threads says
// which).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "common/unique_fd.hpp"

namespace pfp::worker {

class Connection;
class StreamRelay;

// One connection served by two threads; shared by them and the loop thread (atomics only). A
// thread touches it only until it sets its direction's bit in `ended`.
struct ThreadPair {
    struct Way {
        ThreadPair* pair = nullptr;
        int from = -1;
        int to = -1;
        bool reported = false;  // loop thread: this direction's end handled
        std::atomic<uint64_t> bytes{0};
        std::atomic<int> error{0};  // the errno that ended it; 0: EOF passed on
        unsigned bit() const { return this == &pair->up ? kUp : kDown; }  // in `ended`
        bool finished() const { return pair->ended.load(std::memory_order_acquire) & bit(); }
    };
    static constexpr unsigned kUp = 1, kDown = 2;
    // Each thread's last touch of the pair sets its bit (one atomic step, so exactly one of the
    // two sees the other's bit already there): the pair may be freed from then on. Only the
    // second end wakes the loop, unless each direction's end is logged.
    std::atomic<unsigned> ended{0};
    Connection* conn = nullptr;
    bool stamp = false;        // an idle timeout is set: the threads record their last activity
    bool report_each = false;  // each direction's end is logged: the first one wakes the loop too
    // Set by whoever ends the connection early (an error, the idle timeout, shutdown of the
    // worker): the other direction's thread then ends too, without passing a FIN on.
    std::atomic<bool> aborting{false};
    std::atomic<int64_t> last_activity_ns{0};  // CLOCK_MONOTONIC_COARSE, only when `stamp`
    Clock::time_point since;                   // hand-off, for the idle timeout
    uint64_t folded_up = 0, folded_down = 0;   // bytes already added to the relay's counters
    Way up;                                    // client -> upstream
    Way down;                                  // upstream -> client
};

class ThreadRelay : private EventSource {
  public:
    // Creates the eventfd (before lock-down: the sandbox allows no eventfd2). Throws.
    ThreadRelay(StreamRelay& relay, int bound);
    ~ThreadRelay();  // ends every pair (shutdown of its sockets) and joins every thread
    ThreadRelay(const ThreadRelay&) = delete;
    ThreadRelay& operator=(const ThreadRelay&) = delete;

    void start();  // registers the eventfd with the loop; throws
    // Moves `c` (relaying, nothing in flight) to a thread pair. False: the bound is reached or no
    // thread could be created; `c` is then still registered with the event loop, as it was.
    bool adopt(Connection& c);
    size_t active() const { return pairs_.size(); }
    // Folds byte counts into the relay's statistics and ends connections idle past the idle
    // timeout; returns when it wants to run next.
    std::optional<Clock::time_point> tick(Clock::time_point now);
    // Ends every pair now (drain timeout, worker exit) and joins every thread, parked ones too.
    void stop_all();

  private:
    struct Runner;  // one pooled thread (thread_relay.cpp)

    void on_event(uint32_t events) override;  // a direction ended, or a parked thread expired
    void reap();
    // Gives `w` to the most recently parked thread, or to a new one; 0 or pthread_create's error.
    int dispatch(ThreadPair::Way& w);
    void join_exited();
    static void* run(void* arg);  // a pooled thread's body
    void fold(ThreadPair& p);
    static void abort(ThreadPair& p);
    void log_refusal(const char* why, int err);

    StreamRelay& relay_;
    int bound_;
    unique_fd notify_;
    std::list<std::unique_ptr<ThreadPair>> pairs_;
    // The pool. Threads in use are bounded by the pairs (2 * bound); parked ones by idle_cap_
    // and their idle expiry (thread_relay.cpp). `mu_` guards idle_, stopping_ and each Runner's
    // job and exit flag; runners_ is the loop thread's alone.
    std::mutex mu_;
    std::vector<Runner*> idle_;  // parked, the most recent last (taken first); never grows
    size_t idle_cap_ = 0;
    bool stopping_ = false;
    std::list<std::unique_ptr<Runner>> runners_;  // every thread not yet joined
    Clock::time_point next_fold_{};
    Clock::time_point last_log_{};
    uint64_t logs_suppressed_ = 0;
};

}  // namespace pfp::worker
