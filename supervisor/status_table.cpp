// pf-proxyctl status's table: one line per proxy and worker, counters by family.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "common/text.hpp"
#include "supervisor/status.hpp"

namespace pfp::supervisor {
namespace {

// One line whatever a field holds: the status may come from another process.
std::string cell(std::string_view s) {
    std::string out;
    append_escaped(out, s, false);
    return out;
}

std::string human_bytes(uint64_t n) {
    if (n < 1024) return std::to_string(n) + " B";
    static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = static_cast<double>(n) / 1024;
    size_t unit = 0;
    // 1023.97 KiB would print as "1024.0 KiB"; move up a unit before rounding does.
    while (v >= 1023.95 && unit + 1 < std::size(kUnits)) {
        v /= 1024;
        ++unit;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
    return buf;
}

std::string human_duration(double seconds) {
    // Clamped so the conversion is defined whatever the number (a century is plenty).
    const auto s = static_cast<uint64_t>(seconds >= 0 ? std::min(seconds, 3.2e9) : 0);
    const uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
    const auto n = [](uint64_t v, const char* unit) { return std::to_string(v) + unit; };
    if (d > 0) return n(d, "d ") + n(h, "h");
    if (h > 0) return n(h, "h ") + n(m, "m");
    if (m > 0) return n(m, "m ") + n(sec, "s");
    return n(sec, "s");
}

std::string pids(const std::vector<WorkerStatus>& workers) {
    std::string out;
    for (const auto& w : workers) {
        if (w.pid <= 0) continue;
        if (!out.empty()) out += ',';
        out += std::to_string(w.pid);
    }
    return out.empty() ? "-" : out;
}

enum class Align { left, right };

// Columns separated by two spaces, each as wide as its widest cell; no trailing blanks.
std::string render_columns(const std::vector<std::vector<std::string>>& rows,
                           const std::vector<Align>& align) {
    std::vector<size_t> width(align.size(), 0);
    for (const auto& row : rows)
        for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (size_t c = 0; c < row.size(); ++c) {
            if (c > 0) line += "  ";
            const std::string pad(width[c] - row[c].size(), ' ');
            line += align[c] == Align::right ? pad + row[c] : row[c] + pad;
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + "\n";
    }
    return out;
}

}  // namespace

std::string render_table(const DaemonStatus& s) {
    std::string out = "pf-proxyd " + cell(s.version) + ", pid " + std::to_string(s.pid) + ", " +
                      cell(s.state) + ", policy " + cell(s.policy) + " (generation " +
                      std::to_string(s.policy_generation) + "), up " +
                      human_duration(s.uptime_seconds) + "\n";
    if (s.proxies.empty()) return out + "no proxies\n";
    std::vector<std::vector<std::string>> rows{{"PROXY", "KIND", "STATE", "GEN", "PIDS", "RESTARTS",
                                                "ACTIVE", "TOTAL", "UP", "DOWN", "DENIED", "ERRORS",
                                                "LAST EXIT"}};
    for (const auto& p : s.proxies) {
        const ProxyCounters& c = p.counters;
        rows.push_back({cell(p.name), cell(p.kind), cell(p.state), std::to_string(p.generation),
                        pids(p.workers), std::to_string(p.restarts), std::to_string(c.active),
                        std::to_string(c.accepted), human_bytes(c.bytes_up),
                        human_bytes(c.bytes_down), std::to_string(c.denied),
                        std::to_string(c.connect_failures + c.accept_errors),
                        p.last_exit.empty() ? "-" : cell(p.last_exit)});
    }
    using A = Align;
    out += render_columns(rows, {A::left, A::left, A::left, A::right, A::left, A::right, A::right,
                                 A::right, A::right, A::right, A::right, A::right, A::left});
    // Datagram proxies: flows and drops, one line each (ACTIVE and TOTAL above count flows).
    for (const auto& p : s.proxies) {
        if (!p.counters.datagram) continue;
        const ipc::DatagramStats& d = *p.counters.datagram;
        out += cell(p.name) + ": flows " + std::to_string(d.flows_active) + " active, " +
               std::to_string(d.flows_created) + " created, " + std::to_string(d.flows_expired) +
               " expired, " + std::to_string(d.flows_evicted) + " evicted; datagrams " +
               std::to_string(d.datagrams_up) + " up, " + std::to_string(d.datagrams_down) +
               " down; dropped: " + std::to_string(d.denied) + " denied, " +
               std::to_string(d.truncated) + " truncated, " + std::to_string(d.refused) +
               " refused, " + std::to_string(d.flow_errors) + " flow errors, " +
               std::to_string(d.send_errors) + " send errors\n";
    }
    // Host-name upstreams: the current set and its next refresh.
    for (const auto& p : s.proxies) {
        if (!p.resolved) continue;
        const NameStatus& n = *p.resolved;
        std::string list;
        for (const auto& a : n.addresses) list += (list.empty() ? "" : ", ") + cell(a);
        out += cell(p.name) + ": " + cell(n.host) + " -> " + list + "; refresh in " +
               human_duration(n.refresh_in_seconds) +
               (n.error.empty() ? "" : "; last refresh failed: " + cell(n.error)) + "\n";
    }
    // Packet proxies: packets each way, verdicts and drops by reason (TOTAL above counts streams).
    for (const auto& p : s.proxies) {
        if (!p.counters.packet) continue;
        const ipc::PacketStats& k = *p.counters.packet;
        const auto n = [](uint64_t v) { return std::to_string(v); };
        out += cell(p.name) + ": packets " + n(k.packets_in) + " in, " + n(k.packets_out) +
               (k.packets_cut != 0 ? " out (" + n(k.packets_cut) + " cut to the route's MTU)"
                                   : std::string(" out")) +
               "; verdicts " + n(k.verdicts_drop) + " drop, " + n(k.verdicts_accept) +
               " accept; dropped: " + n(k.dropped_stream_down) + " stream down, " +
               n(k.dropped_destination) + " destination, " + n(k.dropped_source) + " source, " +
               n(k.dropped_reserved) + " reserved, " + n(k.dropped_port) + " port, " +
               n(k.dropped_malformed) + " malformed, " + n(k.send_errors) + " send errors; " +
               n(k.reconnects) + " reconnects, " + n(k.stream_errors) + " stream errors, " +
               n(k.queue_overruns) + " queue overruns\n";
    }
    // Tunnel proxies: conversations, datagrams, drops by reason (TOTAL above counts sessions).
    for (const auto& p : s.proxies) {
        if (!p.counters.tunnel) continue;
        const ipc::TunnelStats& t = *p.counters.tunnel;
        const auto n = [](uint64_t v) { return std::to_string(v); };
        out += cell(p.name) + ": conversations " + n(t.sessions_active) + " active, " +
               n(t.sessions) + " opened, " + n(t.handshake_failures) + " handshake failures; " +
               "datagrams " + n(t.datagrams_in) + " in, " + n(t.datagrams_out) + " out, " +
               n(t.retransmits) + " retransmits; dropped: " + n(t.dropped_malformed) +
               " malformed, " + n(t.dropped_rate_limited) + " rate limited, " +
               n(t.dropped_handshake) + " handshake, " + n(t.dropped_full) + " full, " +
               n(t.dropped_stale_duplicate) + " stale duplicate, " + n(t.dropped_unknown) +
               " unknown, " + n(t.dropped_refused) + " refused, " + n(t.denied) + " denied\n";
    }
    return out;
}

}  // namespace pfp::supervisor
