#pragma once
// What a worker is told in its HANDOVER: one proxy's resolved settings, as JSON. The supervisor
// is trusted by the worker, but the decoder is still strict: unknown or missing keys are errors.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/worker_kind.hpp"

namespace pfp {

struct WorkerConfig {
    std::string proxy;  // policy name
    WorkerKind kind = WorkerKind::tcp_forward;
    int index = 0;                 // which of the proxy's worker processes
    int generation = 0;            // bumped on every (re)start
    std::string listen;            // canonical endpoint text; the fd arrives with the message
    std::string upstream;          // canonical endpoint text
    int max_connections = 10'000;  // this worker's share
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds idle_timeout{0};
    std::chrono::milliseconds drain_timeout{30'000};
    bool tcp_nodelay = true;
    bool keepalive = true;
    std::chrono::milliseconds keepalive_idle{60'000};
    std::chrono::milliseconds keepalive_interval{10'000};
    int keepalive_count = 6;
    bool splice = true;
    // Stream kinds other than tcp-forward (see policy/model.hpp for the meaning of each).
    std::string upstream_mode = "fixed";  // fixed | destination-header | original-destination
    bool send_original_destination = false;
    std::string header = "standard";  // standard | oyster-v4
    bool proxy_protocol = false;
    std::vector<std::string> allow;
    std::vector<uint32_t> allowed_cids;
    std::vector<std::string> allowed_sources;
    bool log_connections = false;
    bool statistics = false;

    std::string to_json() const;
    static WorkerConfig from_json(const std::string& text);  // throws std::runtime_error
};

}  // namespace pfp
