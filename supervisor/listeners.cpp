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

namespace pfp::supervisor {

namespace {

constexpr uint32_t kVsockReservedPorts = 1024;  // the kernel's LAST_RESERVED_PORT + 1

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

SockAddr unix_address(const std::string& path) {
    SockAddr a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return a;
}

// A socket file left by an earlier run is replaced; a live one or any other file is an error.
void clear_stale_socket(const policy::Proxy& proxy, const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) < 0) {
        if (errno == ENOENT) return;
        fail(proxy, "stat " + path, errno);
    }
    if (!S_ISSOCK(st.st_mode)) fail(proxy, path + " exists and is not a socket", 0);
    unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    SockAddr a = unix_address(path);
    if (::connect(probe.get(), a.get(), a.len) == 0)
        fail(proxy, path + " is in use by another process", 0);
    if (::unlink(path.c_str()) < 0) fail(proxy, "remove stale socket " + path, errno);
}

}  // namespace

uint32_t unprivileged_port_start() {
    std::ifstream f("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    uint32_t v = 1024;
    if (!(f >> v)) v = 1024;
    return v;
}

bool needs_bind_service(const Endpoint& e) {
    if (e.scheme == Scheme::tcp || e.scheme == Scheme::udp)
        return e.port < unprivileged_port_start();
    if (e.scheme == Scheme::vsock) return e.port < kVsockReservedPorts;
    return false;
}

std::string listener_path(const Endpoint& e) {
    if (e.scheme == Scheme::fc_vsock) return e.path + "_" + std::to_string(e.port);
    if (e.scheme == Scheme::unix_stream && !e.path.empty() && e.path.front() == '/') return e.path;
    return "";
}

std::string describe_upstream(const policy::Proxy& p) {
    switch (p.upstream_mode) {
        case policy::UpstreamMode::fixed:
            return to_string(p.upstream);
        case policy::UpstreamMode::destination_header:
            return "destination-header";
        case policy::UpstreamMode::original_destination:
            return "original-destination";
    }
    return "?";
}

std::set<int> caps_to_open(const policy::Policy& p) {
    std::set<int> caps;
    for (const auto& proxy : p.proxies) {
        if (needs_bind_service(proxy.listen)) caps.insert(CAP_NET_BIND_SERVICE);
        if (is_unix_listener(proxy.listen) && !listener_path(proxy.listen).empty())
            caps.insert(CAP_CHOWN);  // only used when the owner differs from who we are
    }
    return caps;
}

std::set<int> caps_to_keep(const policy::Policy&) {
    return {};  // no worker kind of this version needs a capability at run time
}

void tune_listener(int fd, const policy::Proxy& proxy) {
    int domain = 0;
    socklen_t len = sizeof domain;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        (domain != AF_INET && domain != AF_INET6)) {
        return;
    }
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
                              const std::optional<Identity>& identity) {
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
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0) fail(proxy, "stat " + path, errno);
    if ((st.st_mode & 07777) != f.mode) {
        // chmod needs the owner (a file taken back from the FD store may already belong to the
        // policy's user): take it back first, with CAP_CHOWN.
        if (st.st_uid != ::geteuid()) {
            auto raised = privs.raise(CAP_CHOWN);
            if (::chown(path.c_str(), ::geteuid(), static_cast<gid_t>(-1)) < 0)
                fail(proxy, "chown " + path, errno, &privs);
            st.st_uid = ::geteuid();
        }
        if (::chmod(path.c_str(), f.mode) < 0) fail(proxy, "chmod " + path, errno);
    }
    // chown last (it needs CAP_CHOWN for another owner).
    if (st.st_uid != uid || st.st_gid != gid) {
        auto raised = privs.raise(CAP_CHOWN);
        if (::chown(path.c_str(), uid, gid) < 0) fail(proxy, "chown " + path, errno, &privs);
    }
}

unique_fd open_listener(const policy::Proxy& proxy, const Privileges& privs,
                        const std::optional<Identity>& identity) {
    const Endpoint& e = proxy.listen;
    SockAddr addr = e.addr;
    std::string path;
    if (e.scheme == Scheme::fc_vsock) {
        path = listener_path(e);
        if (path.size() >= sizeof(sockaddr_un::sun_path)) fail(proxy, "path too long: " + path, 0);
        addr = unix_address(path);
    } else if (e.scheme == Scheme::unix_stream) {
        path = listener_path(e);
    } else if (e.scheme != Scheme::tcp && e.scheme != Scheme::vsock) {
        fail(proxy, "unsupported listener scheme", EINVAL);
    }
    unique_fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) fail(proxy, "socket", errno);
    if (e.scheme == Scheme::tcp) {
        int one = 1;
        if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            fail(proxy, "setsockopt(SO_REUSEADDR)", errno);
    }
    tune_listener(fd.get(), proxy);
    if (!path.empty()) clear_stale_socket(proxy, path);
    {
        auto raised = privs.raise(needs_bind_service(e) ? CAP_NET_BIND_SERVICE : -1);
        // The file appears with no permissions at all; chmod below opens exactly what is asked.
        mode_t old = path.empty() ? 0 : ::umask(0777);
        int r = ::bind(fd.get(), addr.get(), addr.len);
        int err = errno;
        if (!path.empty()) ::umask(old);
        if (r < 0) fail(proxy, "bind", err, &privs);
    }
    if (!path.empty()) apply_socket_file_access(proxy, privs, identity);
    if (::listen(fd.get(), proxy.backlog) < 0) fail(proxy, "listen", errno);
    return fd;
}

}  // namespace pfp::supervisor
