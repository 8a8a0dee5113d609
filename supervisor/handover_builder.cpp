#include "supervisor/handover_builder.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/allow_list.hpp"
#include "common/log.hpp"
#include "supervisor/host_addresses.hpp"

namespace pfp::supervisor {

std::vector<std::string> host_addresses() {
    if (auto listed = host_addresses_from_netlink()) return *listed;
    // The shipped unit allows no AF_NETLINK: the same list from SIOCGIFCONF and /proc.
    try {
        return host_addresses_without_netlink();
    } catch (const std::exception& e) {
        log::warning("cannot list the host's own addresses (", e.what(),
                     "): they are not protected from allow lists");
        return {};
    }
}

int connections_per_worker(const policy::Proxy& p) {
    return (p.max_connections + p.workers - 1) / p.workers;
}

StreamOptions stream_options(const policy::Proxy& p) {
    StreamOptions o;
    o.upstream_mode = p.upstream_mode;
    o.upstream = has_upstream_endpoint(p.upstream_mode) ? to_string(p.upstream) : "";
    o.send_original_destination = p.send_original_destination;
    o.header = p.header;
    o.proxy_protocol = p.proxy_protocol;
    o.allow = p.allow;
    o.allowed_cids = p.allowed_cids;
    o.allowed_sources = p.allowed_sources;
    // Only where a peer names the destination: there the allow list is checked per connection.
    if (p.upstream_mode != UpstreamMode::fixed) o.host_addresses = host_addresses();
    o.max_connections = connections_per_worker(p);
    o.connect_timeout = p.connect_timeout;
    o.idle_timeout = p.idle_timeout;
    o.header_timeout = p.header_timeout;
    o.tcp_nodelay = p.tcp_nodelay;
    o.keepalive = p.keepalive.enabled;
    o.keepalive_idle = p.keepalive.idle;
    o.keepalive_interval = p.keepalive.interval;
    o.keepalive_count = p.keepalive.count;
    o.splice = p.splice;
    o.busy_poll = p.busy_poll;
    // Like max_connections, the bound is the proxy's, split evenly across its workers.
    o.relay_threads = p.thread_relay ? (p.relay_threads + p.workers - 1) / p.workers : 0;
    o.log_connections = p.log_connections;
    o.statistics = p.statistics;
    return o;
}

DatagramOptions datagram_options(const policy::Proxy& p) {
    DatagramOptions o;
    o.upstream = to_string(p.upstream);
    o.allowed_sources = p.allowed_sources;
    o.max_flows = (p.max_flows + p.workers - 1) / p.workers;
    o.idle_timeout = p.idle_timeout;
    o.batch = p.batch;
    o.log_connections = p.log_connections;
    return o;
}

PacketOptions packet_options(const policy::Proxy& p) {
    PacketOptions o;
    o.upstream = to_string(p.upstream);
    o.log_connections = p.log_connections;
    o.accept_when_stream_down = p.accept_when_stream_down;
    o.filter_destinations = p.filter_destinations;
    o.filter_sources = p.filter_sources;
    o.filter_drop_reserved = p.filter_drop_reserved;
    o.filter_source_ports = p.filter_source_ports;
    o.route_mtu = p.route_mtu;
    o.route_mtu_auto = p.route_mtu_auto;
    return o;
}

TunnelOptions tunnel_options(const policy::Proxy& p) {
    TunnelOptions o;
    o.upstream = to_string(p.upstream);
    o.allowed_sources = p.allowed_sources;
    o.psk.assign(p.psk.begin(), p.psk.end());
    o.mtu = p.mtu;
    o.socket_buffer = p.socket_buffer;
    o.nodelay = p.kcp.nodelay;
    o.interval = p.kcp.interval;
    o.resend = p.kcp.resend;
    o.no_congestion_control = p.kcp.no_congestion_control;
    o.send_window = p.kcp.send_window;
    o.receive_window = p.kcp.receive_window;
    o.rekey_after = p.kcp.rekey_after;
    o.max_sessions = p.kcp.max_sessions;
    o.max_per_source = p.kcp.max_per_source;
    o.hellos_per_second = p.kcp.hellos_per_second;
    o.hello_burst = p.kcp.hello_burst;
    o.max_connections = connections_per_worker(p);
    o.connect_timeout = p.connect_timeout;
    o.idle_timeout = p.idle_timeout;
    o.log_connections = p.log_connections;
    o.statistics = p.statistics;
    return o;
}

void set_resolved_upstream(Handover& h, const Endpoint& upstream,
                           const std::vector<SockAddr>& set) {
    if (set.empty()) throw std::logic_error("an empty address set for " + to_string(upstream));
    std::vector<std::string> texts;
    for (const SockAddr& a : set) {
        Endpoint e;
        e.scheme = upstream.scheme;
        e.addr = a;
        e.port = upstream.port;
        texts.push_back(to_string(e));
    }
    const auto fill = [&](auto& o) {
        o.upstream = texts.front();
        o.upstream_host = upstream.host;
        o.upstream_addresses = texts;
    };
    if (auto* s = std::get_if<StreamOptions>(&h.options)) fill(*s);
    if (auto* d = std::get_if<DatagramOptions>(&h.options)) fill(*d);
    if (auto* t = std::get_if<TunnelOptions>(&h.options)) fill(*t);
}

Handover build_handover(const policy::Proxy& p, const Endpoint& listen, int index, int generation,
                        std::chrono::milliseconds drain_timeout) {
    const KindRow& row = kind_row(p.kind);
    Handover h;
    h.proxy = p.name;
    h.kind = p.kind;
    h.index = index;
    h.generation = generation;
    h.drain_timeout = drain_timeout;
    for (const FdRole role : row.fds) {
        switch (role) {
            case FdRole::stream_listener:
            case FdRole::datagram_socket:
                h.fds.push_back({role, to_string(listen)});
                break;
            case FdRole::raw_ipv4:
            case FdRole::raw_ipv6:
                h.fds.push_back({role, to_string(p.upstream)});
                break;
            case FdRole::nfqueue:
            case FdRole::nflog:
                h.fds.push_back({role, to_string(p.listen)});
                break;
        }
    }
    switch (row.family) {
        case KindFamily::stream:
            h.options = stream_options(p);
            break;
        case KindFamily::datagram:
            h.options = datagram_options(p);
            break;
        case KindFamily::packet:
            h.options = packet_options(p);
            break;
        case KindFamily::tunnel:
            h.options = tunnel_options(p);
            break;
    }
    return h;
}

}  // namespace pfp::supervisor
