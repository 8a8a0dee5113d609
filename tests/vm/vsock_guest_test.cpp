// Real vsock data paths through the stream relays. This kernel has no vsock loopback, so these
// tests run only inside the QEMU guest of tests/vm (Debian's kernel with vsock_loopback: CID 1
// carries data); ctest's `vm` label boots it (tests/vm/run-guest.sh). Every vsock connect goes
// to CID 1 (VMADDR_CID_LOCAL) and nowhere else.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <thread>

#include "guest_support.hpp"

using namespace pfp::test;
using namespace pfp::test::vm;
using pfp::unique_fd;

namespace {

// ip-to-vsock (TCP in) -> vsock CID 1 -> vsock-to-ip (vsock in) -> TCP server.
std::string pair_policy(uint16_t in_port, uint32_t vport, uint16_t server_port) {
    const std::string v = std::to_string(vport);
    return policy({proxy("in", tcp(in_port), "vsock:1:" + v),
                   proxy("out", "vsock:any:" + v, tcp(server_port))});
}

TEST(VsockGuest, IpToVsockToIpMoves64MiBEachWayIntact) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    Daemon d(pair_policy(in, 5001, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(in, 120s);
    ASSERT_TRUE(c);
    const size_t total = 64u << 20;
    Transfer t = send_and_receive(c.get(), total, 1);  // ends with a half-close
    EXPECT_TRUE(t.ok);
    EXPECT_EQ(t.received, total);
    EXPECT_EQ(t.received_hash, t.sent_hash);
}

// The client's FIN crosses both relays and vsock; the server answers after it, and the answer
// still reaches the client.
TEST(VsockGuest, ClientHalfCloseReachesServerAndTheReplyStillFlows) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    Daemon d(pair_policy(in, 5004, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    expect_client_half_close_then_reply(d, in, server);
}

// The other direction: the server finishes first; the client still sends afterwards.
TEST(VsockGuest, ServerHalfCloseReachesClientAndTheClientStillSends) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    Daemon d(pair_policy(in, 5005, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    expect_server_half_close_then_client_sends(d, in, server);
}

TEST(VsockGuest, TwoHundredConcurrentConnections) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    Daemon d(pair_policy(in, 5002, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::vector<unique_fd> clients;
    for (int i = 0; i < 200; ++i) {
        clients.push_back(connect_tcp(in, 60s));
        ASSERT_TRUE(clients.back()) << i;
    }
    int ok = 0;
    for (int i = 0; i < 200; ++i) ok += echoes(clients[i].get(), "m" + std::to_string(i));
    EXPECT_EQ(ok, 200);
}

// vsock-to-vsock (vsockproxy) between the pair: CID 1 admitted only when allowed_cids lists it;
// statistics lines while a connection moves bytes.
TEST(VsockGuest, VsockToVsockAllowedCidsAndStatistics) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    for (bool listed : {true, false}) {
        SCOPED_TRACE(listed ? "CID 1 listed" : "CID 1 not listed");
        Daemon d(policy({proxy("in", tcp(in), "vsock:1:6000"),
                         proxy("g2g", "vsock:any:6000", "vsock:1:6001",
                               "\"allowed_cids\": " + std::string(listed ? "[1]" : "[7]") +
                                   ", \"statistics\": true"),
                         proxy("out", "vsock:any:6001", tcp(server))}));
        ASSERT_TRUE(d.wait_ready()) << d.log();
        unique_fd c = connect_tcp(in, 10s);
        ASSERT_TRUE(c);
        EXPECT_EQ(echoes(c.get(), "cid"), listed) << d.log();
        if (listed) {
            // One line a second while bytes move: keep the connection busy for a while.
            for (int i = 0; i < 30 && !d.wait_log(" bytes received (", 100ms); ++i)
                EXPECT_TRUE(echoes(c.get(), "more"));
            EXPECT_TRUE(d.wait_log("statistics: vsock:1:", 5s)) << d.log();
        } else {
            EXPECT_TRUE(d.wait_log("is not in allowed_cids", 5s)) << d.log();
        }
    }
}

// The vsock-side worker dies by SIGKILL in the middle of a transfer: the supervisor starts a new
// one on the same listener and later connections over vsock succeed.
TEST(VsockGuest, KilledWorkerComesBackDuringVsockTraffic) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    Daemon d(pair_policy(in, 5003, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const std::vector<pid_t> before = d.wait_workers(2);
    ASSERT_EQ(before.size(), 2u);
    auto out = std::find_if(before.begin(), before.end(), [](pid_t p) {
        return cmdline_of(p).find("pf-proxy-worker: out/") != std::string::npos;
    });
    ASSERT_NE(out, before.end());
    const pid_t victim = *out;

    unique_fd busy = connect_tcp(in, 20s);
    ASSERT_TRUE(busy);
    ASSERT_TRUE(echoes(busy.get(), "warm"));  // the vsock leg is established
    // Traffic is flowing through the victim: a first MiB went there and back, and the
    // connection stays open for the rest of the transfer.
    std::vector<char> first(1u << 20, 'f');
    ASSERT_TRUE(write_all(busy.get(), first.data(), first.size()));
    ASSERT_TRUE(read_exact(busy.get(), first.data(), first.size()));
    constexpr size_t kRest = 256u << 20;
    Transfer t;
    std::thread transfer([&] { t = send_and_receive(busy.get(), kRest, 7); });
    EXPECT_EQ(::kill(victim, SIGKILL), 0);
    transfer.join();  // the relay closes the client when its upstream is gone
    EXPECT_LT(t.received, kRest) << "the transfer was not cut: the kill came after it";

    const std::vector<pid_t> after = d.wait_workers(2, {victim});
    ASSERT_EQ(after.size(), 2u) << d.log();
    EXPECT_EQ(std::count(after.begin(), after.end(), victim), 0);
    for (int i = 0; i < 20; ++i) {
        unique_fd c = connect_tcp(in, 20s);
        ASSERT_TRUE(c);
        EXPECT_TRUE(echoes(c.get(), "k" + std::to_string(i))) << i << d.log();
    }
}

}  // namespace
