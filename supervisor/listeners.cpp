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
#include <utility>

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
        case FdRole::nflog:
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
    if (type == SOCK_DGRAM) {
        // A forwarder is descheduled now and then: its socket must hold the datagrams that
        // arrive meanwhile (the kernel's default, ~200 KiB, holds ~90 of 1,400 bytes). The kernel
        // caps the request at net.core.rmem_max; the memory is used only while datagrams wait.
        // kcp-server's socket_buffer, where given, sets both buffers of the one UDP socket every
        // conversation shares.
        int size = proxy.socket_buffer > 0 ? proxy.socket_buffer : kDatagramReceiveBuffer;
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (proxy.socket_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        return;
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

bool socket_per_worker(const policy::Proxy& proxy) {
    return kind_row(proxy.kind).family == KindFamily::datagram && proxy.workers > 1;
}

std::vector<unique_fd> open_worker_sockets(const policy::Proxy& proxy, const Privileges& privs,
                                           const std::optional<Identity>& identity) {
    std::vector<unique_fd> out;
    if (!socket_per_worker(proxy)) return out;
    for (int i = 1; i < proxy.workers; ++i) out.push_back(open_listener(proxy, privs, identity));
    return out;
}

std::string worker_sockets_mismatch(const policy::Proxy& proxy, size_t group_size) {
    const size_t want = socket_per_worker(proxy) ? static_cast<size_t>(proxy.workers) - 1 : 0;
    if (group_size == want) return "";
    return "proxy \"" + proxy.name + "\": workers cannot change from " +
           std::to_string(group_size + 1) + " to " + std::to_string(proxy.workers) +
           " while it keeps its listener on " + to_string(proxy.listen) + ": each " +
           std::string(kind_name(proxy.kind)) +
           " worker reads its own SO_REUSEPORT socket, made when the listener is opened "
           "(restart pf-proxyd to change it)";
}

std::string queue_settings_mismatch(const policy::Proxy& old, const policy::Proxy& next) {
    const auto yes_no = [](bool b) { return std::string(b ? "true" : "false"); };
    const auto num = [](auto n) { return std::to_string(n); };
    const std::pair<const char*, std::pair<std::string, std::string>> keys[] = {
        {"fail_open", {yes_no(old.fail_open), yes_no(next.fail_open)}},
        {"queue_maxlen", {num(old.queue_maxlen), num(next.queue_maxlen)}},
        {"gso", {yes_no(old.gso), yes_no(next.gso)}},
        {"nflog_threshold", {num(old.nflog_threshold), num(next.nflog_threshold)}},
        {"nflog_timeout",
         {num(old.nflog_timeout.count()) + "ms", num(next.nflog_timeout.count()) + "ms"}},
        {"nflog_buffer", {num(old.nflog_buffer), num(next.nflog_buffer)}},
    };
    for (const auto& [key, values] : keys) {
        if (values.first == values.second) continue;
        return "proxy \"" + next.name + "\": " + key + " cannot change (from " + values.first +
               " to " + values.second + ") while it keeps its listener on " +
               to_string(next.listen) +
               ": the kernel takes it when pf-proxyd binds the queue, with CAP_NET_ADMIN, which "
               "it no longer holds (restart pf-proxyd to change it)";
    }
    return "";
}

unique_fd open_listener(const policy::Proxy& proxy, const Privileges& privs,
                        const std::optional<Identity>& identity) {
    SocketRequest req;
    // The kind's first fd is the one bound to `listen`: a stream listener or a datagram socket.
    req.role = kind_row(proxy.kind).fds.front();
    req.endpoint = proxy.listen;
    req.reuse_port = socket_per_worker(proxy);
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
