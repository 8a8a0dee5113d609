#include "supervisor/handover_builder.hpp"

#include <stdexcept>

namespace pfp::supervisor {

StreamOptions stream_options(const policy::Proxy& p) {
    StreamOptions o;
    o.upstream_mode = p.upstream_mode;
    o.upstream = p.upstream_mode == UpstreamMode::fixed ? to_string(p.upstream) : "";
    o.send_original_destination = p.send_original_destination;
    o.header = p.header;
    o.proxy_protocol = p.proxy_protocol;
    o.allow = p.allow;
    o.allowed_cids = p.allowed_cids;
    o.allowed_sources = p.allowed_sources;
    o.max_connections = (p.max_connections + p.workers - 1) / p.workers;
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
                h.fds.push_back({role, to_string(listen)});
                break;
            case FdRole::datagram_socket:
            case FdRole::raw_ipv4:
            case FdRole::raw_ipv6:
            case FdRole::nfqueue:
                throw std::logic_error("kind " + std::string(row.name) + ": no socket for role " +
                                       std::string(role_name(role)));
        }
    }
    switch (row.family) {
        case KindFamily::stream:
            h.options = stream_options(p);
            break;
        case KindFamily::datagram:
        case KindFamily::packet:
        case KindFamily::tunnel:
            throw std::logic_error("kind " + std::string(row.name) + ": no options for its family");
    }
    return h;
}

}  // namespace pfp::supervisor
