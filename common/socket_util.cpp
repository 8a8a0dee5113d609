#include "common/socket_util.hpp"

#include <sys/resource.h>
#include <sys/socket.h>

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
