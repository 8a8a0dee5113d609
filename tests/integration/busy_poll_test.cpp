// busy_poll (docs/policy.md): a tcp-forward worker with a busy-poll window keeps polling between
// the events of a request/response exchange instead of sleeping, still relays every byte, and
// sleeps again once traffic stops. Proved by counts the kernel keeps per process: voluntary
// context switches (/proc/PID/status: one per sleep) and involuntary ones (preemptions).
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "harness.hpp"
#include "tests/support/require.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

// Exchanges per measurement: enough that a worker sleeping once per exchange stands far apart
// from one that polls, small enough to stay quick on a loaded machine.
constexpr int kExchanges = 600;
// The client's think time before each request: longer than a worker needs to get back into
// epoll_wait (so a worker without busy_poll is surely asleep when the request comes; without a
// pause, fast peers on two CPUs often answer before it gets there), far shorter than the window.
constexpr auto kThink = 500us;
constexpr size_t kMessage = 100;

uint64_t voluntary_switches(pid_t pid) {
    return std::stoull(status_field(pid, "voluntary_ctxt_switches"));
}

uint64_t involuntary_switches(pid_t pid) {
    return std::stoull(status_field(pid, "nonvoluntary_ctxt_switches"));
}

// Idle wake-ups (the worker's once-a-second statistics tick) watched for polling.
constexpr uint64_t kIdleWakeups = 4;

int first_allowed_cpu() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set)) return cpu;
    return -1;
}

// Restricts thread `tid` (0: the caller) to `cpu`.
bool pin(pid_t tid, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::sched_setaffinity(tid, sizeof set, &set) == 0;
}

// A thread on one CPU that wakes every millisecond and goes straight back to sleep (stopped, at
// the latest, by its destructor): each wake-up preempts whatever runs on that CPU, so a task that
// stays on it for milliseconds is preempted again and again, and one that runs for microseconds
// between sleeps seldom is. It costs next to no CPU itself.
class Rival {
  public:
    explicit Rival(int cpu)
        : thread_([this, cpu] {
              if (!pin(0, cpu)) {
                  state_ = -1;
                  return;
              }
              state_ = 1;
              while (!stop_.load(std::memory_order_relaxed)) std::this_thread::sleep_for(1ms);
          }) {}
    ~Rival() { stop(); }
    // Waits until it runs on its CPU; false if it could not be pinned there.
    bool started() {
        return wait_until([this] { return state_ != 0; }, 10s) && state_ == 1;
    }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<int> state_{0};  // 1 running, -1 not pinned
    std::thread thread_;
};

// Nanoseconds the task has run on a CPU (first field of /proc/PID/schedstat).
uint64_t run_time_ns(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/schedstat");
    uint64_t ns = 0;
    f >> ns;
    return ns;
}

// The state letter of /proc/PID/stat (after the parenthesised name, which may hold spaces).
char state_of(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t close = s.rfind(')');
    return close != std::string::npos && close + 2 < s.size() ? s[close + 2] : '?';
}

// `count` exchanges of kMessage bytes on one connection, each checked byte for byte; `think`
// before each request (the shape of the load, not a wait for an outcome).
testing::AssertionResult exchanges(int fd, int count, uint64_t seed,
                                   std::chrono::microseconds think = {}) {
    std::vector<char> out(kMessage), back(kMessage);
    for (int i = 0; i < count; ++i) {
        if (think.count() > 0) std::this_thread::sleep_for(think);
        for (size_t j = 0; j < kMessage; ++j)
            out[j] = static_cast<char>((seed + i * 31 + j) & 0xff);
        if (!write_all(fd, out.data(), out.size()))
            return testing::AssertionFailure() << "write failed at exchange " << i;
        if (!read_exact(fd, back.data(), back.size()))
            return testing::AssertionFailure() << "read failed at exchange " << i;
        if (back != out) return testing::AssertionFailure() << "exchange " << i << " corrupted";
    }
    return testing::AssertionSuccess();
}

struct Measured {
    uint64_t switches = 0;  // the worker's voluntary context switches over kExchanges
};

Measured measure(pid_t worker, uint16_t port) {
    unique_fd c = connect_tcp(port);
    EXPECT_TRUE(c);
    if (!c) return {};
    set_timeouts(c.get(), 20s);
    EXPECT_TRUE(exchanges(c.get(), 20, 1));  // connection set up, buffers and pipes warm
    const uint64_t before = voluntary_switches(worker);
    EXPECT_TRUE(exchanges(c.get(), kExchanges, 2, kThink));
    return {voluntary_switches(worker) - before};
}

class TcpForwardBusyPoll : public ::testing::Test {
  protected:
    void SetUp() override {
        listen_plain = free_port();
        listen_busy = free_port();
        upstream = free_port();
    }
    std::string policy() const {
        const std::string up = std::to_string(upstream);
        return R"({"user": "nobody", "proxies": [)"
               R"({"name": "plain", "listen": "tcp:127.0.0.1:)" +
               std::to_string(listen_plain) + R"(", "upstream": "tcp:127.0.0.1:)" + up +
               R"("}, {"name": "busy", "listen": "tcp:127.0.0.1:)" + std::to_string(listen_busy) +
               R"(", "upstream": "tcp:127.0.0.1:)" + up + R"(", "busy_poll": "10ms"}]})";
    }
    uint16_t listen_plain = 0, listen_busy = 0, upstream = 0;
};

TEST_F(TcpForwardBusyPoll, WorkerPollsThroughExchangesInsteadOfSleeping) {
    EchoServer echo(upstream);
    Daemon d(policy());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const pid_t plain = worker_of(d, "plain");
    const pid_t busy = worker_of(d, "busy");
    ASSERT_GT(plain, 0) << d.log();
    ASSERT_GT(busy, 0) << d.log();

    const Measured without = measure(plain, listen_plain);
    const Measured with = measure(busy, listen_busy);
    // A relay without busy_poll sleeps at least once per exchange (waiting for the next request
    // through the client's think time; for the answer too, unless it is back first); a polling
    // one sleeps only when a gap outlasts its 10 ms window (a peer kept off the CPU that long).
    // A count comparison, not a timing.
    RecordProperty("sleeps_plain", std::to_string(without.switches));
    RecordProperty("sleeps_busy_poll", std::to_string(with.switches));
    EXPECT_GE(without.switches, static_cast<uint64_t>(kExchanges))
        << "the plain worker should sleep in every exchange";
    EXPECT_LT(with.switches * 4, without.switches)
        << "busy_poll: " << with.switches << " sleeps, plain: " << without.switches;
    EXPECT_LT(with.switches, static_cast<uint64_t>(kExchanges / 10)) << with.switches;
}

TEST_F(TcpForwardBusyPoll, IdleWorkerStopsPollingAndStillRelays) {
    EchoServer echo(upstream);
    Daemon d(policy());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const pid_t busy = worker_of(d, "busy");
    ASSERT_GT(busy, 0) << d.log();
    unique_fd c = connect_tcp(listen_busy);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(exchanges(c.get(), kExchanges, 3));

    // Traffic has stopped (the connection stays open). The worker polls out its window, then
    // sleeps: wait until it is seen asleep once. That is only where the counting starts: a
    // sampled state can catch a polling worker in a brief sleep too, so the counts below are
    // what tell the two apart.
    ASSERT_TRUE(wait_until([busy] { return state_of(busy) == 'S'; }, 20s))
        << "state " << state_of(busy);
    // Asleep, it still wakes once a second for its statistics tick. A wake-up without traffic must
    // not start a window. Counted, not timed: each wake-up ends in a sleep (a voluntary switch;
    // a worker that never stopped polling would make none), and with a rival waking every
    // millisecond on its CPU, a worker that polls for its 10 ms window after a wake-up is
    // preempted (an involuntary switch) several times in each (measured: 9 to 68), while one
    // that goes straight back to sleep, after microseconds, mostly is not (0 to 1 per wake-up on
    // a machine under load).
    const int cpu = first_allowed_cpu();
    ASSERT_GE(cpu, 0);
    ASSERT_TRUE(pin(busy, cpu)) << std::strerror(errno);
    Rival rival(cpu);
    ASSERT_TRUE(rival.started());
    const uint64_t v0 = voluntary_switches(busy);
    const uint64_t i0 = involuntary_switches(busy);
    const uint64_t t0 = run_time_ns(busy);
    ASSERT_TRUE(wait_until([&] { return voluntary_switches(busy) >= v0 + kIdleWakeups; }, 20s))
        << "the idle worker did not go back to sleep: " << voluntary_switches(busy) - v0
        << " sleeps";
    const uint64_t preempted = involuntary_switches(busy) - i0;
    rival.stop();
    RecordProperty("idle_wakeups_preempted", std::to_string(preempted));
    RecordProperty("idle_wakeups_cpu_ns", std::to_string(run_time_ns(busy) - t0));  // for reading
    EXPECT_LT(preempted, 3 * kIdleWakeups)
        << "the idle worker was preempted " << preempted << " times in " << kIdleWakeups
        << " wake-ups: it polls after waking without traffic";

    // Asleep, it is woken by the next request and relays it.
    ASSERT_TRUE(exchanges(c.get(), 5, 4));
    c.reset();
    EXPECT_EQ(worker_of(d, "busy"), busy) << "the worker was not restarted\n" << d.log();
}

}  // namespace
