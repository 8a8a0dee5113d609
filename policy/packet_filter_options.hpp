#pragma once
// The `filter` key of a stream-to-raw entry: which packets from the stream may be injected
// (common/packet_filter.hpp has the rules; docs/policy.md, "Packet filters").
#include <optional>
#include <string>

#include "common/worker_kind.hpp"
#include "policy/checker.hpp"
#include "policy/model.hpp"

namespace pfp::policy::detail {

void parse_packet_filter(Checker& check, const json& v, const std::string& pointer,
                         std::optional<WorkerKind> kind, Proxy& p);

}  // namespace pfp::policy::detail
