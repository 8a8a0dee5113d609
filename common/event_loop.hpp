#pragma once
// Single-threaded epoll loop. Timers are deadlines the owner reports through next_deadline();
// the loop turns them into epoll_wait's timeout, so no timerfd syscalls are spent on them.
//
// Optional busy polling (haproxy's busy-polling): for a window after the last wake-up that had
// events, the loop polls (epoll_wait with timeout 0) instead of sleeping, so the next event of a
// request/response exchange finds it running and no wake-up is paid. The window is measured with
// steady_clock, which the vDSO serves without a system call; deadlines are still handled before
// every poll, so timers fire on time. Once the window passes without an event the loop sleeps.
#include <sys/epoll.h>

#include <chrono>
#include <functional>
#include <optional>

#include "common/unique_fd.hpp"

namespace pfp {

using Clock = std::chrono::steady_clock;

class EventSource {
  public:
    virtual ~EventSource() = default;
    virtual void on_event(uint32_t events) = 0;
};

class EventLoop {
  public:
    EventLoop();  // creates the epoll fd; throws system_error

    // Data path: return false (errno set) instead of throwing.
    bool add(int fd, uint32_t events, EventSource* source);
    bool modify(int fd, uint32_t events, EventSource* source);
    void remove(int fd);

    // Runs until `done()` is true. Before every wait, `tick(now)` handles due deadlines and
    // returns the next one (or nullopt), which bounds the wait.
    void run(const std::function<bool()>& done,
             const std::function<std::optional<Clock::time_point>(Clock::time_point)>& tick);

    // 0 (the default): sleep as soon as nothing is ready.
    void set_busy_poll(std::chrono::microseconds window) { busy_poll_ = window; }

    // The time of the current wake-up (read once after epoll_wait returns, and before each tick):
    // a coarse clock for timestamps taken per event, which need no clock read of their own.
    Clock::time_point now() const { return now_; }

  private:
    // The loop's own clock reads: CLOCK_MONOTONIC_COARSE (the same epoch as Clock, at most a
    // kernel tick behind), which the vDSO serves even where the hardware clock it would read for
    // CLOCK_MONOTONIC has no vDSO mode (a TCG guest: two real system calls per wake-up). Timers
    // may fire up to a tick late, never early. A busy-polling loop reads the precise clock: its
    // window is microseconds.
    Clock::time_point read_clock() const;

    unique_fd epfd_;
    Clock::time_point now_ = Clock::now();
    std::chrono::microseconds busy_poll_{0};
    Clock::time_point poll_until_{};  // busy polling: no sleep before this
};

}  // namespace pfp
