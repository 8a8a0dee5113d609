#include "supervisor/socket_factory.hpp"

#include <libmnl/libmnl.h>
#include <linux/capability.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "supervisor/socket_file.hpp"

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

namespace pfp::supervisor {

namespace {

std::string message(const std::string& call, int err, const std::string& detail) {
    std::string m = call;
    if (err != 0) m += std::string(": ") + std::strerror(err);
    if (!detail.empty()) m += (m.empty() ? "" : ": ") + detail;
    return m;
}

SockAddr unix_address(const std::string& path) {
    SockAddr a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return a;
}

// A socket file nothing listens on is what an earlier run left behind.
void clear_stale_socket(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) < 0) {
        if (errno == ENOENT) return;
        throw socket_error(SocketStep::stale_file, "stat " + path, errno, "stat");
    }
    if (!S_ISSOCK(st.st_mode)) throw socket_error(SocketStep::stale_file, "", 0, "not a socket");
    unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    SockAddr a = unix_address(path);
    if (probe && ::connect(probe.get(), a.get(), a.len) == 0)
        throw socket_error(SocketStep::stale_file, "", 0, "in use");
    if (::unlink(path.c_str()) < 0)
        throw socket_error(SocketStep::stale_file, "remove stale socket " + path, errno, "remove");
}

// Raises `cap` (if any) around `call`; errno of the call survives the guard's own syscalls.
template <class F>
int with_cap(const Privileges* privs, int cap, F call) {
    int err = 0;
    if (privs && cap >= 0) {
        auto raised = privs->raise(cap);
        if (call() < 0) err = errno;
    } else if (call() < 0) {
        err = errno;
    }
    return err;
}

unique_fd stream_listener(const SocketRequest& req, const Privileges* privs) {
    const Endpoint& e = req.endpoint;
    SockAddr addr = e.addr;
    const std::string path = socket_path(e);
    if (e.scheme == Scheme::fc_vsock) {
        if (path.size() >= sizeof(sockaddr_un::sun_path))
            throw socket_error(SocketStep::socket, "path too long: " + path, 0);
        addr = unix_address(path);
    } else if (e.scheme != Scheme::tcp && e.scheme != Scheme::vsock &&
               e.scheme != Scheme::unix_stream) {
        throw socket_error(SocketStep::socket, "unsupported listener scheme", EINVAL);
    }
    unique_fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) throw socket_error(SocketStep::socket, "socket", errno);
    if (e.scheme == Scheme::tcp) {
        int one = 1;
        if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            throw socket_error(SocketStep::option, "setsockopt(SO_REUSEADDR)", errno);
    }
    if (req.tune) req.tune(fd.get());
    if (!path.empty()) {
        if (std::string why = unsafe_socket_directory(path); !why.empty())
            throw socket_error(SocketStep::stale_file, why, 0, "directory");
        clear_stale_socket(path);
    }
    const int cap = needs_bind_service(e) ? CAP_NET_BIND_SERVICE : -1;
    // A socket file appears with its final mode (or none at all), never wider.
    const mode_t old = path.empty() ? 0 : ::umask(~req.file_mode & 0777);
    const int err = with_cap(privs, cap, [&] { return ::bind(fd.get(), addr.get(), addr.len); });
    if (!path.empty()) ::umask(old);
    if (err != 0) throw socket_error(SocketStep::bind, "bind", err);
    if (!path.empty() && req.file_access) {
        try {
            req.file_access(path);
        } catch (const std::exception& ex) {
            ::unlink(path.c_str());  // no socket file nobody listens on
            throw socket_error(SocketStep::file_access, "", 0, ex.what());
        }
    }
    if (::listen(fd.get(), req.backlog) < 0) {
        const int listen_err = errno;
        if (!path.empty()) ::unlink(path.c_str());
        throw socket_error(SocketStep::listen, "listen", listen_err);
    }
    return fd;
}

unique_fd datagram_socket(const SocketRequest& req, const Privileges* privs) {
    const Endpoint& e = req.endpoint;
    if (e.scheme != Scheme::udp)
        throw socket_error(SocketStep::socket, "a datagram socket needs a udp: endpoint", EINVAL);
    unique_fd fd(::socket(e.addr.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) throw socket_error(SocketStep::socket, "socket", errno);
    if (req.tune) req.tune(fd.get());
    if (req.reuse_port) {
        int one = 1;
        if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
            throw socket_error(SocketStep::option, "setsockopt(SO_REUSEPORT)", errno);
    }
    const int cap = needs_bind_service(e) ? CAP_NET_BIND_SERVICE : -1;
    if (int err = with_cap(privs, cap, [&] { return ::bind(fd.get(), e.addr.get(), e.addr.len); }))
        throw socket_error(SocketStep::bind, "bind", err);
    return fd;
}

// One raw socket per address family (its role says which). IPPROTO_RAW implies IP_HDRINCL: the
// packet carries its own header, and the kernel only routes it (or sends it out the device).
unique_fd raw_injector(const SocketRequest& req, const Privileges* privs, int family) {
    const Endpoint& e = req.endpoint;
    if (e.scheme != Scheme::raw)
        throw socket_error(SocketStep::socket, "a raw injector needs a raw: endpoint", EINVAL);
    int raw = -1;
    int err = with_cap(privs, CAP_NET_RAW, [&] {
        raw = ::socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
        return raw;
    });
    unique_fd fd(raw);
    if (err != 0) throw socket_error(SocketStep::socket, "socket(SOCK_RAW)", err);
    int one = 1;
    const bool v4 = family == AF_INET;
    if (v4 && ::setsockopt(fd.get(), IPPROTO_IP, IP_HDRINCL, &one, sizeof one) < 0)
        throw socket_error(SocketStep::option, "setsockopt(IP_HDRINCL)", errno);
    // A packet refused for size leaves a report of its route's MTU on the error queue, which the
    // injector reads: it names the MTU when it logs the refusal, and learns it under
    // "route_mtu": "auto" (the raw socket receives nothing else: IPPROTO_RAW gets no ICMP).
    if (::setsockopt(fd.get(), v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_RECVERR : IPV6_RECVERR, &one,
                     sizeof one) < 0)
        throw socket_error(SocketStep::option,
                           v4 ? "setsockopt(IP_RECVERR)" : "setsockopt(IPV6_RECVERR)", errno);
    if (!e.raw_route) {
        const std::string& dev = e.name;
        err = with_cap(privs, CAP_NET_RAW, [&] {
            return ::setsockopt(fd.get(), SOL_SOCKET, SO_BINDTODEVICE, dev.c_str(),
                                static_cast<socklen_t>(dev.size()));
        });
        if (err != 0)
            throw socket_error(SocketStep::option, "setsockopt(SO_BINDTODEVICE " + dev + ")", err);
    }
    return fd;
}

// A netlink reader's receive buffer: room for a burst of copied packets while its worker is busy
// writing the stream (the default, about 200 KiB, holds only a few 64 KiB packets; an overflow
// loses packets, counted by the worker as an overrun). Above rmem_max only with CAP_NET_ADMIN;
// without it the kernel's default stays, which works, only with more overruns.
void grow_receive_buffer(int fd, const Privileges* privs) {
    const int size = 8 << 20;
    with_cap(privs, CAP_NET_ADMIN,
             [&] { return ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size); });
}

// Sends one nfnetlink config message (queue or log) and waits for the kernel's ACK (or error).
int queue_config(int fd, const nlmsghdr* nlh) {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd, nlh, nlh->nlmsg_len, 0, reinterpret_cast<const sockaddr*>(&kernel),
                 sizeof kernel) < 0)
        return errno;
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    for (;;) {
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n < 0) return errno == EINTR ? 0 : errno;
        const int r =
            mnl_cb_run(buf.data(), static_cast<size_t>(n), nlh->nlmsg_seq, 0, nullptr, nullptr);
        if (r == MNL_CB_ERROR) return errno;
        if (r == MNL_CB_STOP || r == MNL_CB_OK) return 0;
    }
}

// A NETLINK_NETFILTER socket, bound, opened with CAP_NET_ADMIN in effect (the kernel checks the
// opener's credentials as well as the sender's), blocking with a receive timeout while the
// supervisor configures it: the kernel answers at once; never hang start-up on it.
unique_fd netfilter_socket(const Privileges* privs) {
    int nl = -1;
    const int nl_err = with_cap(privs, CAP_NET_ADMIN, [&] {
        nl = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
        return nl;
    });
    unique_fd fd(nl);
    if (!fd) throw socket_error(SocketStep::socket, "socket(NETLINK_NETFILTER)", nl_err);
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) < 0)
        throw socket_error(SocketStep::bind, "bind", errno);
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

unique_fd nfqueue_reader(const SocketRequest& req, const Privileges* privs) {
    const Endpoint& e = req.endpoint;
    if (e.scheme != Scheme::nfqueue)
        throw socket_error(SocketStep::socket, "an nfqueue reader needs an nfqueue: endpoint",
                           EINVAL);
    // Blocking while it is configured here (the ACK is waited for); the worker sets O_NONBLOCK.
    // Created with CAP_NET_ADMIN in effect: the kernel checks a verdict against the credentials
    // the socket was opened with as well as against the sender's (netlink_net_capable), so a
    // queue socket opened without it can never give a verdict, whoever holds it.
    unique_fd fd = netfilter_socket(privs);
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    uint32_t seq = 1;
    auto send = [&](const char* call, auto fill) {
        nlmsghdr* nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, e.queue);
        nlh->nlmsg_flags |= NLM_F_ACK;
        nlh->nlmsg_seq = seq++;
        fill(nlh);
        if (int err = with_cap(privs, CAP_NET_ADMIN, [&] {
                const int r = queue_config(fd.get(), nlh);
                errno = r;
                return r == 0 ? 0 : -1;
            }))
            throw socket_error(SocketStep::queue,
                               std::string(call) + " queue " + std::to_string(e.queue), err,
                               err == EPERM ? "another process reads this queue, or "
                                              "CAP_NET_ADMIN is missing"
                                            : "");
    };
    send("bind", [](nlmsghdr* nlh) { nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND); });
    send("copy mode of",
         [](nlmsghdr* nlh) { nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff); });
    if (req.queue_maxlen != 0) {
        const uint32_t maxlen = req.queue_maxlen;
        send("maxlen of", [maxlen](nlmsghdr* nlh) { nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen); });
    }
    // GSO: the kernel queues a GSO packet as one (up to 64 KiB) instead of segmenting it first,
    // and leaves offloaded checksums unfinished (the reader fills them in).
    const uint32_t flags =
        (req.fail_open ? NFQA_CFG_F_FAIL_OPEN : 0u) | (req.gso ? NFQA_CFG_F_GSO : 0u);
    if (flags != 0) {
        send(req.gso ? "GSO flag of" : "fail-open flag of", [flags](nlmsghdr* nlh) {
            mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
            mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(flags));
        });
    }
    const timeval no_timeout{0, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &no_timeout, sizeof no_timeout);
    grow_receive_buffer(fd.get(), privs);
    return fd;
}

// Bound to one nflog group, packets copied whole (iptables `-j NFLOG --nflog-group N`). Opened and
// configured with CAP_NET_ADMIN in effect, like the nfqueue reader; the worker that receives it
// keeps none, so the kernel refuses (EPERM) any nfnetlink message it sends on it: rebinding,
// unbinding or changing the copy mode is the supervisor's alone.
unique_fd nflog_reader(const SocketRequest& req, const Privileges* privs) {
    const Endpoint& e = req.endpoint;
    if (e.scheme != Scheme::nflog)
        throw socket_error(SocketStep::socket, "an nflog reader needs an nflog: endpoint", EINVAL);
    unique_fd fd = netfilter_socket(privs);
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    uint32_t seq = 1;
    auto send = [&](const char* call, auto fill) {
        nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
        nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
        nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
        nlh->nlmsg_seq = seq++;
        auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
        nfg->nfgen_family = AF_UNSPEC;
        nfg->version = NFNETLINK_V0;
        nfg->res_id = htons(e.queue);
        fill(nlh);
        if (int err = with_cap(privs, CAP_NET_ADMIN, [&] {
                const int r = queue_config(fd.get(), nlh);
                errno = r;
                return r == 0 ? 0 : -1;
            }))
            throw socket_error(SocketStep::queue,
                               std::string(call) + " nflog group " + std::to_string(e.queue), err,
                               err == EBUSY   ? "another process reads this group"
                               : err == EPERM ? "CAP_NET_ADMIN is missing"
                                              : "");
    };
    send("bind", [](nlmsghdr* nlh) {
        const nfulnl_msg_config_cmd cmd{NFULNL_CFG_CMD_BIND};
        mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof cmd, &cmd);
    });
    send("copy mode of", [](nlmsghdr* nlh) {
        nfulnl_msg_config_mode mode{};
        mode.copy_range = htonl(0xffff);
        mode.copy_mode = NFULNL_COPY_PACKET;
        mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof mode, &mode);
    });
    // By default each packet as it is logged: the kernel's own default holds up to 100 packets for
    // up to a second before it sends them (measured: a UDP request and reply took seconds).
    send("queue threshold and timeout of", [&req](nlmsghdr* nlh) {
        mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(req.nflog_threshold));
        mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(req.nflog_timeout_cs));
    });
    if (req.nflog_buffer != 0) {
        send("buffer size of", [&req](nlmsghdr* nlh) {
            mnl_attr_put_u32(nlh, NFULA_CFG_NLBUFSIZ, htonl(req.nflog_buffer));
        });
    }
    const timeval no_timeout{0, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &no_timeout, sizeof no_timeout);
    grow_receive_buffer(fd.get(), privs);
    return fd;
}

}  // namespace

socket_error::socket_error(SocketStep s, std::string c, int e, std::string d)
    : std::runtime_error(message(c, e, d)),
      step(s),
      call(std::move(c)),
      err(e),
      detail(std::move(d)) {}

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

std::string socket_path(const Endpoint& e) {
    if (e.scheme == Scheme::fc_vsock) return e.path + "_" + std::to_string(e.port);
    if (e.scheme == Scheme::unix_stream && !e.path.empty() && e.path.front() == '/') return e.path;
    return "";
}

std::set<int> capabilities_to_open(FdRole role, const Endpoint& e) {
    switch (role) {
        case FdRole::stream_listener:
        case FdRole::datagram_socket:
            if (needs_bind_service(e)) return {CAP_NET_BIND_SERVICE};
            return {};
        case FdRole::raw_ipv4:
        case FdRole::raw_ipv6:
            return {CAP_NET_RAW};
        case FdRole::nfqueue:
        case FdRole::nflog:
            return {CAP_NET_ADMIN};
    }
    return {};
}

unique_fd open_socket(const SocketRequest& req, const Privileges* privs) {
    switch (req.role) {
        case FdRole::stream_listener:
            return stream_listener(req, privs);
        case FdRole::datagram_socket:
            return datagram_socket(req, privs);
        case FdRole::raw_ipv4:
            return raw_injector(req, privs, AF_INET);
        case FdRole::raw_ipv6:
            return raw_injector(req, privs, AF_INET6);
        case FdRole::nfqueue:
            return nfqueue_reader(req, privs);
        case FdRole::nflog:
            return nflog_reader(req, privs);
    }
    throw socket_error(SocketStep::socket, "unknown socket role", EINVAL);
}

}  // namespace pfp::supervisor
