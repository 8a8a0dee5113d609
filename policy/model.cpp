#include "policy/model.hpp"

#include <tuple>

namespace pfp::policy {

namespace {

// Endpoints compare by their canonical text: the parsed sockaddr may differ in padding only.
std::string text(const Endpoint& e) {
    return to_string(e);
}

auto fields(const Proxy& p) {
    return std::tie(p.name, p.kind, p.listen_family, p.ipv6_only, p.upstream_mode,
                    p.send_original_destination, p.header, p.proxy_protocol, p.allow, p.allow_any,
                    p.allowed_cids, p.allowed_sources, p.unix_socket, p.log_connections,
                    p.statistics, p.workers, p.max_connections, p.backlog, p.connect_timeout,
                    p.header_timeout, p.idle_timeout, p.tcp_nodelay, p.keepalive, p.splice,
                    p.busy_poll, p.thread_relay, p.relay_threads, p.restart, p.max_flows, p.batch,
                    p.accept_when_stream_down, p.fail_open, p.gso, p.queue_maxlen,
                    p.nflog_threshold, p.nflog_timeout, p.nflog_buffer, p.filter_destinations,
                    p.filter_sources, p.filter_drop_reserved, p.filter_source_ports, p.route_mtu,
                    p.route_mtu_auto, p.psk_file, p.psk_env, p.psk, p.mtu, p.socket_buffer, p.kcp);
}

}  // namespace

bool same_configuration(const Proxy& a, const Proxy& b) {
    // A new field of Proxy must be added to fields() (or deliberately left out, like pointer);
    // this trips when the struct grows so that it cannot be forgotten.
    static_assert(sizeof(Proxy) == 1216, "compare the new Proxy field in same_configuration()");
    return fields(a) == fields(b) && text(a.listen) == text(b.listen) &&
           (!has_upstream_endpoint(a.upstream_mode) || text(a.upstream) == text(b.upstream));
}

}  // namespace pfp::policy
