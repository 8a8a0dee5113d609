// Which TCP ports a worker's Landlock layer lets it connect to, from its handover; and the layer
// applied for real in a forked child, whose connects are then refused by the kernel.
#include "workers/landlock.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.hpp"
#include "tests/support/require.hpp"

namespace pfp::sandbox {
namespace {

Handover stream_handover(UpstreamMode mode, std::string upstream, std::vector<std::string> allow) {
    Handover h;
    StreamOptions o;
    o.upstream_mode = mode;
    o.upstream = std::move(upstream);
    o.allow = std::move(allow);
    h.options = o;
    return h;
}

std::vector<std::pair<int, int>> ports(const LandlockRules& r) {
    std::vector<std::pair<int, int>> out;
    for (const PortRange& p : *r.tcp_connect) out.emplace_back(p.low, p.high);
    return out;
}

TEST(LandlockRules, AFixedTcpUpstreamAllowsItsPortOnly) {
    const auto r = landlock_rules(stream_handover(UpstreamMode::fixed, "tcp:127.0.0.1:9000", {}));
    ASSERT_TRUE(r.tcp_connect);
    EXPECT_EQ(ports(r), (std::vector<std::pair<int, int>>{{9000, 9000}}));
}

// Base-address mode varies the IP only; the port stays the configured one, even under a broad
// allow list.
TEST(LandlockRules, ABaseAddressUpstreamAllowsItsPortOnly) {
    const auto r = landlock_rules(
        stream_handover(UpstreamMode::base_address, "tcp:10.0.0.0:8443", {"10.0.0.0/8:*"}));
    ASSERT_TRUE(r.tcp_connect);
    EXPECT_EQ(ports(r), (std::vector<std::pair<int, int>>{{8443, 8443}}));
}

TEST(LandlockRules, AnUpstreamThatIsNotTcpAllowsNoTcpConnect) {
    for (const char* up : {"vsock:3:5000", "unix:/run/x.sock"}) {
        const auto r = landlock_rules(stream_handover(UpstreamMode::fixed, up, {}));
        ASSERT_TRUE(r.tcp_connect) << up;
        EXPECT_TRUE(r.tcp_connect->empty()) << up;
    }
}

TEST(LandlockRules, AChosenDestinationIsBoundedByTheAllowListsPorts) {
    auto r = landlock_rules(stream_handover(UpstreamMode::destination_header, "",
                                            {"10.0.0.0/8:443", "[2001:db8::]/32:8000-8010"}));
    ASSERT_TRUE(r.tcp_connect);
    EXPECT_EQ(ports(r), (std::vector<std::pair<int, int>>{{443, 443}, {8000, 8010}}));
    // An entry for every port, or more ports than rules are worth: unbounded.
    r = landlock_rules(
        stream_handover(UpstreamMode::destination_header, "", {"10.0.0.0/8:443", "10.1.0.0/16:*"}));
    EXPECT_FALSE(r.tcp_connect);
    r = landlock_rules(
        stream_handover(UpstreamMode::destination_header, "", {"10.0.0.0/8:1-5000"}));
    EXPECT_FALSE(r.tcp_connect);
}

// A child restricted to one port: connecting to another listening port is refused with EACCES
// and never reaches it; the allowed one connects.
TEST(LandlockApply, TheKernelRefusesConnectsToOtherPorts) {
    PFP_REQUIRE(landlock_abi() >= 4 ? "" : "Landlock ABI 4 (TCP port rules, Linux 6.7)");
    auto listening = [](uint16_t& port) {
        unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(fd.get(), 4) != 0 ||
            ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
            return unique_fd();
        port = ntohs(a.sin_port);
        return fd;
    };
    uint16_t allowed_port = 0, other_port = 0;
    unique_fd allowed = listening(allowed_port), other = listening(other_port);
    ASSERT_TRUE(allowed && other);
    const pid_t child = ::fork();
    if (child == 0) {
        LandlockRules rules;
        rules.tcp_connect = std::vector<PortRange>{{allowed_port, allowed_port}};
        rules.restrict_files = false;
        if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(10);
        try {
            (void)apply_landlock(rules, landlock_abi());
        } catch (...) {
            ::_exit(11);
        }
        auto connect_to = [](uint16_t port) {
            const int s = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
        };
        if (connect_to(other_port) != EACCES) ::_exit(12);
        if (connect_to(allowed_port) != 0) ::_exit(13);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10: NNP, 11: landlock, 12: other port not refused, "
                                         "13: allowed port refused";
    // The far end: the allowed listener has the connection, the other none.
    EXPECT_TRUE(unique_fd(::accept4(allowed.get(), nullptr, nullptr, SOCK_CLOEXEC)));
    EXPECT_FALSE(unique_fd(::accept4(other.get(), nullptr, nullptr, SOCK_CLOEXEC)));
}

}  // namespace
}  // namespace pfp::sandbox
