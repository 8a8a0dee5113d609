#pragma once
// pf-proxyd's run loop: spawns each proxy's workers, hands them their sockets, restarts them
// with backoff, marks crash-looping proxies failed, reloads the policy (a new worker generation
// takes over a changed proxy's listener before the old one drains), and drains everything on
// SIGTERM/SIGINT. It answers the control socket through ControlHandler.
#include <sys/types.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "common/ipc.hpp"
#include "common/unique_fd.hpp"
#include "policy/model.hpp"
#include "supervisor/control_handler.hpp"
#include "supervisor/listener_source.hpp"
#include "supervisor/notifier.hpp"
#include "supervisor/restart_policy.hpp"
#include "supervisor/worker_log.hpp"

namespace pfp::supervisor {

class Supervisor;
class UpstreamNames;
struct ProxyState;

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
    struct LogWatch : EventSource {
        WorkerProcess* w = nullptr;
        void on_event(uint32_t) override;
    };

    Supervisor* owner = nullptr;
    ProxyState* proxy = nullptr;
    int index = 0;       // slot within the proxy
    int generation = 0;  // the proxy's configuration generation
    pid_t pid = -1;
    unique_fd pidfd;
    unique_fd control;
    unique_fd log;  // its stdout/stderr, relayed line by line (worker_log.hpp)
    WorkerLogRelay log_relay{""};
    State state = State::starting;
    bool said_ready = false;
    bool stop_requested = false;
    Clock::time_point started{};
    Clock::time_point deadline{};  // READY by then, or (draining) gone by then
    ipc::StreamStats stats;
    std::optional<ipc::DatagramStats> datagram_stats;  // datagram kinds, as reported
    std::optional<ipc::PacketStats> packet_stats;      // packet kinds, as reported
    std::optional<ipc::TunnelStats> tunnel_stats;      // tunnel kinds, as reported
    Clock::time_point stats_at{};                      // when `stats` was reported
    PidWatch pid_watch;
    ControlWatch control_watch;
    LogWatch log_watch;
};

struct WorkerSlot {
    explicit WorkerSlot(const policy::RestartPolicy& p) : backoff(p) {}
    std::unique_ptr<WorkerProcess> worker;
    Backoff backoff;
    std::optional<Clock::time_point> restart_at;
};

struct ProxyState {
    enum class State { active, stopped, failed, removed };
    policy::Proxy config;
    Listener listener;
    State state = State::active;
    int generation = 1;
    uint64_t restarts = 0;
    std::string last_exit;
    std::vector<WorkerSlot> slots;                         // the current generation
    std::vector<std::unique_ptr<WorkerProcess>> retiring;  // older ones, until drained
    ProxyCounters gone;  // counters of workers that have exited (active: 0)
    // Started while its drained workers still held the address: obtain the listener again
    // until then (supervisor_control.cpp).
    std::optional<Clock::time_point> listen_retry_until;
};

// Counters are totals since the worker started: they never go down (so they never wrap), and none
// grows faster than a worker could make it grow. What a worker reports is bounded by what it could
// have done, or metrics and status could be faked.
inline constexpr uint64_t kMaxBytesPerSecond = uint64_t{1} << 37;  // 128 GiB/s: beyond any NIC
inline constexpr uint64_t kMaxConnectionsPerSecond = uint64_t{1}
                                                     << 22;  // 4 M/s: beyond any accept loop

// The check every family shares: each counter of `fields` but the `gauge` never goes down and
// grows by at most kMaxBytesPerSecond (`bytes` fields) or kMaxConnectionsPerSecond (the others,
// each a connection, flow or packet) for every started second of `elapsed`, plus one.
template <class Stats, class Field>
std::string counters_implausible(const Stats& before, const Stats& after, Clock::duration elapsed,
                                 std::span<const Field> fields, uint64_t Stats::*gauge,
                                 std::initializer_list<uint64_t Stats::*> bytes) {
    const auto seconds = static_cast<uint64_t>(
        std::chrono::ceil<std::chrono::seconds>(std::max(elapsed, Clock::duration::zero()))
            .count() +
        1);
    for (const auto& f : fields) {
        if (f.field == gauge) continue;
        const uint64_t old_value = before.*f.field, new_value = after.*f.field;
        const bool is_bytes = std::find(bytes.begin(), bytes.end(), f.field) != bytes.end();
        const uint64_t per_second = is_bytes ? kMaxBytesPerSecond : kMaxConnectionsPerSecond;
        if (new_value < old_value)
            return std::string(f.name) + " went down from " + std::to_string(old_value) + " to " +
                   std::to_string(new_value);
        if (new_value - old_value > per_second * seconds)
            return std::string(f.name) + " grew by " + std::to_string(new_value - old_value) +
                   " in " + std::to_string(seconds) + " s";
    }
    return "";
}

// Why a worker's new STATS cannot be true ("" when they can): a counter that went down, grew faster
// than any worker could make it grow in `elapsed`, or more active connections than it may hold.
std::string implausible_stats(const ipc::StreamStats& before, const ipc::StreamStats& after,
                              Clock::duration elapsed, int max_connections);

// The same for a datagram worker; `max_flows`: its share of the flow table.
std::string implausible_stats(const ipc::DatagramStats& before, const ipc::DatagramStats& after,
                              Clock::duration elapsed, int max_flows);

// The same for a packet worker: one stream at a time, no more packets or bytes out than in, no
// more verdicts than packets read.
std::string implausible_stats(const ipc::PacketStats& before, const ipc::PacketStats& after,
                              Clock::duration elapsed);

// Adds a worker's counters to a proxy's.
void add_counters(ProxyCounters& c, const ipc::StreamStats& s);
void add_counters(ProxyCounters& c, const ipc::DatagramStats& s);
void add_counters(ProxyCounters& c, const ipc::PacketStats& s);
void add_counters(ProxyCounters& c, const ipc::TunnelStats& s);

// The same for a tunnel worker: no more conversations active than it may hold
// (`max_active`: kcp-client's max_connections share, kcp-server's max_sessions) or opened.
std::string implausible_stats(const ipc::TunnelStats& before, const ipc::TunnelStats& after,
                              Clock::duration elapsed, uint64_t max_active);

class Supervisor : public ControlHandler {
  public:
    // `listeners` are the proxies' listeners in policy order, obtained from `source`, which
    // also serves reloads and outlives the supervisor. Resolves the policy's host-name upstreams:
    // throws std::runtime_error (one line) when one does not resolve.
    Supervisor(policy::Policy policy, std::vector<Listener> listeners, ListenerSource& source,
               std::string worker_path);
    ~Supervisor() override;
    int run();  // until stopped; returns the process exit status
    // SIGHUP and SIGQUIT stop it as SIGTERM does, instead of reloading (SIGHUP) or dumping core.
    void stop_on_hangup();

    // For the control and metrics servers, which live on this loop and need their deadlines.
    EventLoop& loop() { return loop_; }
    using Ticker = std::function<std::optional<Clock::time_point>(Clock::time_point)>;
    void add_ticker(Ticker t) { tickers_.push_back(std::move(t)); }

    void worker_exited(WorkerProcess& w);
    void worker_message(WorkerProcess& w);
    void worker_log(WorkerProcess& w);
    // Handlers of the worker message table (dispatch.cpp), called once permit() said yes.
    void on_ready(WorkerProcess& w, const ipc::Message& m);
    void on_stats(WorkerProcess& w, const ipc::Message& m);

    // ControlHandler
    DaemonStatus status() override;
    CommandOutcome reload() override;
    CommandOutcome restart_proxy(const std::string& name) override;
    CommandOutcome stop_proxy(const std::string& name) override;
    CommandOutcome start_proxy(const std::string& name) override;
    bool is_worker(pid_t pid) const override;

  private:
    void start_generation(ProxyState& p);
    void start_worker(ProxyState& p, size_t slot);
    void drain_worker(WorkerProcess& w);
    void drain_proxy(ProxyState& p);
    void retire_old_generation_when_ready(ProxyState& p);
    void kill_worker(WorkerProcess& w, const std::string& why);
    void fail_proxy(ProxyState& p, const std::string& why);
    void begin_stop(const char* why);
    void on_signal();
    std::optional<Clock::time_point> tick(Clock::time_point now);
    std::string label(const WorkerProcess& w) const;
    void check_ready();
    bool no_workers_left() const;
    bool has_workers(const ProxyState& p) const;
    std::optional<Clock::time_point> retry_listen(ProxyState& p, Clock::time_point now);
    ProxyState* find(const std::string& name);
    ProxyCounters counters(const ProxyState& p) const;
    std::string summary() const;
    std::unique_ptr<ProxyState> make_proxy(policy::Proxy config, Listener listener);
    // A host-name upstream resolved to a new set: the proxy's current workers get ADDRESSES.
    void send_addresses(const std::string& proxy, const std::vector<SockAddr>& set);

    struct Signals : EventSource {
        Supervisor* s = nullptr;
        unique_fd fd;
        void on_event(uint32_t) override { s->on_signal(); }
    };

    policy::Policy policy_;
    int policy_generation_ = 1;
    ListenerSource& source_;
    std::string worker_path_;
    EventLoop loop_;
    Signals signals_;
    Notifier notifier_;
    std::vector<std::unique_ptr<ProxyState>> proxies_;  // in policy order
    std::vector<std::unique_ptr<ProxyState>> removed_;  // removed by a reload, still draining
    std::vector<Ticker> tickers_;
    std::unique_ptr<UpstreamNames> names_;  // host-name upstreams, resolved and refreshed
    bool hangup_stops_ = false;
    bool stopping_ = false;
    bool stopped_by_hangup_ = false;  // a hang-up began the stop: the next SIGTERM is a first one
    bool ready_ = false;              // READY=1 sent for the current generation of everything
    Clock::time_point started_ = Clock::now();
    Clock::time_point stop_deadline_{};
    Clock::time_point next_status_{};
    std::vector<std::unique_ptr<WorkerProcess>> exited_;     // freed after the epoll batch
    std::vector<std::unique_ptr<ProxyState>> removed_done_;  // the same, for their proxies
};

}  // namespace pfp::supervisor
