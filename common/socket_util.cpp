#include "common/socket_util.hpp"

#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstring>

#include "common/error.hpp"

namespace pfp {

namespace {
int get_int(int fd, int opt, const char* name) {
    int v = 0;
    socklen_t len = sizeof v;
    if (::getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0)
        throw_errno(std::string("getsockopt(") + name + ") on fd " + std::to_string(fd));
    return v;
}
}  // namespace

SocketInfo inspect_socket(int fd) {
    SocketInfo i;
    i.domain = get_int(fd, SO_DOMAIN, "SO_DOMAIN");
    i.type = get_int(fd, SO_TYPE, "SO_TYPE");
    i.protocol = get_int(fd, SO_PROTOCOL, "SO_PROTOCOL");
    i.listening = get_int(fd, SO_ACCEPTCONN, "SO_ACCEPTCONN") != 0;
    return i;
}

std::string family_name(int family) {
    switch (family) {
        case AF_INET:
            return "AF_INET";
        case AF_INET6:
            return "AF_INET6";
        case AF_UNIX:
            return "AF_UNIX";
        case AF_VSOCK:
            return "AF_VSOCK";
        case AF_NETLINK:
            return "AF_NETLINK";
        case AF_PACKET:
            return "AF_PACKET";
    }
    return "family " + std::to_string(family);
}

void require_stream_listener(int fd, int family, const std::string& what) {
    SocketInfo i = inspect_socket(fd);
    if (i.domain != family)
        throw std::runtime_error(what + ": expected an " + family_name(family) + " socket, got " +
                                 family_name(i.domain));
    if (i.type != SOCK_STREAM)
        throw std::runtime_error(what + ": expected a stream socket, got type " +
                                 std::to_string(i.type));
    if (!i.listening) throw std::runtime_error(what + ": socket is not listening");
}

namespace {

std::string type_name(int type) {
    switch (type) {
        case SOCK_STREAM:
            return "SOCK_STREAM";
        case SOCK_DGRAM:
            return "SOCK_DGRAM";
        case SOCK_RAW:
            return "SOCK_RAW";
        case SOCK_SEQPACKET:
            return "SOCK_SEQPACKET";
    }
    return "type " + std::to_string(type);
}

}  // namespace

std::string socket_role_mismatch(int fd, FdRole role, const Endpoint& e) {
    SocketInfo i;
    try {
        i = inspect_socket(fd);
    } catch (const system_error& err) {
        return "not a socket (" + std::string(std::strerror(err.code())) + ")";
    }
    const std::string got = ", got " + family_name(i.domain) + " " + type_name(i.type) +
                            (i.listening ? " (listening)" : "");
    switch (role) {
        case FdRole::stream_listener:
            if (i.domain != e.family() || i.type != SOCK_STREAM || !i.listening)
                return "expected a listening " + family_name(e.family()) + " SOCK_STREAM socket" +
                       got;
            return "";
        case FdRole::datagram_socket:
            if (i.domain != e.family() || i.type != SOCK_DGRAM || i.listening)
                return "expected a bound " + family_name(e.family()) + " SOCK_DGRAM socket" + got;
            return "";
        case FdRole::raw_ipv4:
        case FdRole::raw_ipv6: {
            const int want = role == FdRole::raw_ipv4 ? AF_INET : AF_INET6;
            if (i.domain != want || i.type != SOCK_RAW || i.protocol != IPPROTO_RAW)
                return "expected an " + family_name(want) + " SOCK_RAW IPPROTO_RAW socket" + got +
                       " protocol " + std::to_string(i.protocol);
            return "";
        }
        case FdRole::nfqueue:
        case FdRole::nflog:
            if (i.domain != AF_NETLINK || i.type != SOCK_RAW || i.protocol != NETLINK_NETFILTER)
                return "expected an AF_NETLINK SOCK_RAW NETLINK_NETFILTER socket" + got +
                       " protocol " + std::to_string(i.protocol);
            return "";
    }
    return "unknown role";
}

long raise_fd_limit() {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) < 0) throw_errno("getrlimit(RLIMIT_NOFILE)");
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &r) < 0) throw_errno("setrlimit(RLIMIT_NOFILE)");
    }
    return static_cast<long>(r.rlim_cur);
}

}  // namespace pfp
