// The kcp-server's datagram dispatch without sockets (common/kcp/server_sessions.hpp): a HELLO
// opens one conversation (its duplicates get the same WELCOME and nothing more, even after the
// conversation ended); sealed datagrams reach only the conversation of their source and conv;
// garbage and forged handshakes are dropped by reason and never answered; the per-source HELLO
// rate and the session limits hold; the timer wheel flushes sessions and reports idle ones.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "common/kcp/client_handshake.hpp"
#include "common/kcp/server_sessions.hpp"

namespace pfp::kcp {
namespace {

using Bytes = std::vector<uint8_t>;

struct Sent final : ServerOutput {
    std::vector<std::pair<Bytes, Bytes>> datagrams;  // (to, datagram)
    void send_to(std::span<const uint8_t> to, std::span<const uint8_t> d) override {
        datagrams.emplace_back(Bytes(to.begin(), to.end()), Bytes(d.begin(), d.end()));
    }
};

const Key kPsk = [] {
    Key k{};
    k[5] = 5;
    return k;
}();
constexpr uint64_t kUnix = 1800000000;

ServerSessions Server(const ServerLimits& limits = {}) {
    ServerHandshakeConfig h;
    h.psk = kPsk;
    TunnelConfig t;
    t.idle_timeout_ms = 1000;
    t.keepalive_ms = 300;
    return ServerSessions(h, t, limits, 0);
}

ClientHandshake Client(uint8_t n, const Key& psk = kPsk, const Bytes& early = {}) {
    Nonce nonce{};
    nonce[0] = n;
    return ClientHandshake(Security::psk, psk, nonce, kUnix, early, 0);
}

TEST(KcpServerSessions, HelloOpensOnceAndDuplicatesGetTheSameAnswer) {
    ServerSessions server = Server();
    SystemRandom random;
    Sent out;
    const Bytes source{10, 0, 0, 1};
    ClientHandshake client = Client(1, kPsk, Bytes{'h', 'i'});
    auto d = server.on_datagram(client.hello(), source, 0, kUnix, random, out);
    ASSERT_EQ(d.kind, ServerSessions::Dispatch::Kind::opened);
    EXPECT_EQ(Bytes(d.early_data.begin(), d.early_data.end()), (Bytes{'h', 'i'}));
    ASSERT_EQ(out.datagrams.size(), 1u);
    EXPECT_EQ(out.datagrams[0].first, source);
    const Bytes welcome = out.datagrams[0].second;
    ASSERT_EQ(client.on_welcome(welcome), ClientHandshake::Answer::accepted);
    const auto id = d.id;

    d = server.on_datagram(client.hello(), source, 10, kUnix, random, out);
    EXPECT_EQ(d.kind, ServerSessions::Dispatch::Kind::answered);
    EXPECT_TRUE(d.early_data.empty());
    ASSERT_EQ(out.datagrams.size(), 2u);
    EXPECT_EQ(out.datagrams[1].second, welcome);
    EXPECT_EQ(server.sessions(), 1u);

    // The client's sealed datagrams reach the session; the same bytes from elsewhere do not.
    TunnelConfig t;
    TunnelSession mine(Role::client, client.conv(), Security::psk, client.secrets(), t, 0);
    size_t n = 0;
    ASSERT_EQ(mine.write(Bytes{1, 2, 3}, n), Status::ok);
    struct Capture final : DatagramSink {
        std::vector<Bytes> d;
        void send_datagram(std::span<const uint8_t> b) override {
            d.emplace_back(b.begin(), b.end());
        }
    } wire;
    mine.flush(0, wire);
    ASSERT_EQ(wire.d.size(), 1u);
    EXPECT_EQ(server.on_datagram(wire.d[0], Bytes{10, 0, 0, 2}, 20, kUnix, random, out).reason,
              DropReason::unknown);
    d = server.on_datagram(wire.d[0], source, 20, kUnix, random, out);
    ASSERT_EQ(d.kind, ServerSessions::Dispatch::Kind::delivered);
    EXPECT_EQ(d.id, id);
    Bytes got;
    ASSERT_EQ(server.session(id)->read(got), TunnelSession::Read::data);
    EXPECT_EQ(got, (Bytes{1, 2, 3}));
    EXPECT_EQ(server.on_datagram(wire.d[0], source, 21, kUnix, random, out).reason,
              DropReason::refused);  // a replay

    // After the conversation ends, a late duplicate HELLO is dropped, not answered or reopened.
    server.remove(id);
    const size_t sent = out.datagrams.size();
    EXPECT_EQ(server.on_datagram(client.hello(), source, 30, kUnix, random, out).reason,
              DropReason::stale_duplicate);
    EXPECT_EQ(out.datagrams.size(), sent);
    EXPECT_EQ(server.sessions(), 0u);
}

TEST(KcpServerSessions, GarbageAndForgeriesAreDroppedUnansweredAndKeepNoSessions) {
    ServerLimits limits;
    limits.max_sources = 64;
    ServerSessions server = Server(limits);
    SystemRandom random;
    Sent out;
    std::mt19937 rng(3);
    Key wrong = kPsk;
    wrong[0] ^= 1;
    for (int i = 0; i < 8000; ++i) {
        const Bytes source{1, static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng())};
        Bytes d;
        switch (i % 4) {
            case 0:
                d = Client(static_cast<uint8_t>(i), wrong).hello();
                break;  // wrong PSK
            case 1:
                d = Bytes(rng() % 200);
                for (auto& b : d) b = static_cast<uint8_t>(rng());
                break;
            case 2:
                d = Bytes{1, 3, 1, 2, 3, 4};
                d.resize(60, 0x77);
                break;  // sealed, no session
            case 3:
                d = Client(static_cast<uint8_t>(i)).hello();
                d[40] ^= 1;
                break;  // tampered
        }
        EXPECT_EQ(server.on_datagram(d, source, static_cast<uint32_t>(i), kUnix, random, out).kind,
                  ServerSessions::Dispatch::Kind::dropped);
    }
    EXPECT_TRUE(out.datagrams.empty());
    EXPECT_EQ(server.sessions(), 0u);
    EXPECT_LE(server.tracked_sources(), 64u);
    EXPECT_GT(server.dropped(DropReason::handshake), 0u);
    EXPECT_GT(server.dropped(DropReason::malformed) + server.dropped(DropReason::unknown), 0u);
    EXPECT_GT(server.dropped(DropReason::full), 0u);  // the source table filled up
    // Once their buckets refill, sources with no conversation are forgotten.
    server.expire_handshakes(kUnix, 100000);
    EXPECT_EQ(server.tracked_sources(), 0u);
}

TEST(KcpServerSessions, HelloRatePerSourceIsLimitedBeforeAnyCrypto) {
    ServerLimits limits;
    limits.hello_burst = 5;
    limits.hellos_per_second = 10;
    ServerSessions server = Server(limits);
    SystemRandom random;
    Sent out;
    const Bytes source{9};
    Key wrong = kPsk;
    wrong[1] ^= 1;
    const Bytes forged = Client(1, wrong).hello();
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(server.on_datagram(forged, source, 0, kUnix, random, out).reason,
                  DropReason::handshake);
    EXPECT_EQ(server.on_datagram(forged, source, 0, kUnix, random, out).reason,
              DropReason::rate_limited);
    // A genuine HELLO is limited too, until the bucket refills (10 per second: 100 ms each).
    EXPECT_EQ(server.on_datagram(Client(2).hello(), source, 50, kUnix, random, out).reason,
              DropReason::rate_limited);
    EXPECT_EQ(server.on_datagram(Client(2).hello(), source, 100, kUnix, random, out).kind,
              ServerSessions::Dispatch::Kind::opened);
    // Another source has its own bucket.
    EXPECT_EQ(server.on_datagram(forged, Bytes{8}, 100, kUnix, random, out).reason,
              DropReason::handshake);
}

TEST(KcpServerSessions, SessionLimitsHold) {
    ServerLimits limits;
    limits.max_sessions = 3;
    limits.max_per_source = 2;
    ServerSessions server = Server(limits);
    SystemRandom random;
    Sent out;
    using Kind = ServerSessions::Dispatch::Kind;
    EXPECT_EQ(server.on_datagram(Client(1).hello(), Bytes{1}, 0, kUnix, random, out).kind,
              Kind::opened);
    EXPECT_EQ(server.on_datagram(Client(2).hello(), Bytes{1}, 0, kUnix, random, out).kind,
              Kind::opened);
    EXPECT_EQ(server.on_datagram(Client(3).hello(), Bytes{1}, 0, kUnix, random, out).reason,
              DropReason::full);  // per source
    EXPECT_EQ(server.on_datagram(Client(4).hello(), Bytes{2}, 0, kUnix, random, out).kind,
              Kind::opened);
    EXPECT_EQ(server.on_datagram(Client(5).hello(), Bytes{3}, 0, kUnix, random, out).reason,
              DropReason::full);  // in all
    EXPECT_EQ(server.sessions(), 3u);
    EXPECT_EQ(out.datagrams.size(), 3u);  // the refused got no answer
}

TEST(KcpServerSessions, TimersFlushSessionsAndReportIdleOnes) {
    ServerSessions server = Server();
    SystemRandom random;
    Sent out;
    const auto d = server.on_datagram(Client(1).hello(), Bytes{7}, 0, kUnix, random, out);
    ASSERT_EQ(d.kind, ServerSessions::Dispatch::Kind::opened);
    out.datagrams.clear();
    std::vector<ServerSessions::Id> ended;
    uint32_t now = 0;
    while (ended.empty() && now < 10000) {
        ASSERT_TRUE(server.next_deadline());
        now = *server.next_deadline();
        server.tick(now, out, ended);
    }
    // Keepalives every 300 ms went to the client's address; 1 s of silence ended it.
    EXPECT_EQ(ended, (std::vector<ServerSessions::Id>{d.id}));
    EXPECT_EQ(server.session(d.id)->state(), TunnelSession::State::expired);
    EXPECT_GE(now, 1000u);
    EXPECT_LE(now, 1001u);
    EXPECT_EQ(out.datagrams.size(), 3u);
    for (const auto& [to, datagram] : out.datagrams) {
        EXPECT_EQ(to, Bytes{7});
        EXPECT_EQ(datagram[1], static_cast<uint8_t>(Type::keepalive));
    }
    server.remove(d.id);
    EXPECT_FALSE(server.next_deadline());
}

}  // namespace
}  // namespace pfp::kcp
