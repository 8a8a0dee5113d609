#pragma once
// The options of a stream relay entry, after its listener, upstream and kind are known: preamble,
// egress, admission, the socket file, logging, limits, timeouts, keepalive and restart.
#include <optional>
#include <string>

#include "common/endpoint.hpp"
#include "common/worker_kind.hpp"
#include "policy/checker.hpp"
#include "policy/model.hpp"

namespace pfp::policy::detail {

// What the option checks know about an entry; nullopt where that part is missing or invalid,
// reported already, so that it rules nothing in or out.
struct RelayShape;
// on_stream_down, fail_open and queue_maxlen: only for an nfqueue listener (an nflog one gives no
// verdicts, so they are refused there with a reason); packet kinds run one
// worker.
void parse_queue_options(Checker& check, const json& v, const std::string& pointer,
                         const RelayShape& shape, Proxy& p);

struct RelayShape {
    std::optional<Scheme> listen;
    bool abstract_listen = false;  // unix:@name: no socket file
    bool activated = false;        // systemd:NAME: the service manager made the socket
    std::optional<UpstreamMode> upstream_mode;
    std::optional<bool> send_original_destination;
    std::optional<WorkerKind> kind;
};

// The keys that choose a relay's preamble, admission, egress, socket file and logging. A key that
// cannot apply to this entry is reported as such, and its value is not checked further. Reads
// p.upstream (set already) to check `allow` against it.
void parse_relay_options(Checker& check, const json& v, const std::string& pointer,
                         const RelayShape& shape, Proxy& p);

// Limits, timeouts, TCP tuning, keepalive and restart: keys every relay takes.
void parse_relay_tuning(Checker& check, const json& v, const std::string& pointer, Proxy& p);

// After the above: the keys of one family only (max_flows and batch for datagram forwarders; a
// stream relay's connection keys refused there), and the datagram family's defaults.
void parse_family_keys(Checker& check, const json& v, const std::string& pointer,
                       std::optional<WorkerKind> kind, Proxy& p);

}  // namespace pfp::policy::detail
