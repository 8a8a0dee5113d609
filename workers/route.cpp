#include "workers/route.hpp"

#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pfp::worker {

namespace {

bool ip_family(int f) {
    return f == AF_INET || f == AF_INET6;
}

}  // namespace

std::vector<SockAddr> upstream_address_set(const std::string& host,
                                           const std::vector<std::string>& texts,
                                           const Endpoint& first) {
    if (host.empty()) {
        if (!texts.empty()) throw std::runtime_error("upstream addresses without a host name");
        return {};
    }
    if (texts.empty()) throw std::runtime_error("host-name upstream " + host + " has no address");
    std::vector<SockAddr> out;
    for (const std::string& t : texts) {
        const Endpoint e = parse_endpoint(t);
        if (e.scheme != first.scheme || e.port != first.port || !ip_family(e.family()))
            throw std::runtime_error("upstream address " + t + " does not match " +
                                     to_string(first));
        out.push_back(e.addr);
    }
    if (format_sockaddr(out.front()) != format_sockaddr(first.addr))
        throw std::runtime_error("upstream " + to_string(first) + " is not the first address");
    return out;
}

Route Route::build(WorkerKind kind, const std::string& listen, const StreamOptions& c) {
    Route r;
    r.kind = kind;
    r.listen = parse_endpoint(listen);
    switch (c.upstream_mode) {
        case UpstreamMode::destination_header:
            r.target = Target::destination_header;
            break;
        case UpstreamMode::fixed:
            r.upstream = parse_endpoint(c.upstream);
            r.target = r.upstream.original_port ? Target::original_port : Target::fixed;
            r.upstream_host = c.upstream_host;
            r.upstream_addresses =
                upstream_address_set(c.upstream_host, c.upstream_addresses, r.upstream);
            break;
        case UpstreamMode::original_destination:
            r.target = Target::original_destination;
            break;
        case UpstreamMode::base_address:
            r.upstream = parse_endpoint(c.upstream);
            if (r.upstream.scheme != Scheme::tcp)
                throw std::runtime_error("a base-address upstream must be tcp:, not " + c.upstream);
            r.target = Target::base_address;
            break;
    }
    r.send_original_destination = c.send_original_destination;
    r.header = c.header;
    r.proxy_protocol = c.proxy_protocol;
    if (!c.allow.empty())
        r.allow = AllowList::parse(c.allow);
    else if (r.client_chooses_destination())
        r.allow = AllowList();  // deny by default: the policy writes "any" to mean any
    if (r.allow) {
        std::vector<IpAddress> host;
        for (const auto& text : c.host_addresses) {
            const Endpoint e = parse_endpoint(
                "tcp:" + (text.find(':') != std::string::npos ? "[" + text + "]:1" : text + ":1"));
            if (auto ip = IpAddress::from_sockaddr(e.addr.get(), e.addr.len)) host.push_back(*ip);
        }
        r.allow->protect_host_addresses(std::move(host));
    }
    if (!c.allowed_cids.empty()) r.allowed_cids = CidSet(c.allowed_cids);
    if (!c.allowed_sources.empty()) r.allowed_sources = CidrSet::parse(c.allowed_sources);
    r.log_connections = c.log_connections;
    r.statistics = c.statistics;
    r.tcp_nodelay = c.tcp_nodelay;
    r.keepalive = c.keepalive;
    r.keepalive_idle_s = static_cast<int>(std::max<long>(1, c.keepalive_idle.count() / 1000));
    r.keepalive_interval_s =
        static_cast<int>(std::max<long>(1, c.keepalive_interval.count() / 1000));
    r.keepalive_count = c.keepalive_count;
    return r;
}

std::optional<std::string> Route::admit(const SockAddr& peer) const {
    if (allowed_cids && !allowed_cids->contains(peer))
        return "peer " + format_sockaddr(peer) + " is not in allowed_cids";
    if (allowed_sources && !allowed_sources->contains(peer))
        return "client " + format_sockaddr(peer) + " is not in allowed_sources";
    return std::nullopt;
}

void Route::tune(int fd, int family) const {
    if (!ip_family(family) || !tcp_nodelay) return;
    // Failures here only cost tuning, never the connection.
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool Route::wants_keepalive(int family) const {
    return keepalive && ip_family(family);
}

void Route::arm_keepalive(int fd) const {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_idle_s, sizeof keepalive_idle_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &keepalive_interval_s,
                 sizeof keepalive_interval_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &keepalive_count, sizeof keepalive_count);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);  // arms the timer: last
}

std::chrono::milliseconds Route::keepalive_delay() const {
    // A tenth of the idle time, at most a second: the first probe comes at most 10 % late.
    return std::min<std::chrono::milliseconds>(
        std::chrono::seconds(1), std::chrono::milliseconds(keepalive_idle_s * 1000L / 10));
}

int start_connect(const Route& route, const Endpoint& dest, unique_fd& out) {
    const SockAddr& a = dest.addr;
    unique_fd s(::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) return errno;
    route.tune(s.get(), a.family());
    if (::connect(s.get(), a.get(), a.len) < 0 && errno != EINPROGRESS) return errno;
    out = std::move(s);
    return 0;
}

std::string fc_vsock_connect_line(uint32_t port) {
    return "CONNECT " + std::to_string(port) + "\n";
}

FcReply parse_fc_vsock_reply(std::string_view peeked, size_t& line_len) {
    constexpr size_t kMaxLine = 32;  // "OK " + a u32 + "\n" fits easily
    const size_t nl = peeked.find('\n');
    if (nl == std::string_view::npos)
        return peeked.size() >= kMaxLine ? FcReply::bad : FcReply::need_more;
    std::string_view line = peeked.substr(0, nl);
    if (line.size() < 4 || line.substr(0, 3) != "OK ") return FcReply::bad;
    for (char ch : line.substr(3))
        if (ch < '0' || ch > '9') return FcReply::bad;
    line_len = nl + 1;
    return FcReply::ok;
}

}  // namespace pfp::worker
