#include "supervisor/handover_builder.hpp"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/allow_list.hpp"
#include "common/log.hpp"

namespace pfp::supervisor {

std::vector<std::string> host_addresses() {
    std::vector<std::string> out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) {
        // getifaddrs needs an AF_NETLINK socket; a unit that forbids it gets loopback and the
        // other fixed ranges protected, not the host's own addresses.
        log::warning("cannot list the host's own addresses (", std::strerror(errno),
                     "): they are not protected from allow lists; allow AF_NETLINK to fix this");
        return out;
    }
    for (const ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        const int family = i->ifa_addr->sa_family;
        if (family != AF_INET && family != AF_INET6) continue;
        const socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        const auto ip = IpAddress::from_sockaddr(i->ifa_addr, len);
        if (!ip) continue;
        const std::string text = ip->to_string();
        if (std::find(out.begin(), out.end(), text) == out.end()) out.push_back(text);
    }
    ::freeifaddrs(list);
    return out;
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
    o.tcp_nodelay = p.tcp_nodelay;
    o.keepalive = p.keepalive.enabled;
    o.keepalive_idle = p.keepalive.idle;
    o.keepalive_interval = p.keepalive.interval;
    o.keepalive_count = p.keepalive.count;
    o.splice = p.splice;
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
    return o;
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
            throw std::logic_error("kind " + std::string(row.name) + ": no options for its family");
    }
    return h;
}

}  // namespace pfp::supervisor
