#include "supervisor/notifier.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>

namespace pfp::supervisor {

Notifier::Notifier() {
    uint64_t usec = 0;
    // Unset: workers must not inherit the watchdog (they could not feed it; NotifyAccess=main).
    if (::sd_watchdog_enabled(1, &usec) > 0 && usec > 0) {
        watchdog_interval_ = std::chrono::microseconds(usec / 2);
        next_watchdog_ = Clock::now();
    }
}

void Notifier::ready(const std::string& text) {
    last_status_ = text;
    ::sd_notifyf(0, "READY=1\nSTATUS=%s", text.c_str());
}

void Notifier::reloading() {
    // MONOTONIC_USEC lets Type=notify-reload (systemd >= 253) match this to its own request.
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    const unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1'000'000ULL +
                                    static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
    last_status_ = "reloading the policy";
    ::sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s", usec, last_status_.c_str());
}

void Notifier::stopping() {
    last_status_ = "stopping: draining connections";
    ::sd_notifyf(0, "STOPPING=1\nSTATUS=%s", last_status_.c_str());
}

void Notifier::status(const std::string& text) {
    if (text == last_status_) return;
    last_status_ = text;
    ::sd_notifyf(0, "STATUS=%s", text.c_str());
}

std::optional<Clock::time_point> Notifier::tick(Clock::time_point now) {
    if (!watchdog_interval_) return std::nullopt;
    if (now >= next_watchdog_) {
        ::sd_notify(0, "WATCHDOG=1");
        next_watchdog_ = now + *watchdog_interval_;
    }
    return next_watchdog_;
}

}  // namespace pfp::supervisor
