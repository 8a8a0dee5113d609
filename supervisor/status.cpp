#include "supervisor/status.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "common/text.hpp"

namespace pfp::supervisor {
namespace {

using json = nlohmann::json;

// ---- JSON ---------------------------------------------------------------------------------------

// Reads the members of one object of the status, naming each by its path ("proxies[0].state")
// when it is missing or of the wrong type: a mismatch between pf-proxyctl and pf-proxyd shows up
// as a message, not as zeros.
class Reader {
  public:
    Reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
        if (!j_.is_object())
            throw std::runtime_error("status: " + (path_.empty() ? "the status" : quoted(path_)) +
                                     " must be an object, got " + j_.type_name());
    }

    const json& member(const char* key) const {
        const auto it = j_.find(key);
        if (it == j_.end()) throw std::runtime_error("status: member " + name(key) + " is missing");
        return *it;
    }
    std::string str(const char* key) const {
        const json& v = member(key);
        if (!v.is_string()) mistyped(key, "a string", v);
        return v.get<std::string>();
    }
    int64_t integer(const char* key, int64_t lo, int64_t hi) const {
        const json& v = member(key);
        if (v.is_number_unsigned() && v.get<uint64_t>() <= static_cast<uint64_t>(hi)) {
            const auto n = static_cast<int64_t>(v.get<uint64_t>());
            if (n >= lo) return n;
        } else if (v.is_number_integer() && !v.is_number_unsigned()) {
            const auto n = v.get<int64_t>();
            if (n >= lo && n <= hi) return n;
        }
        mistyped(key, "an integer " + std::to_string(lo) + ".." + std::to_string(hi), v);
    }
    uint64_t count(const char* key) const {
        const json& v = member(key);
        if (!v.is_number_unsigned()) mistyped(key, "an unsigned integer", v);
        return v.get<uint64_t>();
    }
    double seconds(const char* key) const {
        const json& v = member(key);
        if (!v.is_number() || !(v.get<double>() >= 0)) mistyped(key, "a number >= 0", v);
        return v.get<double>();
    }
    const json& array(const char* key) const {
        const json& v = member(key);
        if (!v.is_array()) mistyped(key, "an array", v);
        return v;
    }
    std::string path(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  private:
    static std::string quoted(const std::string& s) { return "\"" + s + "\""; }
    std::string name(const char* key) const { return quoted(path(key)); }
    [[noreturn]] void mistyped(const char* key, const std::string& expected, const json& v) const {
        std::string got = v.is_primitive() && !v.is_string() ? v.dump() : v.type_name();
        throw std::runtime_error("status: member " + name(key) + " must be " + expected + ", got " +
                                 got);
    }

    const json& j_;
    std::string path_;
};

constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

WorkerStatus worker_from_json(const json& j, const std::string& path) {
    const Reader r(j, path);
    WorkerStatus w;
    w.pid = static_cast<pid_t>(r.integer("pid", -1, kMaxInt));
    w.index = static_cast<int>(r.integer("index", 0, kMaxInt));
    w.generation = static_cast<int>(r.integer("generation", 0, kMaxInt));
    w.state = r.str("state");
    return w;
}

ProxyCounters counters_from_json(const json& j, const std::string& path) {
    const Reader r(j, path);
    ProxyCounters c;
    c.accepted = r.count("accepted");
    c.active = r.count("active");
    c.bytes_up = r.count("bytes_up");
    c.bytes_down = r.count("bytes_down");
    c.connect_failures = r.count("connect_failures");
    c.accept_errors = r.count("accept_errors");
    c.denied = r.count("denied");
    if (j.contains("datagram")) {
        const Reader d(r.member("datagram"), r.path("datagram"));
        ipc::DatagramStats s;
        for (const auto& f : ipc::datagram_fields()) s.*f.field = d.count(f.name);
        c.datagram = s;
    }
    if (j.contains("packet")) {
        const Reader d(r.member("packet"), r.path("packet"));
        ipc::PacketStats s;
        for (const auto& f : ipc::packet_fields()) s.*f.field = d.count(f.name);
        c.packet = s;
    }
    if (j.contains("tunnel")) {
        const Reader d(r.member("tunnel"), r.path("tunnel"));
        ipc::TunnelStats s;
        for (const auto& f : ipc::tunnel_fields()) s.*f.field = d.count(f.name);
        c.tunnel = s;
    }
    return c;
}

ProxyStatus proxy_from_json(const json& j, const std::string& path) {
    const Reader r(j, path);
    ProxyStatus p;
    p.name = r.str("name");
    p.kind = r.str("kind");
    p.listen = r.str("listen");
    p.upstream = r.str("upstream");
    p.state = r.str("state");
    p.generation = static_cast<int>(r.integer("generation", 0, kMaxInt));
    p.restarts = r.count("restarts");
    p.last_exit = r.str("last_exit");
    const json& workers = r.array("workers");
    for (size_t i = 0; i < workers.size(); ++i)
        p.workers.push_back(
            worker_from_json(workers[i], r.path("workers") + "[" + std::to_string(i) + "]"));
    p.counters = counters_from_json(r.member("counters"), r.path("counters"));
    if (j.contains("resolved")) {
        const Reader n(r.member("resolved"), r.path("resolved"));
        NameStatus s;
        s.host = n.str("host");
        const json& list = n.array("addresses");
        for (const json& a : list) {
            if (!a.is_string())
                throw std::runtime_error("status: member \"" + n.path("addresses") +
                                         "\" must hold strings");
            s.addresses.push_back(a.get<std::string>());
        }
        s.resolved_at = n.seconds("resolved_at");
        s.refresh_in_seconds = n.seconds("refresh_in_seconds");
        s.error = n.str("error");
        p.resolved = std::move(s);
    }
    return p;
}

// ---- Table --------------------------------------------------------------------------------------

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

// ---- Prometheus ---------------------------------------------------------------------------------

// Label values escape exactly backslash, double quote and newline (text format 0.0.4).
std::string label_value(std::string_view s) {
    std::string out;
    for (const char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

class Exposition {
  public:
    void family(const char* name, const char* type, const char* help) {
        name_ = name;
        out_ += "# HELP " + name_ + " " + help + "\n# TYPE " + name_ + " " + type + "\n";
    }
    void sample(const std::string& labels, const std::string& value) {
        out_ += name_;
        if (!labels.empty()) out_ += "{" + labels + "}";
        out_ += " " + value + "\n";
    }
    void sample(const std::string& labels, uint64_t value) {
        sample(labels, std::to_string(value));
    }
    std::string take() { return std::move(out_); }

  private:
    std::string name_;
    std::string out_;
};

}  // namespace

nlohmann::json to_json(const DaemonStatus& s) {
    json proxies = json::array();
    for (const auto& p : s.proxies) {
        json workers = json::array();
        for (const auto& w : p.workers) {
            workers.push_back({{"pid", w.pid},
                               {"index", w.index},
                               {"generation", w.generation},
                               {"state", w.state}});
        }
        const ProxyCounters& c = p.counters;
        json counters = {{"accepted", c.accepted},
                         {"active", c.active},
                         {"bytes_up", c.bytes_up},
                         {"bytes_down", c.bytes_down},
                         {"connect_failures", c.connect_failures},
                         {"accept_errors", c.accept_errors},
                         {"denied", c.denied}};
        if (c.datagram) {
            json d = json::object();
            for (const auto& f : ipc::datagram_fields()) d[f.name] = (*c.datagram).*f.field;
            counters["datagram"] = std::move(d);
        }
        if (c.packet) {
            json d = json::object();
            for (const auto& f : ipc::packet_fields()) d[f.name] = (*c.packet).*f.field;
            counters["packet"] = std::move(d);
        }
        if (c.tunnel) {
            json d = json::object();
            for (const auto& f : ipc::tunnel_fields()) d[f.name] = (*c.tunnel).*f.field;
            counters["tunnel"] = std::move(d);
        }
        json entry = {{"name", p.name},
                      {"kind", p.kind},
                      {"listen", p.listen},
                      {"upstream", p.upstream},
                      {"state", p.state},
                      {"generation", p.generation},
                      {"restarts", p.restarts},
                      {"last_exit", p.last_exit},
                      {"workers", std::move(workers)},
                      {"counters", std::move(counters)}};
        if (p.resolved) {
            const NameStatus& n = *p.resolved;
            entry["resolved"] = {{"host", n.host},
                                 {"addresses", n.addresses},
                                 {"resolved_at", n.resolved_at},
                                 {"refresh_in_seconds", n.refresh_in_seconds},
                                 {"error", n.error}};
        }
        proxies.push_back(std::move(entry));
    }
    return {{"version", s.version},
            {"pid", s.pid},
            {"policy", s.policy},
            {"policy_generation", s.policy_generation},
            {"state", s.state},
            {"uptime_seconds", s.uptime_seconds},
            {"proxies", std::move(proxies)}};
}

DaemonStatus status_from_json(const nlohmann::json& j) {
    const Reader r(j, "");
    DaemonStatus s;
    s.version = r.str("version");
    s.pid = static_cast<pid_t>(r.integer("pid", -1, kMaxInt));
    s.policy = r.str("policy");
    s.policy_generation = static_cast<int>(r.integer("policy_generation", 0, kMaxInt));
    s.state = r.str("state");
    s.uptime_seconds = r.seconds("uptime_seconds");
    const json& proxies = r.array("proxies");
    for (size_t i = 0; i < proxies.size(); ++i)
        s.proxies.push_back(proxy_from_json(proxies[i], "proxies[" + std::to_string(i) + "]"));
    return s;
}

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
               " out; verdicts " + n(k.verdicts_drop) + " drop, " + n(k.verdicts_accept) +
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

namespace {
void render_tunnel_families(Exposition& e, const DaemonStatus& s,
                            const std::vector<std::string>& labels) {
    std::vector<size_t> tunnel;
    for (size_t i = 0; i < s.proxies.size(); ++i)
        if (s.proxies[i].counters.tunnel) tunnel.push_back(i);
    if (tunnel.empty()) return;
    using T = const ipc::TunnelStats&;
    const auto per = [&](const char* name, const char* type, const char* help, const auto& value) {
        e.family(name, type, help);
        for (size_t i : tunnel) value(labels[i], *s.proxies[i].counters.tunnel);
    };
    per("pfproxy_tunnel_conversations_active", "gauge", "KCP conversations open now.",
        [&](const std::string& l, T t) { e.sample(l, t.sessions_active); });
    per("pfproxy_tunnel_datagrams_total", "counter", "Tunnel datagrams read and sent.",
        [&](const std::string& l, T t) {
            e.sample(l + ",direction=\"in\"", t.datagrams_in);
            e.sample(l + ",direction=\"out\"", t.datagrams_out);
        });
    per("pfproxy_tunnel_retransmits_total", "counter", "KCP segments sent again.",
        [&](const std::string& l, T t) { e.sample(l, t.retransmits); });
    per("pfproxy_tunnel_dropped_total", "counter",
        "Tunnel datagrams dropped, by reason (docs/kcp-tunnel.md, \"Server limits\").",
        [&](const std::string& l, T t) {
            for (const auto& f : ipc::tunnel_fields()) {
                const std::string_view name = f.name;
                if (name.starts_with("dropped_"))
                    e.sample(l + ",reason=\"" + std::string(name.substr(8)) + "\"", t.*f.field);
            }
            e.sample(l + ",reason=\"denied\"", t.denied);
        });
}

void render_packet_families(Exposition& e, const DaemonStatus& s,
                            const std::vector<std::string>& labels) {
    std::vector<size_t> packet;
    for (size_t i = 0; i < s.proxies.size(); ++i)
        if (s.proxies[i].counters.packet) packet.push_back(i);
    if (packet.empty()) return;
    using L = const std::string&;
    using K = const ipc::PacketStats&;
    const auto per_packet = [&](const char* name, const char* type, const char* help,
                                const auto& value) {
        e.family(name, type, help);
        for (size_t i : packet) value(labels[i], *s.proxies[i].counters.packet);
    };
    per_packet("pfproxy_packets_total", "counter",
               "IP packets; direction in is taken from the listen side (nfqueue or stream), out "
               "is passed on (written to the stream or injected).",
               [&](L l, K k) {
                   e.sample(l + ",direction=\"in\"", k.packets_in);
                   e.sample(l + ",direction=\"out\"", k.packets_out);
               });
    per_packet("pfproxy_packet_verdicts_total", "counter", "nfqueue verdicts given, by verdict.",
               [&](L l, K k) {
                   e.sample(l + ",verdict=\"drop\"", k.verdicts_drop);
                   e.sample(l + ",verdict=\"accept\"", k.verdicts_accept);
               });
    per_packet("pfproxy_packets_dropped_total", "counter", "IP packets not passed on, by reason.",
               [&](L l, K k) {
                   e.sample(l + ",reason=\"stream_down\"", k.dropped_stream_down);
                   e.sample(l + ",reason=\"malformed\"", k.dropped_malformed);
                   e.sample(l + ",reason=\"destination\"", k.dropped_destination);
                   e.sample(l + ",reason=\"source\"", k.dropped_source);
                   e.sample(l + ",reason=\"reserved\"", k.dropped_reserved);
                   e.sample(l + ",reason=\"port\"", k.dropped_port);
                   e.sample(l + ",reason=\"send_error\"", k.send_errors);
               });
    per_packet("pfproxy_packet_stream_events_total", "counter",
               "Events of the packet stream: reconnects, failed connects, streams ended by an "
               "error, nfqueue overruns.",
               [&](L l, K k) {
                   e.sample(l + ",event=\"reconnect\"", k.reconnects);
                   e.sample(l + ",event=\"connect_failure\"", k.connect_failures);
                   e.sample(l + ",event=\"stream_error\"", k.stream_errors);
                   e.sample(l + ",event=\"queue_overrun\"", k.queue_overruns);
               });
}
}  // namespace

std::string render_prometheus(const DaemonStatus& s) {
    Exposition e;
    e.family("pfproxy_uptime_seconds", "gauge", "Seconds since pf-proxyd started.");
    e.sample("", number(s.uptime_seconds));
    e.family("pfproxy_policy_generation", "gauge",
             "Generation of the policy in force: 1 at start, +1 on each successful reload.");
    e.sample("", std::to_string(s.policy_generation));

    std::vector<std::string> labels;
    for (const auto& p : s.proxies)
        labels.push_back("proxy=\"" + label_value(p.name) + "\",kind=\"" + label_value(p.kind) +
                         "\"");
    // Every sample of a family must be together, so each family loops over the proxies.
    const auto per_proxy = [&](const char* name, const char* type, const char* help,
                               const auto& value) {
        e.family(name, type, help);
        for (size_t i = 0; i < s.proxies.size(); ++i) value(labels[i], s.proxies[i]);
    };
    using P = const ProxyStatus&;
    using L = const std::string&;
    // "reloading" serves traffic with the old generation while the new one starts.
    per_proxy("pfproxy_proxy_up", "gauge",
              "1 while the proxy serves clients (state running or reloading), else 0.",
              [&](L l, P p) {
                  const bool up = p.state == "running" || p.state == "reloading";
                  e.sample(l, uint64_t{up ? 1u : 0u});
              });
    per_proxy("pfproxy_proxy_generation", "gauge",
              "Configuration generation of the proxy: +1 on each reload that changed it and on "
              "each restart command.",
              [&](L l, P p) { e.sample(l, std::to_string(p.generation)); });
    per_proxy("pfproxy_workers", "gauge", "Worker processes of the proxy.",
              [&](L l, P p) { e.sample(l, p.workers.size()); });
    per_proxy("pfproxy_worker_restarts_total", "counter",
              "Workers restarted after an unexpected exit.",
              [&](L l, P p) { e.sample(l, p.restarts); });
    per_proxy("pfproxy_connections_accepted_total", "counter", "Client connections accepted.",
              [&](L l, P p) { e.sample(l, p.counters.accepted); });
    per_proxy("pfproxy_connections_active", "gauge", "Client connections open now.",
              [&](L l, P p) { e.sample(l, p.counters.active); });
    per_proxy("pfproxy_bytes_total", "counter",
              "Bytes relayed; direction up is client to upstream, down is upstream to client.",
              [&](L l, P p) {
                  e.sample(l + ",direction=\"up\"", p.counters.bytes_up);
                  e.sample(l + ",direction=\"down\"", p.counters.bytes_down);
              });
    per_proxy("pfproxy_connect_failures_total", "counter",
              "Connections to the upstream that failed or timed out.",
              [&](L l, P p) { e.sample(l, p.counters.connect_failures); });
    per_proxy("pfproxy_accept_errors_total", "counter",
              "accept() errors of the listener (such as EMFILE).",
              [&](L l, P p) { e.sample(l, p.counters.accept_errors); });
    per_proxy("pfproxy_connections_denied_total", "counter",
              "Connections refused by the proxy's admission or allow rules.",
              [&](L l, P p) { e.sample(l, p.counters.denied); });
    render_packet_families(e, s, labels);
    render_tunnel_families(e, s, labels);
    // Datagram proxies only: their families list no stream proxy.
    std::vector<size_t> datagram;
    for (size_t i = 0; i < s.proxies.size(); ++i)
        if (s.proxies[i].counters.datagram) datagram.push_back(i);
    if (datagram.empty()) return e.take();
    const auto per_datagram = [&](const char* name, const char* type, const char* help,
                                  const auto& value) {
        e.family(name, type, help);
        for (size_t i : datagram) value(labels[i], *s.proxies[i].counters.datagram);
    };
    using D = const ipc::DatagramStats&;
    per_datagram("pfproxy_flows_active", "gauge", "Datagram flows (client addresses) open now.",
                 [&](L l, D d) { e.sample(l, d.flows_active); });
    per_datagram("pfproxy_flows_total", "counter",
                 "Datagram flows by how they began or ended: created, expired (idle), evicted "
                 "(the table was full).",
                 [&](L l, D d) {
                     e.sample(l + ",event=\"created\"", d.flows_created);
                     e.sample(l + ",event=\"expired\"", d.flows_expired);
                     e.sample(l + ",event=\"evicted\"", d.flows_evicted);
                 });
    per_datagram("pfproxy_datagrams_total", "counter",
                 "Datagrams forwarded; direction up is client to upstream.", [&](L l, D d) {
                     e.sample(l + ",direction=\"up\"", d.datagrams_up);
                     e.sample(l + ",direction=\"down\"", d.datagrams_down);
                 });
    per_datagram("pfproxy_datagrams_dropped_total", "counter",
                 "Datagrams not forwarded, by reason.", [&](L l, D d) {
                     e.sample(l + ",reason=\"denied\"", d.denied);
                     e.sample(l + ",reason=\"truncated\"", d.truncated);
                     e.sample(l + ",reason=\"refused\"", d.refused);
                     e.sample(l + ",reason=\"flow_error\"", d.flow_errors);
                     e.sample(l + ",reason=\"send_error\"", d.send_errors);
                 });
    return e.take();
}

}  // namespace pfp::supervisor
