#include "supervisor/listeners.hpp"

#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace pfp::supervisor {

namespace {

uint32_t unprivileged_port_start() {
    std::ifstream f("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    uint32_t v = 1024;
    if (!(f >> v)) v = 1024;
    return v;
}

bool needs_bind_service(const Endpoint& e, uint32_t start) {
    return (e.scheme == Scheme::tcp || e.scheme == Scheme::udp) && e.port < start;
}

}  // namespace

std::set<int> caps_to_open(const policy::Policy& p) {
    std::set<int> caps;
    uint32_t start = unprivileged_port_start();
    for (const auto& proxy : p.proxies)
        if (needs_bind_service(proxy.listen, start)) caps.insert(CAP_NET_BIND_SERVICE);
    return caps;
}

std::set<int> caps_to_keep(const policy::Policy&) {
    return {};  // no worker kind of this version needs a capability at run time
}

unique_fd open_listener(const policy::Proxy& proxy, const Privileges& privs) {
    const Endpoint& e = proxy.listen;
    auto fail = [&](const std::string& call, int err) {
        std::string msg = "proxy \"" + proxy.name + "\": cannot listen on " + to_string(e) + ": " +
                          call + ": " + std::strerror(err);
        if (err == EACCES && needs_bind_service(e, unprivileged_port_start()))
            msg += " (a port below " + std::to_string(unprivileged_port_start()) +
                   " needs CAP_NET_BIND_SERVICE)";
        throw std::runtime_error(msg);
    };
    if (e.scheme != Scheme::tcp) fail("unsupported listener scheme", EINVAL);
    unique_fd fd(::socket(e.addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) fail("socket", errno);
    int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        fail("setsockopt(SO_REUSEADDR)", errno);
    {
        auto raised = needs_bind_service(e, unprivileged_port_start())
                          ? privs.raise(CAP_NET_BIND_SERVICE)
                          : privs.raise(-1);
        if (::bind(fd.get(), e.addr.get(), e.addr.len) < 0) fail("bind", errno);
    }
    if (::listen(fd.get(), proxy.backlog) < 0) fail("listen", errno);
    return fd;
}

}  // namespace pfp::supervisor
