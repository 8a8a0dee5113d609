// A tunnel worker's counters (ipc::TunnelStats): whether a report can be true, and how they add to
// a proxy's totals. The same bounds as the other families' (supervisor.hpp).
#include <string>

#include "supervisor/supervisor.hpp"

namespace pfp::supervisor {

std::string implausible_stats(const ipc::TunnelStats& before, const ipc::TunnelStats& after,
                              Clock::duration elapsed, uint64_t max_active) {
    // A datagram counts as a "connection": no worker reads 4 M datagrams a second.
    if (std::string why = counters_implausible(
            before, after, elapsed, ipc::tunnel_fields(), &ipc::TunnelStats::sessions_active,
            {&ipc::TunnelStats::bytes_up, &ipc::TunnelStats::bytes_down});
        !why.empty())
        return why;
    if (after.sessions_active > max_active)
        return "sessions_active " + std::to_string(after.sessions_active) +
               " is more than the worker can hold";
    // Each datagram read is dropped for one reason at most (`denied` counts kcp-client's TCP
    // clients, not datagrams: left out).
    const uint64_t dropped = after.dropped_malformed + after.dropped_rate_limited +
                             after.dropped_handshake + after.dropped_full +
                             after.dropped_stale_duplicate + after.dropped_unknown +
                             after.dropped_refused;
    if (dropped > after.datagrams_in)
        return "more datagrams dropped (" + std::to_string(dropped) + ") than read (" +
               std::to_string(after.datagrams_in) + ")";
    return "";
}

void add_counters(ProxyCounters& c, const ipc::TunnelStats& s) {
    c.accepted += s.sessions;
    c.active += s.sessions_active;
    c.bytes_up += s.bytes_up;
    c.bytes_down += s.bytes_down;
    c.connect_failures += s.connect_failures + s.handshake_failures;
    c.accept_errors += s.accept_errors;
    c.denied += s.denied;
    if (!c.tunnel) c.tunnel.emplace();
    for (const auto& f : ipc::tunnel_fields()) (*c.tunnel).*f.field += s.*f.field;
}

}  // namespace pfp::supervisor
