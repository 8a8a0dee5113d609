#pragma once
// A snapshot of what pf-proxyd is doing: what `pf-proxyctl status` shows and the metrics
// endpoint exports. The supervisor fills it; rendering is pure so both outputs say the same.
#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/ipc.hpp"

namespace pfp::supervisor {

struct WorkerStatus {
    pid_t pid = -1;
    int index = 0;       // slot within the proxy
    int generation = 0;  // the proxy configuration generation this worker runs
    std::string state;   // "starting", "running", "draining"
    bool operator==(const WorkerStatus&) const = default;
};

// Counters are totals since pf-proxyd started (they survive worker restarts and reloads of the
// same proxy name), except `active`.
struct ProxyCounters {
    uint64_t accepted = 0;  // connections accepted (total)
    uint64_t active = 0;
    uint64_t bytes_up = 0;    // client -> upstream
    uint64_t bytes_down = 0;  // upstream -> client
    uint64_t connect_failures = 0;
    uint64_t accept_errors = 0;
    uint64_t denied = 0;
    // Datagram kinds: flows and datagrams by direction, drops by reason (the fields above hold
    // flows created and active, bytes, and datagrams refused by allowed_sources).
    std::optional<ipc::DatagramStats> datagram;
    // Packet kinds: packets each way, verdicts, drops by reason, reconnects (the fields above
    // hold streams, bytes in and out, and the packets the filters dropped as `denied`).
    std::optional<ipc::PacketStats> packet;
    // Tunnel kinds (kcp-client, kcp-server): conversations, datagrams, drops by reason,
    // retransmissions (the fields above hold sessions, bytes and connect failures).
    std::optional<ipc::TunnelStats> tunnel;
    bool operator==(const ProxyCounters&) const = default;
};

// A host-name upstream's current address set (supervisor/upstream_names.hpp).
struct NameStatus {
    std::string host;
    std::vector<std::string> addresses;  // "10.0.0.1:443", in the order workers try them
    double resolved_at = 0;              // Unix time of the answer these addresses came from
    double refresh_in_seconds = 0;       // until the next resolution (0: under way)
    std::string error;                   // the last refresh's failure; "" while it resolves
    bool operator==(const NameStatus&) const = default;
};

struct ProxyStatus {
    std::string name;
    std::string kind;      // kind_name()
    std::string listen;    // endpoint text
    std::string upstream;  // describe_upstream()
    // "starting", "running", "reloading" (a new generation is starting), "stopped" (by
    // pf-proxyctl stop), "failed" (crash loop or fatal exit), "draining" (removed by a reload).
    std::string state;
    int generation = 1;     // +1 on each reload that changed it or restart command
    uint64_t restarts = 0;  // workers restarted after an unexpected exit
    std::string last_exit;  // "exited with status 3", "killed by SIGSYS (...)", "" if none
    std::vector<WorkerStatus> workers;
    ProxyCounters counters;
    std::optional<NameStatus> resolved;  // a host-name upstream only
    bool operator==(const ProxyStatus&) const = default;
};

struct DaemonStatus {
    std::string version;
    pid_t pid = -1;
    std::string policy;         // policy file path
    int policy_generation = 1;  // +1 on each successful reload
    std::string state;          // "starting", "running", "reloading", "stopping"
    double uptime_seconds = 0;
    std::vector<ProxyStatus> proxies;
    bool operator==(const DaemonStatus&) const = default;
};

nlohmann::json to_json(const DaemonStatus& s);
// Throws std::runtime_error naming the first missing or mistyped member.
DaemonStatus status_from_json(const nlohmann::json& j);

// An aligned table for people (pf-proxyctl status).
std::string render_table(const DaemonStatus& s);

// Prometheus text exposition format 0.0.4, labelled by proxy name and kind.
std::string render_prometheus(const DaemonStatus& s);

}  // namespace pfp::supervisor
