// The KCP tunnel end to end: a real pf-proxyd running a kcp-client and a kcp-server, their
// workers sandboxed, a TCP client on one side and a TCP echo upstream on the other, all on
// loopback (with a deterministic lossy UDP relay between the two workers where a test says so).
// What arrives is checked at the far end: hashes of every byte, FINs, the upstream's accepts.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>

#include "kcp_support.hpp"
#include "tests/support/require.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

class KcpTunnel : public ::testing::Test {
  protected:
    void SetUp() override {
        raise_nofile(16384);
        ports.server = free_udp_port();
    }
    KcpPorts ports;
    TempDir dir;
};

// `total` bytes each way through the tunnel, hashed at both ends.
void bulk_both_ways(const KcpPorts& ports, const std::string& policy, size_t total) {
    std::atomic<uint64_t> server_sent{0}, server_received{0};
    std::atomic<size_t> server_count{0};
    std::atomic<bool> server_done{false};
    CountingServer server(ports.upstream, [&](int fd) {
        const Transfer t = send_and_receive(fd, total, 1000);
        server_sent = t.sent_hash;
        server_received = t.received_hash;
        server_count = t.received;
        server_done = true;
    });
    Daemon d(policy);
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 60s);
    const Transfer t = send_and_receive(c.get(), total, 7);
    c.reset();
    ASSERT_TRUE(t.ok) << d.log();
    EXPECT_EQ(t.received, total);
    ASSERT_TRUE(wait_until([&] { return server_done.load(); }, 60s));
    EXPECT_EQ(server_count.load(), total);
    EXPECT_EQ(server_received.load(), t.sent_hash) << "client -> upstream corrupted";
    EXPECT_EQ(t.received_hash, server_sent.load()) << "upstream -> client corrupted";
    EXPECT_EQ(server.accepted(), 1);
    // Both ends of the conversation ended cleanly: no session left on either side.
    const auto k = wait_tunnel_counters(
        d, "ks", [](const auto& x) { return x["sessions"] == 1 && x["sessions_active"] == 0; });
    EXPECT_EQ(k["sessions_active"], 0) << k << d.log();
}

TEST_F(KcpTunnel, Moves64MiBEachWayIntactWithAPsk) {
    bulk_both_ways(ports, kcp_policy(ports, write_key(dir)), 64u << 20);
}

// Plain KCP takes the same path without the AEAD; 16 MiB covers it.
TEST_F(KcpTunnel, Moves16MiBEachWayIntactWithoutAKey) {
    bulk_both_ways(ports, kcp_policy(ports, ""), 16u << 20);
}

TEST_F(KcpTunnel, ClientHalfCloseReachesUpstreamAndTheReplyStillFlows) {
    // The upstream answers only after EOF: a tunnel that ends both directions at the first FIN
    // loses the reply.
    CountingServer server(ports.upstream, [](int fd) {
        std::string got;
        if (!read_to_eof(fd, got)) return;
        std::string reply = "got " + std::to_string(got.size()) + " bytes: " + got;
        reply += std::string(3 << 20, 'r');
        write_all(fd, reply.data(), reply.size());
    });
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 30s);
    ASSERT_TRUE(write_all(c.get(), "hello", 5));
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    std::string reply;
    ASSERT_TRUE(read_to_eof(c.get(), reply)) << d.log();
    EXPECT_EQ(reply.substr(0, 20), "got 5 bytes: hellorr");
    EXPECT_EQ(reply.size(), 18u + (3u << 20));
}

TEST_F(KcpTunnel, UpstreamHalfCloseReachesTheClientWhichCanStillSend) {
    // The upstream speaks first and closes its side; it then reads what the client sends.
    std::atomic<bool> done{false};
    std::string received;
    CountingServer server(ports.upstream, [&](int fd) {
        const std::string banner = "banner then FIN";
        write_all(fd, banner.data(), banner.size());
        ::shutdown(fd, SHUT_WR);
        read_to_eof(fd, received);
        done = true;
    });
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 30s);
    std::string banner;
    ASSERT_TRUE(read_to_eof(c.get(), banner)) << d.log();  // the upstream's FIN arrived
    EXPECT_EQ(banner, "banner then FIN");
    const std::string late(1 << 20, 'x');
    ASSERT_TRUE(write_all(c.get(), late.data(), late.size()));
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    ASSERT_TRUE(wait_until([&] { return done.load(); }, 30s)) << d.log();
    EXPECT_EQ(received, late);
}

// The client's host dies after its FIN (the link is cut): the server ends the closing
// conversation a third of idle_timeout after it last heard the client (9 s: 3 s), not at the idle
// timeout, and closes its upstream connection, which is streaming a reply into the silence.
TEST_F(KcpTunnel, ClosingConversationWhosePeerVanishedEndsAtTheClosingBound) {
    using Steady = std::chrono::steady_clock;
    constexpr auto kBound = 3s;  // idle_timeout 9 s / 3
    std::atomic<bool> got_fin{false}, reply{false}, upstream_closed{false};
    std::atomic<Steady::rep> closed_at{0};
    CountingServer server(ports.upstream, [&](int fd) {
        std::string got;
        if (!read_to_eof(fd, got) || got != "request") return;
        got_fin = true;
        if (!wait_until([&] { return reply.load(); }, 20s)) return;
        // Writes until the connection fails: the tunnel server's close (with our unread bytes in
        // its buffer, or our bytes arriving after it) resets it.
        const std::string chunk(64 << 10, 'r');
        const auto give_up = Steady::now() + 30s;
        while (Steady::now() < give_up) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, 100) < 0 && errno != EINTR) return;
            if (p.revents & (POLLERR | POLLHUP)) break;
            if (!(p.revents & POLLOUT)) continue;
            if (::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
                errno != EAGAIN && errno != EINTR)
                break;
        }
        closed_at = Steady::now().time_since_epoch().count();
        upstream_closed = true;
    });
    lossy::Relay relay(relay_to(ports.server));
    ports.path = relay.port();
    Daemon d(kcp_policy(ports, write_key(dir), "",
                        ", \"idle_timeout\": \"9s\", \"log_connections\": true"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    ASSERT_TRUE(write_all(c.get(), "request", 7));
    const auto fin_at = Steady::now();  // the server hears the client no earlier than this
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    ASSERT_TRUE(wait_until([&] { return got_fin.load(); }, 20s)) << d.log();
    relay.cut();  // the server hears the client no later than this
    const auto cut_at = Steady::now();
    reply = true;
    ASSERT_TRUE(wait_until([&] { return upstream_closed.load(); }, kBound + 2s))
        << "the upstream connection outlived the closing bound\n"
        << d.log();
    const Steady::time_point closed{Steady::duration(closed_at.load())};
    EXPECT_GE(closed - fin_at, kBound - 100ms) << "ended before the bound: for another reason?";
    EXPECT_LE(closed - cut_at, kBound + 2s);
    EXPECT_TRUE(d.wait_log("expired (peer silent while closing)", 5s)) << d.log();
    // The worker counts it no longer: the conversation and the proxy's active connections.
    const auto k = wait_tunnel_counters(
        d, "ks", [](const auto& x) { return x["sessions"] == 1 && x["sessions_active"] == 0; });
    EXPECT_EQ(k["sessions_active"], 0) << k << d.log();
    nlohmann::json counters;
    EXPECT_TRUE(wait_until([&] {
        counters = proxy_counters(d, "ks");
        return counters.contains("active") && counters["active"] == 0;
    })) << counters;
    EXPECT_GT(relay.counters().dropped, 0u);
}

TEST_F(KcpTunnel, Serves100ConcurrentConnections) {
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    constexpr int kConnections = 100;
    std::vector<unique_fd> conns;
    for (int i = 0; i < kConnections; ++i) {
        conns.push_back(connect_tcp(ports.client, 20s));
        ASSERT_TRUE(conns.back()) << i;
        set_timeouts(conns.back().get(), 30s);
    }
    // All open at once, each with its own bytes.
    for (int i = 0; i < kConnections; ++i) {
        const std::string msg = "connection " + std::to_string(i) + std::string(1000 + i, '.');
        ASSERT_TRUE(write_all(conns[i].get(), msg.data(), msg.size()));
        ASSERT_EQ(::shutdown(conns[i].get(), SHUT_WR), 0);
    }
    for (int i = 0; i < kConnections; ++i) {
        std::string back;
        ASSERT_TRUE(read_to_eof(conns[i].get(), back)) << i << d.log();
        EXPECT_EQ(back, "connection " + std::to_string(i) + std::string(1000 + i, '.')) << i;
    }
    EXPECT_EQ(server.accepted(), kConnections);
    const auto k =
        wait_tunnel_counters(d, "ks", [](const auto& x) { return x["sessions"] == kConnections; });
    EXPECT_EQ(k["sessions"], kConnections) << k;
}

void lossy_transfer(KcpPorts ports, const TempDir& dir, double loss, size_t total) {
    lossy::Options o = relay_to(ports.server);
    o.record = false;
    o.drop = loss;
    o.duplicate = loss / 4;
    o.reorder = loss / 2;
    o.seed = 42;
    lossy::Relay relay(o);
    ports.path = relay.port();
    bulk_both_ways(ports, kcp_policy(ports, write_key(dir)), total);
    EXPECT_GT(relay.counters().dropped, 0u);
}

TEST_F(KcpTunnel, Survives5PercentLossDuplicatesAndReordering) {
    lossy_transfer(ports, dir, 0.05, 64u << 20);
}

TEST_F(KcpTunnel, Survives20PercentLossDuplicatesAndReordering) {
    lossy_transfer(ports, dir, 0.20, 64u << 20);
}

TEST_F(KcpTunnel, RekeysMidTransfer) {
    // A low rekey_after moves both directions through many epochs during one transfer; the tap
    // shows the epochs (bytes 6-9 of a sealed datagram) the client actually used.
    lossy::Relay relay(relay_to(ports.server));
    ports.path = relay.port();
    const std::string rekey = ", \"kcp\": {\"rekey_after\": 64}";
    bulk_both_ways(ports, kcp_policy(ports, write_key(dir), rekey, rekey), 4u << 20);
    uint32_t max_epoch = 0;
    for (const std::string& d : relay.client_datagrams()) {
        if (d.size() < 18 || d[1] != 3) continue;  // SEGMENTS only
        uint32_t epoch = 0;
        for (int i = 3; i >= 0; --i) epoch = epoch << 8 | static_cast<uint8_t>(d[6 + i]);
        max_epoch = std::max(max_epoch, epoch);
    }
    EXPECT_GT(max_epoch, 10u);
}

TEST_F(KcpTunnel, BothWorkersAreSandboxed) {
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    for (const char* name : {"kc", "ks"}) {
        const pid_t w = worker_of(d, name);
        ASSERT_GT(w, 0) << name;
        EXPECT_EQ(status_field(w, "CapEff"), "0000000000000000") << name;
        EXPECT_EQ(status_field(w, "NoNewPrivs"), "1") << name;
        EXPECT_EQ(status_field(w, "Seccomp"), "2") << name;
        // Not dumpable: /proc/PID/fd and the memory of a worker holding the PSK are root's.
        struct stat st {};
        ASSERT_EQ(::stat(("/proc/" + std::to_string(w) + "/fd").c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, 0u) << name;
    }
    // The key is in no log line and no status output.
    const CommandResult r = run_command(
        {bin_dir() + "/pf-proxyctl", "--control", d.control_path(), "status", "--json"});
    EXPECT_EQ(r.output.find(kKcpKeyHex), std::string::npos);
    EXPECT_EQ(d.log().find(kKcpKeyHex), std::string::npos);
}

// The kinds' default socket buffers (4 MiB: more than the burst of one 1024-datagram window,
// where the kernel's default holds about 150 datagrams) are what the workers' UDP sockets have:
// kcp-server's handed-over socket and kcp-client's per-connection socket.
TEST_F(KcpTunnel, WorkersUdpSocketsHaveTheDefaultBuffers) {
    const auto sysctl = [](const char* name) {
        std::ifstream f(std::string("/proc/sys/net/core/") + name);
        long v = 0;
        f >> v;
        return v;
    };
    const long rmem_max = sysctl("rmem_max"), wmem_max = sysctl("wmem_max");
    PFP_REQUIRE(std::min(rmem_max, wmem_max) >
                        std::max(sysctl("rmem_default"), sysctl("wmem_default"))
                    ? ""
                    : "net.core.rmem_max/wmem_max above the defaults (else a 4 MiB request "
                      "cannot be told from none)");
    // The kernel caps a request at the sysctl maximum, and reports twice what it grants.
    const long want_receive = 2 * std::min(4L << 20, rmem_max);
    const long want_send = 2 * std::min(4L << 20, wmem_max);
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, ""));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(write_all(c.get(), "ping", 4));
    char echo[4];
    ASSERT_EQ(::recv(c.get(), echo, sizeof echo, MSG_WAITALL), 4) << d.log();  // the socket exists
    for (const char* name : {"kc", "ks"}) {
        const pid_t w = worker_of(d, name);
        ASSERT_GT(w, 0) << name;
        const auto buffers = udp_socket_buffers(w);
        ASSERT_EQ(buffers.size(), 1u) << name;
        EXPECT_EQ(buffers[0].receive, want_receive) << name;
        EXPECT_EQ(buffers[0].send, want_send) << name;
    }
}

TEST_F(KcpTunnel, KilledServerWorkerIsRestartedAndServesNewConnections) {
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const pid_t victim = worker_of(d, "ks");
    ASSERT_GT(victim, 0);
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    ASSERT_TRUE(d.wait_log("killed by signal SIGKILL")) << d.log();
    ASSERT_TRUE(wait_until([&] {
        const pid_t w = worker_of(d, "ks");
        return w > 0 && w != victim && status_field(w, "Seccomp") == "2";
    })) << d.log();
    ASSERT_TRUE(d.wait_log("ks/0: kcp-server worker ready", 20s, 2)) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 30s);
    ASSERT_TRUE(write_all(c.get(), "after restart", 13));
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    std::string back;
    ASSERT_TRUE(read_to_eof(c.get(), back)) << d.log();
    EXPECT_EQ(back, "after restart");
}

TEST_F(KcpTunnel, RefusedUpstreamEndsTheClientsConnection) {
    // Nothing listens on the upstream port: the server's connect fails, its CLOSE ends the
    // conversation, and the client's TCP connection ends with it.
    Daemon d(kcp_policy(ports, write_key(dir), "", ", \"connect_timeout\": \"5s\""));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(write_all(c.get(), "anyone?", 7));
    std::string got;
    const std::string how = read_until_end(c.get(), got);
    EXPECT_TRUE(how == "eof" || how == "reset") << how << d.log();
    EXPECT_EQ(got, "");
    EXPECT_TRUE(d.wait_log("failed to connect to TCP endpoint tcp:127.0.0.1:")) << d.log();
    const auto k = wait_tunnel_counters(d, "ks", [](const auto& x) {
        return x["connect_failures"] == 1 && x["sessions_active"] == 0;
    });
    EXPECT_EQ(k["connect_failures"], 1) << k;
}

TEST_F(KcpTunnel, StatisticsLinesNameTheConversation) {
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, write_key(dir), ", \"statistics\": true"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 30s);
    const Transfer t = send_and_receive(c.get(), 1u << 20, 3);
    ASSERT_TRUE(t.ok);
    EXPECT_TRUE(d.wait_log("kc/0: stats conv=")) << d.log();
    const std::string log = d.log();
    const size_t at = log.find("kc/0: stats conv=");
    ASSERT_NE(at, std::string::npos);
    const std::string line = log.substr(at, log.find('\n', at) - at);
    for (const char* field : {" rtt=", " srtt=", " cwnd=", " sent=", " recv=", " retrans="})
        EXPECT_NE(line.find(field), std::string::npos) << line;
}

}  // namespace
