// The host's own addresses, read two ways: getifaddrs (netlink) and, where a unit forbids
// AF_NETLINK, SIOCGIFCONF plus /proc/self/net/if_inet6. Both must list the same set, in a network
// namespace whose addresses the test chose.
#include "supervisor/host_addresses.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace pfp::supervisor {
namespace {

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

TEST(HostAddresses, WithoutNetlinkTheSameSetAsGetifaddrs) {
    const auto netlink = host_addresses_from_netlink();
    ASSERT_TRUE(netlink);
    EXPECT_EQ(sorted(host_addresses_without_netlink()), sorted(*netlink));
}

TEST(HostAddresses, ANamespacesOwnAddressesAreListed) {
    const pid_t child = ::fork();
    if (child == 0) {
        if (::unshare(CLONE_NEWNET) != 0) ::_exit(10);
        if (std::system("ip link set lo up && ip addr add 10.99.0.1/24 dev lo && "
                        "ip addr add 10.99.0.7/32 dev lo label lo:a && "
                        "ip -6 addr add fd99::1/64 dev lo nodad") != 0)
            ::_exit(11);
        const auto netlink = host_addresses_from_netlink();
        if (!netlink) ::_exit(12);
        const auto without = sorted(host_addresses_without_netlink());
        const std::vector<std::string> want =
            sorted({"127.0.0.1", "10.99.0.1", "10.99.0.7", "::1", "fd99::1"});
        if (without != want) ::_exit(13);
        if (sorted(*netlink) != want) ::_exit(14);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10: unshare, 11: ip, 12: getifaddrs, 13: the list "
                                         "without netlink, 14: the getifaddrs list";
}

}  // namespace
}  // namespace pfp::supervisor
