// tcp-forward with the destination taken from a redirected client (iptables REDIRECT in a
// namespace, IPv4 and IPv6): "original-destination" connects to SO_ORIGINAL_DST itself,
// base_address moves the upstream's IP by the original port. The allow list guards both, observed
// at the far end (a denied destination listens and must see nothing), and a policy without
// `allow` does not start.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>

#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"
#include "netns.hpp"
#include "transparent_support.hpp"

using namespace pfp::test;
using namespace pfp::test::transparent;
using pfp::unique_fd;

namespace {

constexpr uint16_t kBasePort4 = 15010;  // base_address listeners; REDIRECTed ranges start here
constexpr uint16_t kBasePort6 = 15020;

// A connection completed its handshake on `listener`, which the test never accepts on.
bool has_queued_connection(int listener) {
    pollfd p{listener, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

// A server that answers "<its address> saw <request> from <peer>".
std::unique_ptr<Server> reply_server(const NetNs& ns, const std::string& ip, uint16_t port) {
    return std::make_unique<Server>(
        listen_tcp_in(ns, ip, port), [ip](int fd, const std::string& peer) {
            std::string got;
            if (!read_to_eof(fd, got)) return;
            const std::string reply = ip + " saw " + got + " from " + peer;
            write_all(fd, reply.data(), reply.size());
        });
}

std::unique_ptr<IptablesRule> redirect(const NetNs& ns, bool v6, const std::string& dest,
                                       const std::string& dports, uint16_t to) {
    std::vector<std::string> spec{"-p", "tcp", "-d", dest};
    if (!dports.empty()) spec = concat(spec, {"--dport", dports});
    return std::make_unique<IptablesRule>(
        ns, v6 ? IptablesRule::v6 : IptablesRule::v4, "nat", "OUTPUT",
        concat(concat(spec, kNotNobody), {"-j", "REDIRECT", "--to-ports", std::to_string(to)}));
}

std::string entry(const std::string& name, const std::string& listen, const std::string& upstream,
                  const std::string& extra) {
    return "{\"name\": " + quoted(name) + ", \"listen\": " + quoted(listen) +
           ", \"upstream\": " + quoted(upstream) + extra + "}";
}

class OriginalDestination : public ::testing::Test {
  protected:
    std::string client(const std::string& ip, uint16_t port) {
        ChildResult r = topo_.n.run_in_child([&] { return request_here(ip, port, "GET /"); });
        EXPECT_TRUE(r.ok) << r.output;
        return r.output;
    }
    // Closed without a byte, and the refusal logged (at most once a second per worker: ask again
    // until this one is).
    void expect_denied(const Daemon& d, const std::string& ip, uint16_t port,
                       const std::string& logged) {
        for (int i = 0; i < 60; ++i) {
            const std::string out = client(ip, port);
            ASSERT_TRUE(out == "eof " || out == "reset ")
                << ip << ":" << port << " should be closed without data, got: " << out;
            if (d.wait_log(logged, 300ms)) return;
        }
        ADD_FAILURE() << "never logged: " << logged << "\n" << d.log();
    }

    Topology topo_;
};

TEST_F(OriginalDestination, RedirectedClientReachesItsOwnDestinationOnlyIfAllowed) {
    PFP_REQUIRE_NETNS();
    auto allowed4 = reply_server(topo_.s, "10.200.1.1", 80);
    auto allowed6 = reply_server(topo_.s, "fd00:200::2", 80);
    // Denied destinations exist and listen: a proxy that ignored `allow` would reach them.
    unique_fd denied4 = listen_tcp_in(topo_.s, "10.200.1.1", 81);
    unique_fd denied6 = listen_tcp_in(topo_.s, "fd00:200::2", 81);
    auto r4 = redirect(topo_.n, false, "10.200.0.0/16", "", kEgressPort);
    auto r6 = redirect(topo_.n, true, "fd00:200::/64", "", kEgressPort2);
    auto d = start_daemon(
        topo_.n, policy_of(entry("od4", "tcp:127.0.0.1:" + std::to_string(kEgressPort),
                                 "original-destination", ", \"allow\": [\"10.200.0.0/16:80\"]") +
                           ", " +
                           entry("od6", "tcp:[::1]:" + std::to_string(kEgressPort2),
                                 "original-destination", ", \"allow\": [\"[fd00:200::]/64:80\"]")));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();

    // The server sees the proxy in N (10.200.0.1 / fd00:200::1) and the request unchanged.
    EXPECT_EQ(client("10.200.1.1", 80), "eof 10.200.1.1 saw GET / from 10.200.0.1") << d->log();
    EXPECT_EQ(client("fd00:200::2", 80), "eof fd00:200::2 saw GET / from fd00:200::1") << d->log();
    expect_denied(*d, "10.200.1.1", 81, "od4/0: refused connection from ");
    EXPECT_TRUE(d->wait_log("destination 10.200.1.1:81 denied", 5s)) << d->log();
    expect_denied(*d, "fd00:200::2", 81, "od6/0: refused connection from ");
    EXPECT_TRUE(d->wait_log("destination [fd00:200::2]:81 denied", 5s)) << d->log();
    EXPECT_FALSE(has_queued_connection(denied4.get())) << "10.200.1.1:81 was connected to";
    EXPECT_FALSE(has_queued_connection(denied6.get())) << "[fd00:200::2]:81 was connected to";
    EXPECT_EQ(allowed4->accepted(), 1);
    EXPECT_EQ(allowed6->accepted(), 1);
}

// tcpfwd -b: a REDIRECTed port range becomes an address range. Original port P reaches
// base + (P - listener port), at the upstream's port.
TEST_F(OriginalDestination, BaseAddressTurnsTheOriginalPortIntoAnAddress) {
    PFP_REQUIRE_NETNS();
    for (const char* a : {"10.200.1.2/16", "10.200.1.3/16"})
        topo_.s.ip({"addr", "add", a, "dev", "vs"});
    for (const char* a : {"fd00:200::102/64", "fd00:200::103/64"})
        topo_.s.ip({"addr", "add", a, "dev", "vs", "nodad"});
    auto allowed4 = reply_server(topo_.s, "10.200.1.2", 80);
    auto allowed6 = reply_server(topo_.s, "fd00:200::103", 80);
    unique_fd denied4 = listen_tcp_in(topo_.s, "10.200.1.3", 80);
    unique_fd denied6 = listen_tcp_in(topo_.s, "fd00:200::102", 80);
    // Clients connect to an address nobody has, at a port in the range; only the port matters.
    auto r4 = redirect(topo_.n, false, "10.200.9.9", "15010:15019", kBasePort4);
    auto r6 = redirect(topo_.n, true, "fd00:200::99", "15020:15029", kBasePort6);
    auto d = start_daemon(
        topo_.n,
        policy_of(entry("b4", "tcp:127.0.0.1:" + std::to_string(kBasePort4), "tcp:10.200.1.0:80",
                        ", \"base_address\": true, \"allow\": [\"10.200.1.2:80\"]") +
                  ", " +
                  entry("b6", "tcp:[::1]:" + std::to_string(kBasePort6), "tcp:[fd00:200::100]:80",
                        ", \"base_address\": true, \"allow\": [\"[fd00:200::103]:80\"]")));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();

    EXPECT_EQ(client("10.200.9.9", kBasePort4 + 2), "eof 10.200.1.2 saw GET / from 10.200.0.1")
        << d->log();
    EXPECT_EQ(client("fd00:200::99", kBasePort6 + 3),
              "eof fd00:200::103 saw GET / from fd00:200::1")
        << d->log();
    expect_denied(*d, "10.200.9.9", kBasePort4 + 3, "b4/0: refused connection from ");
    EXPECT_TRUE(d->wait_log("destination 10.200.1.3:80 denied", 5s)) << d->log();
    expect_denied(*d, "fd00:200::99", kBasePort6 + 2, "b6/0: refused connection from ");
    EXPECT_TRUE(d->wait_log("destination [fd00:200::102]:80 denied", 5s)) << d->log();
    EXPECT_FALSE(has_queued_connection(denied4.get())) << "10.200.1.3:80 was connected to";
    EXPECT_FALSE(has_queued_connection(denied6.get())) << "[fd00:200::102]:80 was connected to";
    EXPECT_EQ(allowed4->accepted(), 1);
    EXPECT_EQ(allowed6->accepted(), 1);
}

// Deny by default: no `allow`, no start (exit 1, the proxy and the fix named, nothing listens);
// "any" starts with a warning and relays.
TEST_F(OriginalDestination, StartIsRefusedWithoutAllowAndAnyIsWarned) {
    PFP_REQUIRE_NETNS();
    const std::string listen = "tcp:127.0.0.1:" + std::to_string(kEgressPort);
    {
        auto d =
            start_daemon(topo_.n, policy_of(entry("open", listen, "original-destination", "")));
        const int status = d->wait_exit(20s);
        ASSERT_TRUE(WIFEXITED(status)) << status << "\n" << d->log();
        EXPECT_EQ(WEXITSTATUS(status), 1) << d->log();
        EXPECT_NE(d->log().find("proxy \"open\" connects wherever the client's original "
                                "destination (SO_ORIGINAL_DST) says, and has no allow list: add "
                                "\"allow\""),
                  std::string::npos)
            << d->log();
        unique_fd c;
        EXPECT_NE(connect_tcp_in(topo_.n, "127.0.0.1", kEgressPort, c, 2s), 0)
            << "a refused proxy listens";
    }
    auto server = reply_server(topo_.s, "10.200.1.1", 80);
    auto r4 = redirect(topo_.n, false, "10.200.0.0/16", "", kEgressPort);
    auto d = start_daemon(
        topo_.n, policy_of(entry("open", listen, "original-destination", ", \"allow\": \"any\"")));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();
    EXPECT_TRUE(d->wait_log("proxy \"open\" is an open relay (allow: \"any\")", 5s)) << d->log();
    EXPECT_EQ(client("10.200.1.1", 80), "eof 10.200.1.1 saw GET / from 10.200.0.1") << d->log();
    // Even so, the protected ranges stay closed: N's own loopback.
    unique_fd loop = listen_tcp_in(topo_.n, "127.0.0.2", 9);
    auto r_lo = redirect(topo_.n, false, "127.0.0.2", "", kEgressPort);
    expect_denied(*d, "127.0.0.2", 9, "loopback destination not explicitly allowed");
    EXPECT_FALSE(has_queued_connection(loop.get()));
}

}  // namespace
