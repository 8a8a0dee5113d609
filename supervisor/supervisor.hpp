#pragma once
// pf-proxyd's run loop: spawns each proxy's workers, hands them their sockets, restarts them
// with backoff, marks crash-looping proxies failed, drains everything on SIGTERM/SIGINT.
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "common/ipc.hpp"
#include "common/unique_fd.hpp"
#include "policy/model.hpp"
#include "supervisor/restart_policy.hpp"

namespace pfp::supervisor {

class Supervisor;

// One running worker process, as the supervisor sees it.
struct WorkerProcess {
    enum class State { starting, running, draining };

    struct PidWatch : EventSource {
        WorkerProcess* w = nullptr;
        void on_event(uint32_t) override;
    };
    struct ControlWatch : EventSource {
        WorkerProcess* w = nullptr;
        void on_event(uint32_t) override;
    };

    Supervisor* owner = nullptr;
    size_t proxy = 0;  // index into the supervisor's proxies
    int index = 0;     // slot within the proxy
    int generation = 0;
    pid_t pid = -1;
    unique_fd pidfd;
    unique_fd control;
    State state = State::starting;
    bool stop_requested = false;
    Clock::time_point started{};
    Clock::time_point deadline{};  // READY by then, or (draining) gone by then
    ipc::Stats stats;
    PidWatch pid_watch;
    ControlWatch control_watch;
};

struct WorkerSlot {
    explicit WorkerSlot(const policy::RestartPolicy& p) : backoff(p) {}
    std::unique_ptr<WorkerProcess> worker;
    Backoff backoff;
    std::optional<Clock::time_point> restart_at;
    int generation = 0;
};

struct ProxyState {
    policy::Proxy config;
    unique_fd listener;
    bool failed = false;
    std::vector<WorkerSlot> slots;
};

class Supervisor {
  public:
    // The listeners are already open (one per proxy, in policy order).
    Supervisor(policy::Policy policy, std::vector<unique_fd> listeners, std::string worker_path);
    int run();  // until stopped; returns the process exit status

    void worker_exited(WorkerProcess& w);
    void worker_message(WorkerProcess& w);

  private:
    void start_worker(size_t proxy, size_t slot);
    void kill_worker(WorkerProcess& w, const std::string& why);
    void fail_proxy(ProxyState& p, const std::string& why);
    void begin_stop(const char* why);
    void on_signal();
    std::optional<Clock::time_point> tick(Clock::time_point now);
    std::string label(const WorkerProcess& w) const;
    void notify_ready_once();
    bool no_workers_left() const;

    struct Signals : EventSource {
        Supervisor* s = nullptr;
        unique_fd fd;
        void on_event(uint32_t) override { s->on_signal(); }
    };

    policy::Policy policy_;
    std::string worker_path_;
    EventLoop loop_;
    Signals signals_;
    std::vector<ProxyState> proxies_;
    bool stopping_ = false;
    bool ready_notified_ = false;
    Clock::time_point stop_deadline_{};
    std::vector<std::unique_ptr<WorkerProcess>> exited_;  // freed after the epoll batch
};

}  // namespace pfp::supervisor
