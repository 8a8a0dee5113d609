#pragma once
// What pf-proxyd tells systemd (sd_notify): READY=1, RELOADING=1, STOPPING=1, STATUS= lines
// (sent only when they change) and WATCHDOG=1 at half of WatchdogSec. Without NOTIFY_SOCKET
// every call is a no-op.
#include <chrono>
#include <optional>
#include <string>

#include "common/event_loop.hpp"

namespace pfp::supervisor {

class Notifier {
  public:
    Notifier();  // reads (and unsets) WATCHDOG_USEC/WATCHDOG_PID

    void ready(const std::string& status);
    void reloading();
    void stopping();
    void status(const std::string& text);  // no message if the text did not change

    // Sends WATCHDOG=1 when due; returns when it is next due (nullopt: no watchdog).
    std::optional<Clock::time_point> tick(Clock::time_point now);

  private:
    std::string last_status_;
    std::optional<std::chrono::microseconds> watchdog_interval_;
    Clock::time_point next_watchdog_{};
};

}  // namespace pfp::supervisor
