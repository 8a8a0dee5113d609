// Attacks on a kcp-server at the socket level, with the real pf-proxyd and workers: replayed and
// forged datagrams, a wrong key, a stale HELLO, a garbage flood. Each is observed where it would
// matter: the upstream's accept count, the bytes the upstream received, the answers (none) on the
// attacker's socket, and the drop counters `pf-proxyctl status` shows.
#include <gtest/gtest.h>

#include <random>

#include "common/kcp/client_tunnel.hpp"
#include "kcp_support.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using pfp::unique_fd;
namespace kcp = pfp::kcp;

namespace {

std::vector<uint8_t> key_bytes(const std::string& hex) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

// A genuine HELLO under `key_hex` (time shifted by `skew` seconds).
std::string hello(const std::string& key_hex, int64_t skew = 0) {
    kcp::SystemRandom random;
    const auto key = key_bytes(key_hex);
    const std::string early = "GET / HTTP/1.0\r\n\r\n";
    kcp::ClientTunnel t(kcp::Security::psk, key, kcp::TunnelConfig{}, 1350, random,
                        static_cast<uint64_t>(::time(nullptr) + skew),
                        std::span(reinterpret_cast<const uint8_t*>(early.data()), early.size()), 0);
    return std::string(t.hello().begin(), t.hello().end());
}

class KcpAttack : public ::testing::Test {
  protected:
    void SetUp() override {
        raise_nofile(16384);
        ports.server = free_udp_port();
    }
    KcpPorts ports;
    TempDir dir;
};

// One exchange through the tunnel on an open connection.
bool exchange(int fd, const std::string& msg) {
    if (!write_all(fd, msg.data(), msg.size())) return false;
    std::string back(msg.size(), '\0');
    return read_exact(fd, back.data(), back.size()) && back == msg;
}

TEST_F(KcpAttack, ReplayedHelloOpensNoSecondUpstreamConnection) {
    CountingServer server(ports.upstream, echo_until_eof);
    lossy::Relay tap(relay_to(ports.server));
    ports.path = tap.port();
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(exchange(c.get(), "first")) << d.log();
    const auto sent = tap.client_datagrams();
    ASSERT_FALSE(sent.empty());
    const std::string& hello_bytes = sent.front();
    ASSERT_EQ(hello_bytes[1], 1) << "the first datagram is the HELLO";
    // From the same address: a retransmission, answered with the same WELCOME, nothing opened.
    ASSERT_TRUE(tap.inject(hello_bytes));
    // From another address: a replay, dropped unanswered.
    unique_fd attacker = bind_udp(AF_INET);
    ASSERT_TRUE(send_udp(attacker.get(), AF_INET, ports.server, hello_bytes));
    const auto k = wait_tunnel_counters(d, "ks", [](const auto& x) {
        return x["dropped_handshake"] >= 1 && x["datagrams_in"] >= 3;
    });
    EXPECT_GE(k["dropped_handshake"], 1) << k;
    EXPECT_FALSE(recv_udp(attacker.get(), 0ms)) << "a replayed HELLO was answered";
    // A new genuine connection is the second the upstream sees: the replays added none.
    unique_fd c2 = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c2);
    set_timeouts(c2.get(), 20s);
    ASSERT_TRUE(exchange(c2.get(), "second")) << d.log();
    EXPECT_EQ(server.accepted(), 2);
    EXPECT_EQ(k["sessions"], 1) << k;
    ASSERT_TRUE(exchange(c.get(), "still open")) << d.log();
}

TEST_F(KcpAttack, ReplayedAndTamperedDataDatagramsAreRefused) {
    std::string upstream_got;
    std::atomic<bool> done{false};
    CountingServer server(ports.upstream, [&](int fd) {
        char buf[65536];
        for (;;) {
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            upstream_got.append(buf, static_cast<size_t>(n));
            if (!write_all(fd, buf, static_cast<size_t>(n))) break;
        }
        done = true;
    });
    lossy::Relay tap(relay_to(ports.server));
    ports.path = tap.port();
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(exchange(c.get(), "one")) << d.log();  // may ride in the HELLO
    ASSERT_TRUE(exchange(c.get(), "one more")) << d.log();
    // A SEGMENTS datagram that carried stream bytes: longer than header, one segment header and
    // the tag (an ACK alone).
    std::string data;
    ASSERT_TRUE(wait_until([&] {
        for (const std::string& x : tap.client_datagrams())
            if (x[1] == 3 && x.size() > 18 + 24 + 16) data = x;
        return !data.empty();
    }));
    const auto before = tunnel_counters(d, "ks");
    // Replayed as it was: the replay window refuses it before any decryption.
    ASSERT_TRUE(tap.inject(data));
    // Tampered: a fresh seq (so the window lets it through to the tag) and a flipped body byte.
    std::string forged = data;
    forged[10] = static_cast<char>(forged[10] + 100);
    forged[20] = static_cast<char>(forged[20] ^ 0x5a);
    ASSERT_TRUE(tap.inject(forged));
    const uint64_t refused_before = before.value("dropped_refused", 0);
    const auto k = wait_tunnel_counters(
        d, "ks", [&](const auto& x) { return x["dropped_refused"] >= refused_before + 2; });
    EXPECT_GE(k["dropped_refused"], refused_before + 2) << k;
    // The conversation goes on, and the upstream received each byte once.
    ASSERT_TRUE(exchange(c.get(), "two")) << d.log();
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    std::string rest;
    ASSERT_TRUE(read_to_eof(c.get(), rest));
    ASSERT_TRUE(wait_until([&] { return done.load(); }));
    EXPECT_EQ(upstream_got, "oneone moretwo");
}

// A HELLO the server must refuse: no answer, no upstream connection, a handshake drop.
void expect_refused_hello(const KcpPorts& ports, const Daemon& d, const CountingServer& server,
                          const std::string& bytes) {
    unique_fd attacker = bind_udp(AF_INET);
    ASSERT_TRUE(send_udp(attacker.get(), AF_INET, ports.server, bytes));
    const auto k =
        wait_tunnel_counters(d, "ks", [](const auto& x) { return x["dropped_handshake"] >= 1; });
    EXPECT_EQ(k["dropped_handshake"], 1) << k;
    EXPECT_EQ(k["sessions"], 0) << k;
    EXPECT_FALSE(recv_udp(attacker.get(), 0ms)) << "a refused HELLO was answered";
    EXPECT_EQ(server.accepted(), 0);
}

TEST_F(KcpAttack, WrongPskOpensNothing) {
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::string wrong = kKcpKeyHex;
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    expect_refused_hello(ports, d, server, hello(wrong));
}

TEST_F(KcpAttack, StaleTimestampOpensNothing) {
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    expect_refused_hello(ports, d, server, hello(kKcpKeyHex, -1000));
}

TEST_F(KcpAttack, GarbageFloodIsCountedAndANewSessionIsServedAfterwards) {
    CountingServer server(ports.upstream, echo_until_eof);
    Daemon d(kcp_policy(ports, write_key(dir)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    // A bounded flood: random bytes, plus random bodies behind valid version/type bytes.
    unique_fd attacker = bind_udp(AF_INET);
    std::mt19937_64 rng(7);
    constexpr int kFlood = 20000;
    for (int i = 0; i < kFlood; ++i) {
        std::string g(1 + rng() % 1400, '\0');
        for (char& ch : g) ch = static_cast<char>(rng());
        if (i % 2) {
            g[0] = 1;
            g[1] = static_cast<char>(1 + rng() % 5);
        }
        send_udp(attacker.get(), AF_INET, ports.server, g);
    }
    const auto k = wait_tunnel_counters(d, "ks", [](const auto& x) {
        return x["dropped_malformed"] > 0 && x["dropped_unknown"] > 0;
    });
    EXPECT_GT(k["dropped_malformed"], 0) << k;
    EXPECT_GT(k["dropped_unknown"], 0) << k;
    EXPECT_EQ(k["sessions"], 0) << k;
    EXPECT_FALSE(recv_udp(attacker.get(), 0ms)) << "garbage was answered";
    unique_fd c = connect_tcp(ports.client, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(exchange(c.get(), "after the flood")) << d.log();
    EXPECT_EQ(server.accepted(), 1);
    // The status text names the drops too.
    const CommandResult r =
        run_command({bin_dir() + "/pf-proxyctl", "--control", d.control_path(), "status"});
    EXPECT_NE(r.output.find("ks: conversations"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(" malformed, "), std::string::npos) << r.output;
}

}  // namespace
