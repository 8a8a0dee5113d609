#pragma once
// Which worker kind a proxy entry makes: its listener, its upstream and send_original_destination
// choose one, and the kind decides which kind-specific keys the entry may use. The columns come
// from the kind table (common/worker_kind.cpp); kind_rules.cpp maps an entry onto them.
#include <optional>
#include <string>

#include "common/endpoint.hpp"
#include "common/worker_kind.hpp"
#include "policy/model.hpp"

namespace pfp::policy::detail {

// What an entry says about its kind. nullopt where that part is missing or invalid (reported
// already): an unknown part rules nothing out, and no message is about it.
struct KindInput {
    std::optional<Scheme> listen;               // listen_family for a "systemd:NAME" listener
    std::optional<UpstreamMode> upstream_mode;  // nullopt: missing or did not parse
    Endpoint upstream;                          // when upstream_mode == fixed
    std::optional<bool> send_original_destination;
    std::optional<bool> tunnel;  // `tunnel: "kcp"` written (false: absent)
};

// The kind, or why there is none: one message for each key at fault (empty if it is not).
struct KindChoice {
    std::optional<WorkerKind> kind;
    std::string listen_error;
    std::string upstream_error;
    std::string send_original_destination_error;
    std::string tunnel_error;
};

KindChoice derive_kind(const KindInput& in);

// The keys that only some kinds take.
enum class KindKey {
    allow,       // `allow`: the kind connects to TCP destinations
    statistics,  // `statistics`
};

bool kind_takes(WorkerKind kind, KindKey key);

// "tcp-forward, vsock-to-ip": the kinds that take `key`, for messages.
std::string kinds_taking(KindKey key);

}  // namespace pfp::policy::detail
