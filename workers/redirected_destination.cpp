#include "workers/redirected_destination.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace pfp::worker {

uint16_t port_of(const SockAddr& a) {
    if (a.family() == AF_INET && a.len >= sizeof(sockaddr_in))
        return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
    if (a.family() == AF_INET6 && a.len >= sizeof(sockaddr_in6))
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
    return 0;
}

SockAddr local_address(int fd) {
    SockAddr a;
    a.len = sizeof a.storage;
    if (::getsockname(fd, a.get(), &a.len) < 0) a.len = 0;
    return a;
}

std::optional<SockAddr> base_address_destination(const SockAddr& base, uint16_t original_port,
                                                 uint16_t local_port) {
    uint8_t* low32 = nullptr;  // the 32 bits the offset is added to, network order
    SockAddr out = base;
    if (out.family() == AF_INET && out.len >= sizeof(sockaddr_in)) {
        low32 = reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in*>(&out.storage)->sin_addr);
    } else if (out.family() == AF_INET6 && out.len >= sizeof(sockaddr_in6)) {
        low32 = reinterpret_cast<sockaddr_in6*>(&out.storage)->sin6_addr.s6_addr + 12;
    } else {
        return std::nullopt;
    }
    uint32_t word = 0;
    std::memcpy(&word, low32, sizeof word);
    const int64_t sum = static_cast<int64_t>(ntohl(word)) + original_port - local_port;
    if (sum < 0 || sum > static_cast<int64_t>(UINT32_MAX)) return std::nullopt;
    word = htonl(static_cast<uint32_t>(sum));
    std::memcpy(low32, &word, sizeof word);
    return out;
}

Endpoint tcp_endpoint(const SockAddr& original) {
    Endpoint e;
    e.scheme = Scheme::tcp;
    e.addr = original;
    e.port = port_of(original);
    return e;
}

}  // namespace pfp::worker
