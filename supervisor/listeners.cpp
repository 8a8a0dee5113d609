#include "supervisor/listeners.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "supervisor/socket_file.hpp"

namespace pfp::supervisor {

namespace {

bool is_unix_listener(const Endpoint& e) {
    return e.scheme == Scheme::unix_stream || e.scheme == Scheme::fc_vsock;
}

[[noreturn]] void fail(const policy::Proxy& proxy, const std::string& what, int err,
                       const Privileges* privs = nullptr) {
    std::string msg =
        "proxy \"" + proxy.name + "\": cannot listen on " + to_string(proxy.listen) + ": " + what;
    if (err != 0) msg += std::string(": ") + std::strerror(err);
    if (err == EACCES && needs_bind_service(proxy.listen))
        msg += " (a port below " +
               std::to_string(proxy.listen.scheme == Scheme::vsock ? kVsockReservedPorts
                                                                   : unprivileged_port_start()) +
               " needs CAP_NET_BIND_SERVICE" +
               (!privs || privs->have(CAP_NET_BIND_SERVICE)
                    ? ""
                    : ", which pf-proxyd does not hold: it keeps only what the policy it "
                      "started with needed") +
               ")";
    if (err == EPERM && what.starts_with("chown") && privs && !privs->have(CAP_CHOWN))
        msg += " (giving the file to another owner needs CAP_CHOWN, which pf-proxyd does not hold)";
    throw std::runtime_error(msg);
}

}  // namespace

std::string listener_path(const Endpoint& e) {
    return socket_path(e);
}

std::string describe_upstream(const policy::Proxy& p) {
    if (p.upstream_mode == UpstreamMode::fixed) return to_string(p.upstream);
    if (p.upstream_mode == UpstreamMode::base_address)
        return std::string(upstream_mode_name(p.upstream_mode)) + " " + to_string(p.upstream);
    return std::string(upstream_mode_name(p.upstream_mode));
}

const Endpoint& fd_endpoint(const policy::Proxy& proxy, FdRole role) {
    switch (role) {
        case FdRole::raw_ipv4:
        case FdRole::raw_ipv6:
            return proxy.upstream;
        case FdRole::stream_listener:
        case FdRole::datagram_socket:
        case FdRole::nfqueue:
            break;
    }
    return proxy.listen;
}

std::vector<unique_fd> open_other_fds(const policy::Proxy& proxy, const Privileges& privs) {
    std::vector<unique_fd> out;
    const auto roles = kind_row(proxy.kind).fds;
    for (const FdRole role : roles.subspan(1)) {  // the first is the listener (or queue)
        SocketRequest req;
        req.role = role;
        req.endpoint = fd_endpoint(proxy, role);
        try {
            out.push_back(open_socket(req, &privs));
        } catch (const socket_error& e) {
            std::string msg = "proxy \"" + proxy.name + "\": cannot open its " +
                              std::string(role_name(role)) + " on " + to_string(req.endpoint) +
                              ": " + e.call;
            if (e.err != 0) msg += std::string(": ") + std::strerror(e.err);
            if (e.err == EPERM && !privs.have(CAP_NET_RAW))
                msg += " (a raw socket needs CAP_NET_RAW, which pf-proxyd does not hold)";
            throw std::runtime_error(msg);
        }
    }
    return out;
}

std::set<int> caps_to_open(const policy::Policy& p) {
    std::set<int> caps;
    for (const auto& proxy : p.proxies) {
        for (const FdRole role : kind_row(proxy.kind).fds)
            caps.merge(capabilities_to_open(role, fd_endpoint(proxy, role)));
        if (is_unix_listener(proxy.listen) && !listener_path(proxy.listen).empty())
            caps.insert(CAP_CHOWN);  // only used when the owner differs from who we are
    }
    return caps;
}

std::set<int> caps_to_keep(const policy::Policy& p) {
    std::set<int> caps;  // handed on to the workers whose kind names them, at their exec
    for (const auto& proxy : p.proxies) {
        for (const int cap : kind_row(proxy.kind).capabilities) caps.insert(cap);
        // And kept for the supervisor itself: a reload that moves a stream-to-raw proxy to
        // another device opens its raw injectors anew (no worker is ever given this one).
        for (const FdRole role : kind_row(proxy.kind).fds)
            if (role == FdRole::raw_ipv4 || role == FdRole::raw_ipv6)
                caps.merge(capabilities_to_open(role, fd_endpoint(proxy, role)));
    }
    return caps;
}

void tune_listener(int fd, const policy::Proxy& proxy) {
    int domain = 0;
    socklen_t len = sizeof domain;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        (domain != AF_INET && domain != AF_INET6)) {
        return;
    }
    if (proxy.ipv6_only && domain == AF_INET6) {
        int on = 1;
        // Before bind: an IPv6 wildcard then takes IPv6 only, leaving IPv4 to another socket.
        if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0)
            throw std::system_error(errno, std::generic_category(), "setsockopt(IPV6_V6ONLY)");
    }
    int type = 0;
    len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return;
    if (type == SOCK_DGRAM && proxy.socket_buffer > 0) {
        // kcp-server's socket_buffer: the one UDP socket every conversation shares.
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &proxy.socket_buffer, sizeof proxy.socket_buffer);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &proxy.socket_buffer, sizeof proxy.socket_buffer);
    }
    if (type != SOCK_STREAM) return;
    // Accepted sockets inherit these from the listener, which saves the worker five setsockopt
    // calls per client.
    int one = 1;
    if (proxy.tcp_nodelay) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (proxy.keepalive.enabled) {
        int idle = static_cast<int>(std::max<long>(1, proxy.keepalive.idle.count() / 1000));
        int intvl = static_cast<int>(std::max<long>(1, proxy.keepalive.interval.count() / 1000));
        int cnt = proxy.keepalive.count;
        ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
}

void set_nonblocking(int fd) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void apply_socket_file_access(const policy::Proxy& proxy, const Privileges& privs,
                              const std::optional<Identity>& identity, bool ours_only) {
    const std::string path = listener_path(proxy.listen);
    if (path.empty()) return;
    const auto& f = proxy.unix_socket;
    uid_t uid = identity ? identity->uid : ::geteuid();
    gid_t gid = identity ? identity->gid : ::getegid();
    if (f.owner) {
        Identity owner = resolve_identity(*f.owner, std::nullopt);
        uid = owner.uid;
        gid = owner.gid;
    }
    if (f.group) gid = resolve_group(*f.group);
    try {
        secure_socket_file(path, f.mode, uid, gid, &privs, ours_only);
    } catch (const std::exception& e) {
        std::string what = e.what();
        if (what.starts_with("chown") && what.ends_with(std::strerror(EPERM)) &&
            !privs.have(CAP_CHOWN))
            what +=
                " (giving the file to another owner needs CAP_CHOWN, which pf-proxyd does not "
                "hold)";
        fail(proxy, what, 0, &privs);
    }
}

unique_fd open_listener(const policy::Proxy& proxy, const Privileges& privs,
                        const std::optional<Identity>& identity) {
    SocketRequest req;
    // The kind's first fd is the one bound to `listen`: a stream listener or a datagram socket.
    req.role = kind_row(proxy.kind).fds.front();
    req.endpoint = proxy.listen;
    req.backlog = proxy.backlog;
    req.tune = [&proxy](int fd) { tune_listener(fd, proxy); };
    req.file_mode = proxy.unix_socket.mode;
    req.file_access = [&](const std::string&) {
        apply_socket_file_access(proxy, privs, identity, true);
    };
    try {
        return open_socket(req, &privs);
    } catch (const socket_error& e) {
        const std::string path = listener_path(proxy.listen);
        switch (e.step) {
            case SocketStep::stale_file:
                if (e.detail == "not a socket")
                    fail(proxy, path + " exists and is not a socket", 0);
                if (e.detail == "in use") fail(proxy, path + " is in use by another process", 0);
                if (e.detail == "directory") fail(proxy, e.call, 0);
                fail(proxy, e.call, e.err);
            case SocketStep::file_access:
                throw std::runtime_error(e.detail);  // already worded by fail()
            default:
                fail(proxy, e.call, e.err, &privs);
        }
    }
}

}  // namespace pfp::supervisor
