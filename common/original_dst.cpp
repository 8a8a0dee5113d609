#include "common/original_dst.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

namespace pfp {

namespace {
// linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h, whose includes clash with glibc's.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;
}  // namespace

std::optional<SockAddr> original_destination(int fd) {
    SockAddr local;
    local.len = sizeof local.storage;
    if (::getsockname(fd, local.get(), &local.len) < 0) return std::nullopt;
    SockAddr out;
    out.len = sizeof out.storage;
    // An IPv6 socket's client may still be IPv4-mapped; the IPv4 table knows those.
    if (local.family() == AF_INET6 &&
        ::getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, out.get(), &out.len) == 0)
        return out;
    out.len = sizeof out.storage;
    if (::getsockopt(fd, SOL_IP, kSoOriginalDst, out.get(), &out.len) == 0) return out;
    return std::nullopt;
}

}  // namespace pfp
