#include "supervisor/host_addresses.hpp"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/allow_list.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"

namespace pfp::supervisor {

namespace {

void add(std::vector<std::string>& out, const sockaddr* sa, socklen_t len) {
    const auto ip = IpAddress::from_sockaddr(sa, len);
    if (!ip) return;
    std::string text = ip->to_string();
    if (std::find(out.begin(), out.end(), text) == out.end()) out.push_back(std::move(text));
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::optional<std::vector<std::string>> host_addresses_from_netlink() {
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return std::nullopt;
    std::vector<std::string> out;
    for (const ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        const int family = i->ifa_addr->sa_family;
        if (family == AF_INET) add(out, i->ifa_addr, sizeof(sockaddr_in));
        if (family == AF_INET6) add(out, i->ifa_addr, sizeof(sockaddr_in6));
    }
    ::freeifaddrs(list);
    return out;
}

std::vector<std::string> host_addresses_without_netlink() {
    std::vector<std::string> out;
    unique_fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) throw_errno("socket(AF_INET) for SIOCGIFCONF");
    // Grown until the kernel leaves room to spare: then nothing was cut off.
    for (size_t n = 64;; n *= 2) {
        std::vector<ifreq> reqs(n);
        ifconf conf{};
        conf.ifc_len = static_cast<int>(reqs.size() * sizeof(ifreq));
        conf.ifc_req = reqs.data();
        if (::ioctl(s.get(), SIOCGIFCONF, &conf) != 0) throw_errno("ioctl(SIOCGIFCONF)");
        const size_t got = static_cast<size_t>(conf.ifc_len) / sizeof(ifreq);
        if (got == n && n < 65536) continue;
        for (size_t i = 0; i < got; ++i)
            if (reqs[i].ifr_addr.sa_family == AF_INET)
                add(out, &reqs[i].ifr_addr, sizeof(sockaddr_in));
        break;
    }
    // "fe800000000000000000000000000001 02 40 20 80 eth0": the address as 32 hex digits first.
    std::ifstream inet6("/proc/self/net/if_inet6");
    for (std::string line; std::getline(inet6, line);) {
        if (line.size() < 32) continue;
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        bool ok = true;
        for (size_t i = 0; i < 16 && ok; ++i) {
            const int hi = hex_digit(line[2 * i]), lo = hex_digit(line[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            a.sin6_addr.s6_addr[i] = static_cast<uint8_t>(hi << 4 | lo);
        }
        if (ok) add(out, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    }
    return out;
}

}  // namespace pfp::supervisor
