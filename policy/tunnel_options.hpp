#pragma once
// The keys of the KCP tunnel kinds (kcp-client, kcp-server; docs/policy.md "KCP tunnels"): where
// the PSK comes from, the datagram size, socket buffers and the `kcp` object of tuning and limits;
// the existing keys that do not apply to a tunnel refused, and the tunnel's defaults.
#include <optional>
#include <string>

#include "common/worker_kind.hpp"
#include "policy/checker.hpp"
#include "policy/model.hpp"

namespace pfp::policy::detail {

// After the family keys: a tunnel kind's own keys (refused on every other kind, with the usual
// one-line message), and the keys of other families refused on a tunnel.
void parse_tunnel_keys(Checker& check, const json& v, const std::string& pointer,
                       std::optional<WorkerKind> kind, Proxy& p);

}  // namespace pfp::policy::detail
