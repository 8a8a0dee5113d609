// A packet worker's counters (ipc::PacketStats): whether a report can be true, and how they add to
// a proxy's totals. The same bounds as the other families' (supervisor.hpp).
#include <algorithm>
#include <string>

#include "supervisor/supervisor.hpp"

namespace pfp::supervisor {

std::string implausible_stats(const ipc::PacketStats& before, const ipc::PacketStats& after,
                              Clock::duration elapsed) {
    // A packet counts as a "connection": no worker reads 4 M packets a second.
    if (std::string why = counters_implausible(
            before, after, elapsed, ipc::packet_fields(), &ipc::PacketStats::streams_active,
            {&ipc::PacketStats::bytes_in, &ipc::PacketStats::bytes_out});
        !why.empty())
        return why;
    if (after.streams_active > 1 || after.streams_active > after.streams)
        return "streams_active " + std::to_string(after.streams_active) +
               " is more than the worker can hold";
    if (after.packets_out > after.packets_in || after.bytes_out > after.bytes_in)
        return "more packets or bytes out (" + std::to_string(after.packets_out) + ", " +
               std::to_string(after.bytes_out) + ") than in (" + std::to_string(after.packets_in) +
               ", " + std::to_string(after.bytes_in) + ")";
    if (after.verdicts_drop + after.verdicts_accept > after.packets_in)
        return "more verdicts than packets read";
    if (after.packets_cut > after.packets_out)
        return "more packets cut (" + std::to_string(after.packets_cut) + ") than sent (" +
               std::to_string(after.packets_out) + ")";
    return "";
}

void add_counters(ProxyCounters& c, const ipc::PacketStats& s) {
    c.accepted += s.streams;
    c.active += s.streams_active;
    c.bytes_up += s.bytes_in;
    c.bytes_down += s.bytes_out;
    c.connect_failures += s.connect_failures;
    c.accept_errors += s.queue_overruns;
    c.denied += s.dropped_destination + s.dropped_source + s.dropped_reserved + s.dropped_port +
                s.dropped_malformed;
    if (!c.packet) c.packet.emplace();
    for (const auto& f : ipc::packet_fields()) (*c.packet).*f.field += s.*f.field;
}

}  // namespace pfp::supervisor
