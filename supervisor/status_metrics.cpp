// The Prometheus text exposition (format 0.0.4) of the status.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "common/text.hpp"
#include "supervisor/status.hpp"

namespace pfp::supervisor {
namespace {

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
    per_packet("pfproxy_packets_cut_total", "counter",
               "IP packets injected as segments that fit their route's MTU (route_mtu).",
               [&](L l, K k) { e.sample(l, k.packets_cut); });
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
