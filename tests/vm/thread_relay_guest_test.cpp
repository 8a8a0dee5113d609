// The thread relay (`"relay": "threads"`) over real vsock in the QEMU guest: blocking threads on
// vsock sockets move bulk intact, pass half-close both ways, and connections beyond the bound are
// served by the event engine. Every vsock connect goes to CID 1 (VMADDR_CID_LOCAL) only.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "guest_support.hpp"

using namespace pfp::test;
using namespace pfp::test::vm;
using pfp::unique_fd;

namespace {

const std::string kThreads = R"("relay": "threads", "relay_threads": 8)";

// ip-to-vsock -> vsock CID 1 -> vsock-to-ip -> TCP, both relays with thread pairs.
std::string pair_policy(uint16_t in_port, uint32_t vport, uint16_t server_port) {
    const std::string v = std::to_string(vport);
    return policy({proxy("in", tcp(in_port), "vsock:1:" + v, kThreads),
                   proxy("out", "vsock:any:" + v, tcp(server_port), kThreads)});
}

TEST(ThreadRelayGuest, PairAndVsockToVsockMove16MiBEachWayIntact) {
    REQUIRE_VSOCK_LOOPBACK();
    const uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    VsockEchoServer vecho(5301);
    Daemon d(policy({proxy("in", tcp(in), "vsock:1:5300", kThreads),
                     proxy("out", "vsock:any:5300", tcp(server), kThreads),
                     proxy("v2v", "vsock:any:5302", "vsock:1:5301", kThreads)}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const size_t total = 16u << 20;
    unique_fd c = connect_tcp(in, 120s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 120s);
    ASSERT_TRUE(converse(c.get())) << d.log();  // both relays of the pair hand it to threads
    unique_fd v = connect_vsock(5302, 60s);
    ASSERT_TRUE(v);
    set_timeouts(v.get(), 120s);
    ASSERT_TRUE(converse(v.get())) << d.log();
    expect_thread_pairs(d, 1);
    Transfer t = send_and_receive(c.get(), total, 1);  // ends with a half-close
    EXPECT_TRUE(t.ok);
    EXPECT_EQ(t.received, total);
    EXPECT_EQ(t.received_hash, t.sent_hash);
    Transfer tv = send_and_receive(v.get(), total, 2);
    EXPECT_TRUE(tv.ok);
    EXPECT_EQ(tv.received, total);
    EXPECT_EQ(tv.received_hash, tv.sent_hash);
}

TEST(ThreadRelayGuest, HalfCloseCrossesVsockBothWays) {
    REQUIRE_VSOCK_LOOPBACK();
    const uint16_t in = free_port(), server = free_port();
    Daemon d(pair_policy(in, 5304, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_NO_FATAL_FAILURE(expect_client_half_close_then_reply(d, in, server, true));
    expect_server_half_close_then_client_sends(d, in, server, true);
}

// 8 conversations get thread pairs in each relay, the other 24 stay on the event engine; all
// relay.
TEST(ThreadRelayGuest, ConnectionsBeyondTheBoundAreServedByTheEventEngine) {
    REQUIRE_VSOCK_LOOPBACK();
    const uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    Daemon d(pair_policy(in, 5306, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::vector<unique_fd> clients;
    for (int i = 0; i < 32; ++i) {
        clients.push_back(connect_tcp(in, 60s));
        ASSERT_TRUE(clients.back()) << i;
        set_timeouts(clients.back().get(), 60s);
    }
    for (int round = 0; round < 2; ++round) {
        for (size_t i = 0; i < clients.size(); ++i) {
            const std::string msg = "conn-" + std::to_string(i) + "." + std::to_string(round);
            std::string back(msg.size(), '\0');
            ASSERT_TRUE(write_all(clients[i].get(), msg.data(), msg.size())) << i;
            ASSERT_TRUE(read_exact(clients[i].get(), back.data(), back.size())) << i;
            EXPECT_EQ(back, msg);
        }
    }
    EXPECT_TRUE(d.wait_log("relay_threads bound (8 connections) reached")) << d.log();
    expect_thread_pairs(d, 8);
}

}  // namespace
