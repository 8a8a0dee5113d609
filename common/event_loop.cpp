#include "common/event_loop.hpp"

#include <time.h>

#include <cerrno>

#include "common/error.hpp"

namespace pfp {

EventLoop::EventLoop() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epfd_) throw_errno("epoll_create1");
}

bool EventLoop::add(int fd, uint32_t events, EventSource* source) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = source;
    return ::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool EventLoop::modify(int fd, uint32_t events, EventSource* source) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = source;
    return ::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev) == 0;
}

void EventLoop::remove(int fd) {
    ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Clock::time_point EventLoop::read_clock() const {
    timespec ts{};
    if (busy_poll_.count() > 0 || ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return Clock::now();
    return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
        std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

void EventLoop::run(
    const std::function<bool()>& done,
    const std::function<std::optional<Clock::time_point>(Clock::time_point)>& tick) {
    constexpr int kBatch = 128;
    epoll_event events[kBatch];
    while (!done()) {
        int timeout = -1;
        auto now = now_ = read_clock();
        if (auto next = tick(now)) {
            auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
            timeout = ms < 0 ? 0 : static_cast<int>(std::min<long long>(ms, 60'000));
        }
        if (done()) break;
        if (now < poll_until_) timeout = 0;  // inside the busy-poll window: do not sleep
        int n = ::epoll_wait(epfd_.get(), events, kBatch, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("epoll_wait");
        }
        now_ = read_clock();
        if (n > 0 && busy_poll_.count() > 0) poll_until_ = now_ + busy_poll_;
        for (int i = 0; i < n; ++i)
            static_cast<EventSource*>(events[i].data.ptr)->on_event(events[i].events);
    }
}

}  // namespace pfp
