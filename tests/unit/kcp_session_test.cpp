// A tunnelled stream end to end without sockets (common/kcp/tunnel_session.hpp): a handshake, then
// client and server sessions over a seeded path that drops, duplicates, reorders and corrupts
// datagrams, with keys rolling over every few datagrams. Both byte streams must arrive intact and
// in order, each followed by its FIN; corrupted datagrams are refused by the channel, never
// delivered; keepalives, the idle and closing timeouts and CLOSE end conversations as documented.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "common/kcp/client_handshake.hpp"
#include "common/kcp/server_handshake.hpp"
#include "common/kcp/tunnel_session.hpp"

namespace pfp::kcp {
namespace {

using Bytes = std::vector<uint8_t>;

// One direction of the simulated network. Reordering is bounded, as on real paths: a datagram
// held back is overtaken by at most 16 later ones (a sealed conversation's replay window is 64).
struct Path final : DatagramSink {
    std::mt19937 rng;
    double loss = 0, duplicate = 0, corrupt = 0, reorder = 0;
    uint64_t clock = 0;
    std::multimap<uint64_t, Bytes> in_flight;
    std::vector<std::pair<int, Bytes>> held;  // (datagrams still to overtake it, datagram)
    uint64_t sent = 0, corrupted = 0, reordered = 0;
    std::map<uint8_t, uint64_t> types;  // datagram type -> count

    explicit Path(uint32_t seed) : rng(seed) {}
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
    void deliver(Bytes b) {
        in_flight.emplace(clock + 2, std::move(b));
        for (auto it = held.begin(); it != held.end();) {
            if (--it->first > 0) {
                ++it;
                continue;
            }
            in_flight.emplace(clock + 2, std::move(it->second));
            it = held.erase(it);
        }
    }
    void send_datagram(std::span<const uint8_t> d) override {
        ++sent;
        ++types[d[1]];
        if (chance(loss)) return;
        const int copies = chance(duplicate) ? 2 : 1;
        for (int i = 0; i < copies; ++i) {
            Bytes b(d.begin(), d.end());
            if (chance(corrupt)) {
                b[rng() % b.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
                ++corrupted;
            }
            if (chance(reorder)) {
                ++reordered;
                held.emplace_back(1 + static_cast<int>(rng() % 16), std::move(b));
            } else {
                deliver(std::move(b));
            }
        }
    }
    // Whatever is still held goes out after a while, as a late straggler.
    void release() {
        for (auto& [n, b] : held) in_flight.emplace(clock + 5, std::move(b));
        held.clear();
    }
};

struct Handshaken {
    uint32_t conv = 0;
    SessionSecrets secrets;
};

Handshaken Handshake() {
    Key psk{};
    psk[0] = 42;
    Nonce nonce{};
    EXPECT_TRUE(fill_random(nonce));
    ClientHandshake client(Security::psk, psk, nonce, 1700000000, {}, 0);
    ServerHandshakeConfig c;
    c.psk = psk;
    ServerHandshake server(c);
    SystemRandom random;
    const Bytes source{1, 2, 3};
    const HelloOutcome o = server.on_hello(client.hello(), source, 1700000000, random);
    EXPECT_EQ(o.verdict, HelloVerdict::accepted);
    EXPECT_EQ(client.on_welcome(o.answer), ClientHandshake::Answer::accepted);
    EXPECT_EQ(client.secrets().client_to_server, o.secrets.client_to_server);
    return {client.conv(), client.secrets()};
}

Bytes Stream(size_t size, uint8_t salt) {
    Bytes b(size);
    uint32_t x = salt * 2654435761u + 1;
    for (auto& v : b) {
        x = x * 1103515245u + 12345u;
        v = static_cast<uint8_t>(x >> 16);
    }
    return b;
}

struct Tunnel {
    TunnelConfig config;
    Handshaken hs = Handshake();
    uint32_t now = UINT32_MAX - 500;
    uint64_t clock = 0;
    Path to_server, to_client;
    TunnelSession client, server;
    Bytes up, down;  // what each side writes
    size_t up_written = 0, down_written = 0;
    Bytes got_up, got_down;  // what each side read
    bool fin_up = false, fin_down = false;

    Tunnel(const TunnelConfig& c, uint32_t seed, double loss, double corrupt, size_t bytes)
        : config(c),
          to_server(seed),
          to_client(seed + 1),
          client(Role::client, hs.conv, Security::psk, hs.secrets, c, now),
          server(Role::server, hs.conv, Security::psk, hs.secrets, c, now),
          up(Stream(bytes, 1)),
          down(Stream(bytes, 2)) {
        for (Path* p : {&to_server, &to_client}) {
            p->loss = loss;
            p->duplicate = loss / 2;
            p->corrupt = corrupt;
            p->reorder = loss;
        }
    }

    void write(TunnelSession& s, const Bytes& data, size_t& written) {
        while (written < data.size() && s.writable()) {
            size_t n = 0;
            const size_t want = std::min<size_t>(7000, data.size() - written);
            if (s.write({data.data() + written, want}, n) != Status::ok) break;
            written += n;
        }
        if (written == data.size() && !s.fin_sent()) {
            EXPECT_EQ(s.shutdown_write(), Status::ok);
        }
    }
    void read(TunnelSession& s, Bytes& into, bool& fin) {
        Bytes chunk;
        for (;;) {
            const auto r = s.read(chunk);
            if (r == TunnelSession::Read::data) {
                into.insert(into.end(), chunk.begin(), chunk.end());
                continue;
            }
            if (r == TunnelSession::Read::fin) fin = true;
            return;
        }
    }

    bool go(uint64_t limit_ms) {
        while (!(client.finished() && server.finished() && fin_up && fin_down)) {
            if (clock > limit_ms || client.state() != TunnelSession::State::open ||
                server.state() != TunnelSession::State::open)
                return false;
            for (auto [path, to] :
                 {std::pair{&to_server, &server}, std::pair{&to_client, &client}}) {
                while (!path->in_flight.empty() && path->in_flight.begin()->first <= clock) {
                    to->on_datagram(path->in_flight.begin()->second, now);
                    path->in_flight.erase(path->in_flight.begin());
                }
            }
            write(client, up, up_written);
            write(server, down, down_written);
            read(server, got_up, fin_up);
            read(client, got_down, fin_down);
            client.flush(now, to_server);
            server.flush(now, to_client);
            to_server.release();
            to_client.release();
            uint64_t next = clock + std::max(diff32(client.next_deadline(), now), 1);
            next =
                std::min<uint64_t>(next, clock + std::max(diff32(server.next_deadline(), now), 1));
            for (const Path* p : {&to_server, &to_client})
                if (!p->in_flight.empty())
                    next = std::min(next, std::max(p->in_flight.begin()->first, clock + 1));
            now += static_cast<uint32_t>(next - clock);
            clock = next;
            to_server.clock = to_client.clock = clock;
        }
        return true;
    }
};

TunnelConfig SmallEpochs() {
    TunnelConfig c;
    c.rekey_after = 64;  // many epochs within the run
    return c;
}

class KcpTunnelLossy : public ::testing::TestWithParam<double> {};

TEST_P(KcpTunnelLossy, StreamsBothWaysWithFinThroughLossCorruptionAndRekeys) {
    Tunnel r(SmallEpochs(), 7, GetParam(), 0.02, 2 << 20);
    ASSERT_TRUE(r.go(3600000)) << "client " << static_cast<int>(r.client.state()) << " server "
                               << static_cast<int>(r.server.state()) << " at " << r.clock << " ms, "
                               << r.got_up.size() << "/" << r.got_down.size() << " bytes";
    EXPECT_EQ(r.got_up, r.up);
    EXPECT_EQ(r.got_down, r.down);
    // Corruption happened and was refused by authentication, never delivered.
    EXPECT_GT(r.to_server.corrupted, 0u);
    EXPECT_GT(r.to_server.reordered, 0u);
    EXPECT_GT(r.server.channel().stats().forged + r.server.channel().stats().malformed +
                  r.server.channel().stats().bad_epoch + r.server.channel().stats().replayed,
              0u);
    EXPECT_GT(r.client.channel().send_epoch(), 10u);
    EXPECT_GT(r.server.channel().receive_epoch(), 10u);
}

INSTANTIATE_TEST_SUITE_P(Loss, KcpTunnelLossy, ::testing::Values(0.05, 0.20));

TEST(KcpTunnelSession, CleanPathAndHalfClose) {
    TunnelConfig c;
    Tunnel r(c, 3, 0, 0, 300000);
    r.down.clear();  // the server sends nothing but its FIN
    ASSERT_TRUE(r.go(600000));
    EXPECT_EQ(r.got_up, r.up);
    EXPECT_TRUE(r.got_down.empty());
    EXPECT_TRUE(r.fin_down);
    EXPECT_EQ(r.client.kcp().stats().timeouts, 0u);
}

// One step of two sessions on a lossless path: both flush, every datagram arrives at once.
void step_both(TunnelSession& client, TunnelSession& server, Path& to_server, Path& to_client,
               uint32_t now) {
    client.flush(now, to_server);
    server.flush(now, to_client);
    for (auto& [t, d] : to_server.in_flight)
        ASSERT_EQ(server.on_datagram(d, now), ChannelError::none);
    for (auto& [t, d] : to_client.in_flight)
        ASSERT_EQ(client.on_datagram(d, now), ChannelError::none);
    to_server.in_flight.clear();
    to_client.in_flight.clear();
}

// A session that hears nothing from `from` on: flushed at each of its own deadlines until it is
// no longer open (or `limit`); returns the time it ended.
uint32_t run_deaf(TunnelSession& s, Path& out, uint32_t from, uint32_t limit) {
    uint32_t now = from;
    while (s.state() == TunnelSession::State::open && now < limit) {
        now = s.next_deadline();
        s.flush(now, out);
    }
    return now;
}

TEST(KcpTunnelSession, KeepalivesWhileQuietIdleTimeoutWhenDeaf) {
    TunnelConfig c;
    c.keepalive_ms = 1000;
    c.idle_timeout_ms = 5000;
    Handshaken hs = Handshake();
    TunnelSession client(Role::client, hs.conv, Security::psk, hs.secrets, c, 0);
    TunnelSession server(Role::server, hs.conv, Security::psk, hs.secrets, c, 0);
    Path to_server(1), to_client(2);
    // Both sides quiet for 4.5 s, datagrams delivered: keepalives flow, nobody expires.
    for (uint32_t now = 0; now <= 4500; now += 100) {
        ASSERT_NO_FATAL_FAILURE(step_both(client, server, to_server, to_client, now));
    }
    EXPECT_EQ(to_server.types[static_cast<uint8_t>(Type::keepalive)], 4u);
    EXPECT_EQ(client.state(), TunnelSession::State::open);
    // Now the server hears nothing: it expires 5 s after the last datagram it heard.
    uint32_t now = run_deaf(server, to_client, 4500, 20000);
    EXPECT_EQ(server.state(), TunnelSession::State::expired);
    EXPECT_LE(now, 4500u + 5000u);
    EXPECT_GE(now, 4000u + 5000u);
}

TEST(KcpTunnelSession, ClosingConversationOutlivesItsBoundWhileHeardEndsByItWhenDeaf) {
    TunnelConfig c;
    c.keepalive_ms = 1000;
    c.idle_timeout_ms = 9000;
    c.closing_timeout_ms = 3000;
    Handshaken hs = Handshake();
    TunnelSession client(Role::client, hs.conv, Security::psk, hs.secrets, c, 0);
    TunnelSession server(Role::server, hs.conv, Security::psk, hs.secrets, c, 0);
    Path to_server(1), to_client(2);
    ASSERT_EQ(client.shutdown_write(), Status::ok);  // the client half-closes
    // 10 s, more than three closing bounds, with every datagram delivered: a half-closed
    // conversation whose peer is heard lasts (keepalives keep it).
    Bytes got;
    bool fin = false;
    for (uint32_t now = 0; now <= 10000; now += 100) {
        ASSERT_NO_FATAL_FAILURE(step_both(client, server, to_server, to_client, now));
        if (!fin && server.read(got) == TunnelSession::Read::fin) fin = true;
    }
    ASSERT_TRUE(fin);
    EXPECT_EQ(server.state(), TunnelSession::State::open);
    EXPECT_EQ(client.state(), TunnelSession::State::open);
    // Now the server hears nothing: it ends 3 s after the last datagram it heard, not 9 s.
    uint32_t now = run_deaf(server, to_client, 10000, 30000);
    EXPECT_EQ(server.state(), TunnelSession::State::expired);
    EXPECT_LE(now, 10000u + 3000u);
    EXPECT_GE(now, 9000u + 3000u);
    // The client's side closes too (its FIN went out): the same bound, deaf from 10 s.
    now = run_deaf(client, to_server, 10000, 30000);
    EXPECT_EQ(client.state(), TunnelSession::State::expired);
    EXPECT_LE(now, 10000u + 3000u);
    // A conversation with no FIN either way keeps the idle timeout (9 s).
    TunnelSession open(Role::server, hs.conv, Security::psk, hs.secrets, c, 0);
    now = run_deaf(open, to_client, 0, 30000);
    EXPECT_EQ(now, 9000u);
}

TEST(KcpTunnelSession, CloseReachesThePeerAndMalformedMessagesFail) {
    TunnelConfig c;
    Handshaken hs = Handshake();
    TunnelSession client(Role::client, hs.conv, Security::psk, hs.secrets, c, 0);
    TunnelSession server(Role::server, hs.conv, Security::psk, hs.secrets, c, 0);
    Path to_server(1);
    client.close();
    EXPECT_EQ(client.state(), TunnelSession::State::closed);
    client.flush(1, to_server);
    ASSERT_EQ(to_server.in_flight.size(), 1u);
    EXPECT_EQ(to_server.types[static_cast<uint8_t>(Type::close)], 1u);
    ASSERT_EQ(server.on_datagram(to_server.in_flight.begin()->second, 2), ChannelError::none);
    EXPECT_EQ(server.state(), TunnelSession::State::closed);
    size_t n = 0;
    EXPECT_EQ(server.write(Bytes(10), n), Status::broken);

    // A peer holding the key that sends a message with an unknown kind byte breaks the stream.
    TunnelSession victim(Role::server, hs.conv, Security::psk, hs.secrets, c, 0);
    Kcp rogue(hs.conv, c.kcp, 0);
    ASSERT_EQ(rogue.send(Bytes{7, 1, 2}), Status::ok);
    SecureChannel rogue_channel(Role::client, hs.conv, Security::psk, hs.secrets);
    struct Seal final : Output {
        SecureChannel* ch;
        std::vector<Bytes> out;
        void kcp_output(std::span<const uint8_t> d) override {
            Bytes b;
            ASSERT_EQ(ch->seal(Type::segments, d, b), ChannelError::none);
            out.push_back(b);
        }
    } seal;
    seal.ch = &rogue_channel;
    rogue.flush(0, seal);
    ASSERT_EQ(victim.on_datagram(seal.out.at(0), 1), ChannelError::none);
    Bytes out;
    EXPECT_EQ(victim.read(out), TunnelSession::Read::ended);
    EXPECT_EQ(victim.state(), TunnelSession::State::failed);
}

}  // namespace
}  // namespace pfp::kcp
