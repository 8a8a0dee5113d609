// udp-forward on loopback: real pf-proxyd, real workers, real UDP sockets at both ends. What the
// far end saw (its peers are the forwarder's flow sockets) and the counters in `pf-proxyctl status`
// are checked together.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "proxy_status.hpp"
#include "tests/support/require.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using nlohmann::json;
using pfp::unique_fd;

namespace {

// One udp-forward proxy "u" from loopback `listen` of `listen_family` (or `listen_text`) to
// loopback `upstream`.
std::string udp_policy(const std::string& listen_text, int upstream_family, uint16_t upstream,
                       const std::string& extra = "") {
    return "{\"user\": \"nobody\", \"proxies\": [{\"name\": \"u\", \"listen\": \"udp:" +
           listen_text + "\", \"upstream\": \"udp:" + loopback_text(upstream_family) + ":" +
           std::to_string(upstream) + "\"" + extra + "}]}";
}

std::string at(int family, uint16_t port) {
    return loopback_text(family) + ":" + std::to_string(port);
}

json datagram_counters(const Daemon& d) {
    return proxy_counters(d, "u").value("datagram", json::object());
}

// Waits until the reported counters satisfy `pred` (workers report once a second).
template <class Pred>
json wait_counters(const Daemon& d, Pred pred, std::chrono::milliseconds timeout = 20s) {
    json c;
    wait_until(
        [&] {
            c = datagram_counters(d);
            return !c.empty() && pred(c);
        },
        timeout);
    return c;
}

// Sends `payload` from `c` and waits for the echo; true when it came back whole.
bool echoed(int c, int family, uint16_t port, const std::string& payload) {
    if (!send_udp(c, family, port, payload)) return false;
    const auto back = recv_udp(c, 10s);
    return back && *back == payload;
}

std::string first_worker_status(const Daemon& d, const std::string& field) {
    const auto w = d.wait_workers(1);
    return w.empty() ? "" : status_field(w.front(), field);
}

TEST(UdpForward, ParallelClientsEachGetTheirOwnReplies) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    constexpr int kClients = 200, kRounds = 5;
    std::vector<unique_fd> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(bind_udp(AF_INET));
    std::map<int, int> replies;  // client -> replies that were its own
    int foreign = 0;
    for (int round = 0; round < kRounds; ++round) {
        for (int i = 0; i < kClients; ++i)
            ASSERT_TRUE(
                send_udp(clients[i].get(), AF_INET, in,
                         "client " + std::to_string(i) + " round " + std::to_string(round)));
        for (int i = 0; i < kClients; ++i) {
            const auto back = recv_udp(clients[i].get(), 10s);
            ASSERT_TRUE(back) << "client " << i << " round " << round << "\n" << d.log();
            if (back->starts_with("client " + std::to_string(i) + " "))
                ++replies[i];
            else
                ++foreign;
        }
    }
    EXPECT_EQ(foreign, 0);
    for (int i = 0; i < kClients; ++i) EXPECT_EQ(replies[i], kRounds) << i;
    // One flow socket per client: the server saw 200 distinct peers, not one and not 1000.
    EXPECT_EQ(server.peers().size(), static_cast<size_t>(kClients));
    const json c = wait_counters(d, [](const json& x) { return x["datagrams_down"] == 1000; });
    EXPECT_EQ(c["flows_created"], kClients) << c;
    EXPECT_EQ(c["flows_active"], kClients) << c;
    EXPECT_EQ(c["datagrams_up"], kClients * kRounds) << c;
    EXPECT_EQ(c["datagrams_down"], kClients * kRounds) << c;
}

TEST(UdpForward, LargestAndEmptyDatagramsArriveWhole) {
    for (const int family : {AF_INET, AF_INET6}) {
        const uint16_t up = free_udp_port(family), in = free_udp_port(family);
        UdpEchoServer server(family, up);
        Daemon d(udp_policy(at(family, in), family, up));
        ASSERT_TRUE(d.wait_ready()) << d.log();
        unique_fd c = bind_udp(family);
        // The largest UDP payload of each family (65535 minus the IP and UDP headers).
        const size_t largest = family == AF_INET ? 65507 : 65527;
        std::string big(largest, '\0');
        for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
        EXPECT_TRUE(echoed(c.get(), family, in, big)) << d.log();
        EXPECT_TRUE(echoed(c.get(), family, in, "")) << d.log();
        EXPECT_TRUE(echoed(c.get(), family, in, std::string(1, 'x'))) << d.log();
        EXPECT_EQ(server.received(), 3u);
        const json k = wait_counters(d, [](const json& x) { return x["datagrams_down"] == 3; });
        EXPECT_EQ(k["bytes_up"], largest + 1) << k;
        EXPECT_EQ(k["bytes_down"], largest + 1) << k;
        EXPECT_EQ(k["truncated"], 0) << k;
    }
}

TEST(UdpForward, IdleFlowsExpireButTrafficEitherWayKeepsThemOpen) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up, /*silent=*/true);
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up, ", \"idle_timeout\": \"400ms\""));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = bind_udp(AF_INET);
    // Client -> upstream only, for five timeouts: one flow, never expired.
    for (int i = 0; i < 20; ++i) {
        ASSERT_TRUE(send_udp(c.get(), AF_INET, in, "up " + std::to_string(i)));
        std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(wait_until([&] { return server.received() == 20; })) << d.log();
    EXPECT_EQ(server.peers().size(), 1u);
    // Upstream -> client only, for five more: the same flow carries it.
    for (int i = 0; i < 20; ++i) {
        server.push_to_peers("down " + std::to_string(i));
        const auto got = recv_udp(c.get(), 10s);
        ASSERT_TRUE(got) << i << "\n" << d.log();
        EXPECT_EQ(*got, "down " + std::to_string(i));
        std::this_thread::sleep_for(100ms);
    }
    json k = datagram_counters(d);
    EXPECT_EQ(k["flows_expired"], 0) << k;
    // Silence: the flow expires, and the next datagram opens a new one (a new upstream port).
    k = wait_counters(d, [](const json& x) { return x["flows_expired"] == 1; });
    EXPECT_EQ(k["flows_active"], 0) << k;
    ASSERT_TRUE(send_udp(c.get(), AF_INET, in, "again"));
    ASSERT_TRUE(wait_until([&] { return server.received() == 21; }));
    EXPECT_EQ(server.peers().size(), 2u);
}

TEST(UdpForward, AFullTableEvictsTheLeastRecentlyActiveFlow) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up, ", \"max_flows\": 2, \"idle_timeout\": 0"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd a = bind_udp(AF_INET), b = bind_udp(AF_INET), c = bind_udp(AF_INET);
    ASSERT_TRUE(echoed(a.get(), AF_INET, in, "A1"));
    ASSERT_TRUE(echoed(b.get(), AF_INET, in, "B1"));
    const std::string a_flow = server.peer_of("A1"), b_flow = server.peer_of("B1");
    ASSERT_TRUE(echoed(a.get(), AF_INET, in, "A2"));  // A is now the most recent
    ASSERT_TRUE(echoed(c.get(), AF_INET, in, "C1"));  // full: B, the least recent, goes
    ASSERT_TRUE(echoed(a.get(), AF_INET, in, "A3"));
    EXPECT_EQ(server.peer_of("A3"), a_flow);          // A kept its flow
    ASSERT_TRUE(echoed(b.get(), AF_INET, in, "B2"));  // B comes back on a new flow, evicting C
    EXPECT_NE(server.peer_of("B2"), b_flow);
    const json k = wait_counters(d, [](const json& x) { return x["flows_evicted"] == 2; });
    EXPECT_EQ(k["flows_created"], 4) << k;
    EXPECT_EQ(k["flows_active"], 2) << k;
    EXPECT_EQ(k["flows_expired"], 0) << k;
    EXPECT_TRUE(d.wait_log("flow table full (2 flows): evicted")) << d.log();
}

TEST(UdpForward, ExpiredFlowsMakeRoomBeforeAnyIsEvicted) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up,
                        ", \"max_flows\": 2, \"idle_timeout\": \"300ms\""));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd a = bind_udp(AF_INET), b = bind_udp(AF_INET), c = bind_udp(AF_INET),
              e = bind_udp(AF_INET);
    ASSERT_TRUE(echoed(a.get(), AF_INET, in, "A"));
    ASSERT_TRUE(echoed(b.get(), AF_INET, in, "B"));
    json k = wait_counters(d, [](const json& x) { return x["flows_expired"] == 2; });
    ASSERT_TRUE(echoed(c.get(), AF_INET, in, "C"));
    ASSERT_TRUE(echoed(e.get(), AF_INET, in, "E"));
    k = wait_counters(d, [](const json& x) { return x["flows_created"] == 4; });
    EXPECT_EQ(k["flows_evicted"], 0) << k;
}

TEST(UdpForward, Ipv6AndDualStackListeners) {
    PFP_REQUIRE(std::ifstream("/proc/net/if_inet6").good() ? "" : "IPv6");
    const uint16_t up = free_udp_port(), in6 = free_udp_port(AF_INET6);
    UdpEchoServer server(AF_INET, up);
    {
        // An IPv6 client, an IPv4 upstream.
        Daemon d(udp_policy(at(AF_INET6, in6), AF_INET, up));
        ASSERT_TRUE(d.wait_ready()) << d.log();
        unique_fd c = bind_udp(AF_INET6);
        EXPECT_TRUE(echoed(c.get(), AF_INET6, in6, "six to four")) << d.log();
    }
    std::string v6only;
    std::ifstream("/proc/sys/net/ipv6/bindv6only") >> v6only;
    PFP_REQUIRE(v6only == "0" ? "" : "net.ipv6.bindv6only=0 (dual-stack sockets)");
    const uint16_t any = free_udp_port(AF_INET6);
    Daemon d(udp_policy("[::]:" + std::to_string(any), AF_INET, up));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c4 = bind_udp(AF_INET), c6 = bind_udp(AF_INET6);
    EXPECT_TRUE(echoed(c4.get(), AF_INET, any, "four on a dual-stack socket")) << d.log();
    EXPECT_TRUE(echoed(c6.get(), AF_INET6, any, "six on a dual-stack socket")) << d.log();
    const json k = wait_counters(d, [](const json& x) { return x["datagrams_down"] == 2; });
    EXPECT_EQ(k["flows_created"], 2) << k;
}

TEST(UdpForward, BatchingOnAndOffDeliverTheSameDatagrams) {
    std::vector<std::string> sent;
    for (int i = 0; i < 300; ++i)
        sent.push_back(std::string(static_cast<size_t>(i * 37 % 1500), 'a' + i % 26));
    std::vector<std::vector<std::string>> got(2);
    for (const bool batch : {true, false}) {
        const uint16_t up = free_udp_port(), in = free_udp_port();
        UdpEchoServer server(AF_INET, up);
        Daemon d(udp_policy(at(AF_INET, in), AF_INET, up,
                            std::string(", \"batch\": ") + (batch ? "true" : "false")));
        ASSERT_TRUE(d.wait_ready()) << d.log();
        unique_fd c = bind_udp(AF_INET);
        // Bursts of 30, so the batched reads really carry many datagrams at once.
        for (size_t i = 0; i < sent.size(); i += 30) {
            for (size_t j = i; j < i + 30; ++j)
                ASSERT_TRUE(send_udp(c.get(), AF_INET, in, sent[j]));
            for (size_t j = i; j < i + 30; ++j) {
                const auto back = recv_udp(c.get(), 10s);
                ASSERT_TRUE(back) << "batch " << batch << " datagram " << j << "\n" << d.log();
                got[batch].push_back(*back);
            }
        }
    }
    EXPECT_EQ(got[0], sent);
    EXPECT_EQ(got[1], sent);
}

// A client's run of equal-sized datagrams may go upstream as one segmented send (UDP_SEGMENT):
// the upstream still gets each datagram on its own, whole and in order, the run's shorter last
// one and the larger one after it included.
TEST(UdpForward, RunsOfEqualSizedDatagramsArriveOneByOne) {
    std::vector<std::string> sent;
    for (int burst = 0; burst < 5; ++burst) {
        for (int i = 0; i < 40; ++i)
            sent.push_back(std::string(1000, static_cast<char>('A' + (burst * 40 + i) % 58)));
        sent.push_back(std::string(300, 'z'));
        sent.push_back(std::string(1400, 'y'));
        for (int i = 0; i < 70; ++i)
            sent.push_back(std::string(64, static_cast<char>('0' + i % 10)));
    }
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = bind_udp(AF_INET);
    const size_t burst = sent.size() / 5;
    std::vector<std::string> got;
    for (size_t i = 0; i < sent.size(); i += burst) {
        for (size_t j = i; j < i + burst; ++j) ASSERT_TRUE(send_udp(c.get(), AF_INET, in, sent[j]));
        for (size_t j = i; j < i + burst; ++j) {
            const auto back = recv_udp(c.get(), 10s);
            ASSERT_TRUE(back) << "datagram " << j << "\n" << d.log();
            got.push_back(*back);
        }
    }
    EXPECT_EQ(got, sent);
    EXPECT_EQ(server.received(), sent.size());
}

TEST(UdpForward, UnreachableUpstreamIsCountedAndTheFlowKept) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = bind_udp(AF_INET);
    // Nothing listens on `up`: each datagram draws an ICMP port unreachable.
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(send_udp(c.get(), AF_INET, in, "anyone?"));
        std::this_thread::sleep_for(50ms);
    }
    json k = wait_counters(d, [](const json& x) { return x["refused"] >= 1; });
    EXPECT_EQ(k["flows_active"], 1) << k;
    // The upstream comes up: the same flow carries the next datagram there and back.
    UdpEchoServer server(AF_INET, up);
    EXPECT_TRUE(echoed(c.get(), AF_INET, in, "now?")) << d.log();
    k = wait_counters(d, [](const json& x) { return x["datagrams_down"] == 1; });
    EXPECT_EQ(k["flows_created"], 1) << k;
}

TEST(UdpForward, AllowedSourcesDropsOtherClients) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up, ", \"allowed_sources\": [\"10.0.0.0/8\"]"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = bind_udp(AF_INET);
    ASSERT_TRUE(send_udp(c.get(), AF_INET, in, "let me in"));
    const json k = wait_counters(d, [](const json& x) { return x["denied"] == 1; });
    EXPECT_EQ(k["flows_created"], 0) << k;
    EXPECT_FALSE(recv_udp(c.get(), 200ms));
    EXPECT_EQ(server.received(), 0u);
}

TEST(UdpForward, AKilledWorkerIsRestartedAndServesAgain) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = bind_udp(AF_INET);
    ASSERT_TRUE(echoed(c.get(), AF_INET, in, "before"));
    const auto old = d.wait_workers(1);
    ASSERT_EQ(old.size(), 1u);
    ASSERT_EQ(::kill(old.front(), SIGKILL), 0);
    const auto now = d.wait_workers(1, old);
    ASSERT_EQ(now.size(), 1u) << d.log();
    ASSERT_TRUE(d.wait_log("udp-forward worker ready", 20s, 2)) << d.log();
    EXPECT_TRUE(echoed(c.get(), AF_INET, in, "after")) << d.log();
}

TEST(UdpForward, WorkerIsLockedDown) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    Daemon d(udp_policy(at(AF_INET, in), AF_INET, up));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_EQ(first_worker_status(d, "CapEff"), "0000000000000000");
    EXPECT_EQ(first_worker_status(d, "NoNewPrivs"), "1");
    EXPECT_EQ(first_worker_status(d, "Seccomp"), "2");
}

}  // namespace
