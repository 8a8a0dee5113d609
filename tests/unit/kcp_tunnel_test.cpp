// The KCP tunnel's v1 handshake and sealed datagrams (docs/kcp-tunnel.md): golden bytes for fixed
// keys and nonces (computed by a separate implementation of the document); a HELLO is answered
// once and its duplicates get the same bytes; tampering anywhere, a wrong PSK, an old timestamp,
// a replay, a reflected datagram and a wrong security mode are refused and never answered; keys
// roll over epochs with reordering across the boundary.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/kcp/client_handshake.hpp"
#include "common/kcp/secure_channel.hpp"
#include "common/kcp/server_handshake.hpp"

namespace pfp::kcp {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes Hex(const std::string& h) {
    Bytes b;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        b.push_back(static_cast<uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return b;
}
template <typename T>
T Filled(uint8_t first) {
    T t{};
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint8_t>(first + i);
    return t;
}

// Hands out a fixed server nonce, then a fixed conversation id (little-endian), then repeats.
struct FixedRandom final : RandomSource {
    Nonce nonce = Filled<Nonce>(0x50);
    uint32_t conv = 0x11223344;
    int calls = 0;
    bool fill(std::span<uint8_t> out) noexcept override {
        if (out.size() == kNonceSize) {
            std::copy(nonce.begin(), nonce.end(), out.begin());
            nonce[0]++;  // the next handshake gets another nonce
        } else {
            for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(conv >> (8 * i));
            conv++;
        }
        ++calls;
        return true;
    }
};

const Key kPsk = Filled<Key>(0);
const Nonce kClientNonce = Filled<Nonce>(0xc0);
constexpr uint64_t kTime = 1700000000;
const std::string kEarly = "GET / HTTP/1.0\r\n\r\n";
const Bytes kSource{10, 0, 0, 1, 0x1f, 0x90};

ClientHandshake Client(const Key& psk = kPsk, uint64_t time = kTime,
                       const Nonce& n = kClientNonce) {
    return ClientHandshake(Security::psk, psk, n, time,
                           {reinterpret_cast<const uint8_t*>(kEarly.data()), kEarly.size()}, 0);
}
ServerHandshake Server(const Key& psk = kPsk) {
    ServerHandshakeConfig c;
    c.psk = psk;
    return ServerHandshake(c);
}
Bytes Of(std::span<const uint8_t> s) {
    return Bytes(s.begin(), s.end());
}

TEST(KcpHandshake, GoldenHelloAndWelcome) {
    ClientHandshake client = Client();
    EXPECT_EQ(client.hello(),
              Hex("01010100c0c1c2c3c4c5c6c7c8c9cacbcccdcecf00f15365000000002d19c0ed341383f4ff42a6"
                  "238f5884f065160bf678f8289148e1716d2877dce9892e"));
    ServerHandshake server = Server();
    FixedRandom random;
    const HelloOutcome o = server.on_hello(client.hello(), kSource, kTime, random);
    ASSERT_EQ(o.verdict, HelloVerdict::accepted) << to_string(o.verdict);
    EXPECT_EQ(o.conv, 0x11223344u);
    EXPECT_EQ(std::string(o.early_data.begin(), o.early_data.end()), kEarly);
    EXPECT_EQ(Of(o.answer), Hex("0102010044332211505152535455565758595a5b5c5d5e5fc60c55cfd4d416fd"
                                "83ef33d4215cd3db"));
    EXPECT_LE(o.answer.size(), client.hello().size());  // never an amplifier
    ASSERT_EQ(client.on_welcome(o.answer), ClientHandshake::Answer::accepted);
    EXPECT_EQ(client.conv(), o.conv);
    EXPECT_EQ(client.secrets().client_to_server, o.secrets.client_to_server);
    EXPECT_EQ(client.secrets().server_to_client, o.secrets.server_to_client);
}

TEST(KcpSecureChannel, GoldenSealedDatagrams) {
    ClientHandshake client = Client();
    ServerHandshake server = Server();
    FixedRandom random;
    const HelloOutcome o = server.on_hello(client.hello(), kSource, kTime, random);
    ASSERT_EQ(o.verdict, HelloVerdict::accepted);
    SecureChannel c(Role::client, o.conv, Security::psk, o.secrets);
    SecureChannel s(Role::server, o.conv, Security::psk, o.secrets);
    Bytes d;
    ASSERT_EQ(c.seal(Type::segments, Bytes{1, 2, 3}, d), ChannelError::none);
    EXPECT_EQ(d, Hex("010344332211000000000000000000000000da200343edc414abb56826139ad9baa9f6b42f"));
    Type t{};
    Bytes body;
    ASSERT_EQ(s.open(d, t, body), ChannelError::none);
    EXPECT_EQ(t, Type::segments);
    EXPECT_EQ(body, (Bytes{1, 2, 3}));
    ASSERT_EQ(s.seal(Type::keepalive, {}, d), ChannelError::none);
    EXPECT_EQ(d, Hex("01044433221100000000000000000000000020a21cded7bb37ef53af0e13dd073c93"));
    ASSERT_EQ(c.open(d, t, body), ChannelError::none);
    EXPECT_EQ(t, Type::keepalive);
    EXPECT_TRUE(body.empty());
}

TEST(KcpHandshake, DuplicateHelloGetsTheSameAnswerAndNoSecondConversation) {
    ClientHandshake client = Client();
    ServerHandshake server = Server();
    FixedRandom random;
    const HelloOutcome first = server.on_hello(client.hello(), kSource, kTime, random);
    ASSERT_EQ(first.verdict, HelloVerdict::accepted);
    const Bytes answer = Of(first.answer);
    const int calls = random.calls;
    const HelloOutcome again = server.on_hello(client.hello(), kSource, kTime + 2, random);
    EXPECT_EQ(again.verdict, HelloVerdict::duplicate);
    EXPECT_EQ(again.conv, first.conv);
    EXPECT_EQ(Of(again.answer), answer);
    EXPECT_TRUE(again.early_data.empty());  // the stream bytes are not delivered twice
    EXPECT_EQ(random.calls, calls);         // no new nonce, no new conversation
    EXPECT_EQ(server.remembered(), 1u);
}

TEST(KcpHandshake, ClientRetransmitsOnScheduleThenGivesUp) {
    ClientHandshake client = Client();
    const Bytes hello = client.hello();
    std::vector<uint32_t> resends;
    for (uint32_t now = 0; now < 20000; ++now) {
        const auto tick = client.on_timer(now);
        if (tick == ClientHandshake::Tick::resend) resends.push_back(now);
        if (tick == ClientHandshake::Tick::give_up) {
            EXPECT_EQ(now, 15750u);
            break;
        }
    }
    EXPECT_EQ(resends, (std::vector<uint32_t>{250, 750, 1750, 3750, 7750}));
    EXPECT_EQ(client.hello(), hello);  // a retransmission is the same bytes
}

TEST(KcpHandshake, ReplayFromAnotherAddressIsRefused) {
    ClientHandshake client = Client();
    ServerHandshake server = Server();
    FixedRandom random;
    ASSERT_EQ(server.on_hello(client.hello(), kSource, kTime, random).verdict,
              HelloVerdict::accepted);
    const Bytes elsewhere{10, 0, 0, 2, 0x1f, 0x90};
    const HelloOutcome o = server.on_hello(client.hello(), elsewhere, kTime, random);
    EXPECT_EQ(o.verdict, HelloVerdict::replayed);
    EXPECT_TRUE(o.answer.empty());
}

TEST(KcpHandshake, WrongPskIsRefusedWithoutAnswer) {
    Key other = kPsk;
    other[31] ^= 1;
    ClientHandshake client = Client(other);
    ServerHandshake server = Server();
    FixedRandom random;
    const HelloOutcome o = server.on_hello(client.hello(), kSource, kTime, random);
    EXPECT_EQ(o.verdict, HelloVerdict::forged);
    EXPECT_TRUE(o.answer.empty());
    EXPECT_EQ(random.calls, 0);
    EXPECT_EQ(server.remembered(), 0u);
}

TEST(KcpHandshake, TimestampOutsideTheWindowIsRefused) {
    ServerHandshake server = Server();
    FixedRandom random;
    const Nonce n1 = Filled<Nonce>(1), n2 = Filled<Nonce>(2), n3 = Filled<Nonce>(3),
                n4 = Filled<Nonce>(4);
    EXPECT_EQ(
        server.on_hello(Client(kPsk, kTime - 301, n1).hello(), kSource, kTime, random).verdict,
        HelloVerdict::stale);
    EXPECT_EQ(
        server.on_hello(Client(kPsk, kTime + 301, n2).hello(), kSource, kTime, random).verdict,
        HelloVerdict::stale);
    EXPECT_EQ(
        server.on_hello(Client(kPsk, kTime - 300, n3).hello(), kSource, kTime, random).verdict,
        HelloVerdict::accepted);
    EXPECT_EQ(
        server.on_hello(Client(kPsk, kTime + 300, n4).hello(), kSource, kTime, random).verdict,
        HelloVerdict::accepted);
    // Remembered for as long as the timestamp passes; after that the timestamp refuses it.
    server.expire(kTime);
    EXPECT_EQ(server.remembered(), 2u);
    server.expire(kTime + 1);
    EXPECT_EQ(server.remembered(), 1u);
    server.expire(kTime + 1000);
    EXPECT_EQ(server.remembered(), 0u);
    EXPECT_EQ(server.on_hello(Client(kPsk, kTime + 300, n4).hello(), kSource, kTime + 1000, random)
                  .verdict,
              HelloVerdict::stale);
}

TEST(KcpHandshake, EveryTamperedByteOfAHelloIsRefused) {
    const ClientHandshake client = Client();
    for (size_t i = 0; i < client.hello().size(); ++i) {
        ServerHandshake server = Server();
        FixedRandom random;
        Bytes bad = client.hello();
        bad[i] ^= 0x01;
        const HelloOutcome o = server.on_hello(bad, kSource, kTime, random);
        EXPECT_NE(o.verdict, HelloVerdict::accepted) << "byte " << i;
        EXPECT_TRUE(o.answer.empty()) << "byte " << i;
    }
    ServerHandshake server = Server();
    FixedRandom random;
    Bytes cut = client.hello();
    cut.pop_back();
    EXPECT_EQ(server.on_hello(cut, kSource, kTime, random).verdict, HelloVerdict::forged);
    EXPECT_EQ(server.on_hello(Bytes(cut.begin(), cut.begin() + 30), kSource, kTime, random).verdict,
              HelloVerdict::malformed);
}

TEST(KcpHandshake, EveryTamperedByteOfAWelcomeIsRefused) {
    ServerHandshake server = Server();
    FixedRandom random;
    const HelloOutcome o = server.on_hello(Client().hello(), kSource, kTime, random);
    ASSERT_EQ(o.verdict, HelloVerdict::accepted);
    const Bytes welcome = Of(o.answer);
    for (size_t i = 0; i < welcome.size(); ++i) {
        ClientHandshake client = Client();
        Bytes bad = welcome;
        bad[i] ^= 0x80;
        EXPECT_NE(client.on_welcome(bad), ClientHandshake::Answer::accepted) << "byte " << i;
    }
    // A WELCOME made for another client's nonce does not fit this one.
    ClientHandshake other = Client(kPsk, kTime, Filled<Nonce>(0x33));
    EXPECT_EQ(other.on_welcome(welcome), ClientHandshake::Answer::forged);
    ClientHandshake client = Client();
    EXPECT_EQ(client.on_welcome(welcome), ClientHandshake::Answer::accepted);
}

TEST(KcpHandshake, SecurityModesMustMatch) {
    ServerHandshakeConfig plain_cfg;
    plain_cfg.security = Security::plain;
    ServerHandshake plain_server(plain_cfg);
    ServerHandshake keyed_server = Server();
    FixedRandom random;
    const ClientHandshake plain_client(Security::plain, {}, kClientNonce, kTime, {}, 0);
    EXPECT_EQ(keyed_server.on_hello(plain_client.hello(), kSource, kTime, random).verdict,
              HelloVerdict::wrong_security);
    EXPECT_EQ(plain_server.on_hello(Client().hello(), kSource, kTime, random).verdict,
              HelloVerdict::wrong_security);
    const HelloOutcome o = plain_server.on_hello(plain_client.hello(), kSource, kTime, random);
    ASSERT_EQ(o.verdict, HelloVerdict::accepted);
    EXPECT_LE(o.answer.size(), plain_client.hello().size());
    ClientHandshake keyed_client = Client();
    EXPECT_EQ(keyed_client.on_welcome(o.answer), ClientHandshake::Answer::wrong_security);
    EXPECT_THROW(ClientHandshake(Security::plain, kPsk, kClientNonce, kTime, {}, 0),
                 std::invalid_argument);
}

TEST(KcpHandshake, RememberedHellosAreBounded) {
    ServerHandshakeConfig c;
    c.psk = kPsk;
    c.max_remembered = 2;
    ServerHandshake server(c);
    FixedRandom random;
    for (uint8_t i = 0; i < 2; ++i)
        ASSERT_EQ(
            server.on_hello(Client(kPsk, kTime, Filled<Nonce>(i)).hello(), kSource, kTime, random)
                .verdict,
            HelloVerdict::accepted);
    EXPECT_EQ(server.on_hello(Client(kPsk, kTime, Filled<Nonce>(9)).hello(), kSource, kTime, random)
                  .verdict,
              HelloVerdict::busy);
    // Once the remembered ones expire there is room again.
    EXPECT_EQ(server
                  .on_hello(Client(kPsk, kTime + 400, Filled<Nonce>(9)).hello(), kSource,
                            kTime + 400, random)
                  .verdict,
              HelloVerdict::accepted);
}

struct Pair {
    SessionSecrets secrets;
    uint32_t conv = 0x01020304;
    Pair() {
        secrets.client_to_server = Filled<Key>(0x10);
        secrets.server_to_client = Filled<Key>(0x90);
    }
};

TEST(KcpSecureChannel, TamperReplayReflectionAndStrangersAreRefused) {
    Pair p;
    SecureChannel c(Role::client, p.conv, Security::psk, p.secrets);
    SecureChannel s(Role::server, p.conv, Security::psk, p.secrets);
    Bytes d, body;
    Type t{};
    ASSERT_EQ(c.seal(Type::segments, Bytes(40, 7), d), ChannelError::none);
    for (size_t i = 0; i < d.size(); ++i) {
        Bytes bad = d;
        bad[i] ^= 0x04;
        EXPECT_NE(s.open(bad, t, body), ChannelError::none) << "byte " << i;
    }
    EXPECT_EQ(s.stats().opened, 0u);
    ASSERT_EQ(s.open(d, t, body), ChannelError::none);  // the failures moved nothing
    EXPECT_EQ(body, Bytes(40, 7));
    EXPECT_EQ(s.open(d, t, body), ChannelError::replayed);
    EXPECT_EQ(c.open(d, t, body), ChannelError::forged);  // reflected back to its sender
    SecureChannel other(Role::server, p.conv + 1, Security::psk, p.secrets);
    EXPECT_EQ(other.open(d, t, body), ChannelError::wrong_conv);
    Bytes hello_type = d;
    hello_type[1] = static_cast<uint8_t>(Type::hello);
    EXPECT_EQ(s.open(hello_type, t, body), ChannelError::malformed);
    ASSERT_EQ(c.seal(Type::segments, Bytes(40, 7), d), ChannelError::none);
    EXPECT_EQ(s.open(Bytes(d.begin(), d.begin() + 20), t, body), ChannelError::forged);
    EXPECT_EQ(s.stats().replayed, 1u);
}

TEST(KcpSecureChannel, ReorderedDatagramsInsideTheWindowOpenOnce) {
    Pair p;
    SecureChannel c(Role::client, p.conv, Security::psk, p.secrets);
    SecureChannel s(Role::server, p.conv, Security::psk, p.secrets);
    std::vector<Bytes> sent(100);
    for (size_t i = 0; i < sent.size(); ++i)
        ASSERT_EQ(c.seal(Type::segments, Bytes(1, static_cast<uint8_t>(i)), sent[i]),
                  ChannelError::none);
    Bytes body;
    Type t{};
    ASSERT_EQ(s.open(sent[99], t, body), ChannelError::none);
    // The window is the top and the 63 below it: 35 is out, 36 is in.
    EXPECT_EQ(s.open(sent[35], t, body), ChannelError::replayed);
    for (size_t i = 36; i < 99; ++i) EXPECT_EQ(s.open(sent[i], t, body), ChannelError::none) << i;
    for (size_t i = 36; i < 100; ++i) EXPECT_EQ(s.open(sent[i], t, body), ChannelError::replayed);
}

TEST(KcpSecureChannel, RekeysAcrossEpochsWithReorderingAtTheBoundary) {
    Pair p;
    SecureChannel c(Role::client, p.conv, Security::psk, p.secrets, 4);
    SecureChannel s(Role::server, p.conv, Security::psk, p.secrets, 4);
    std::vector<Bytes> sent(40);
    for (size_t i = 0; i < sent.size(); ++i)
        ASSERT_EQ(c.seal(Type::segments, Bytes(3, static_cast<uint8_t>(i)), sent[i]),
                  ChannelError::none);
    EXPECT_EQ(c.send_epoch(), 9u);
    // The epoch is in the header; each epoch's key differs (same body, other ciphertext).
    EXPECT_EQ(sent[4][6], 1);
    Bytes body;
    Type t{};
    // Deliver pairwise swapped across each boundary: 0 1 2 4 3 5 6 8 7 ...
    for (size_t i = 0; i < sent.size(); ++i) {
        size_t j = i;
        if (i % 4 == 3 && i + 1 < sent.size())
            j = i + 1;
        else if (i % 4 == 0 && i > 0)
            j = i - 1;
        ASSERT_EQ(s.open(sent[j], t, body), ChannelError::none) << "datagram " << j;
        EXPECT_EQ(body, Bytes(3, static_cast<uint8_t>(j)));
    }
    EXPECT_EQ(s.receive_epoch(), 9u);
    // A datagram two epochs ahead of the receiver has no key there.
    SecureChannel late(Role::server, p.conv, Security::psk, p.secrets, 4);
    EXPECT_EQ(late.open(sent[8], t, body), ChannelError::bad_epoch);
    // A forged datagram claiming the next epoch does not move the receiver.
    Bytes forged = sent[4];
    forged.back() ^= 1;
    EXPECT_EQ(late.open(forged, t, body), ChannelError::forged);
    EXPECT_EQ(late.receive_epoch(), 0u);
    ASSERT_EQ(late.open(sent[0], t, body), ChannelError::none);
}

TEST(KcpSecureChannel, PlainModeKeepsFramingAndReplayChecks) {
    Pair p;
    SecureChannel c(Role::client, p.conv, Security::plain, {});
    SecureChannel s(Role::server, p.conv, Security::plain, {});
    Bytes d, body;
    Type t{};
    ASSERT_EQ(c.seal(Type::segments, Bytes{9, 8, 7}, d), ChannelError::none);
    EXPECT_EQ(d.size(), kSealedHeader + 3);
    EXPECT_EQ(Bytes(d.end() - 3, d.end()), (Bytes{9, 8, 7}));  // visible: no secrecy
    ASSERT_EQ(s.open(d, t, body), ChannelError::none);
    EXPECT_EQ(body, (Bytes{9, 8, 7}));
    EXPECT_EQ(s.open(d, t, body), ChannelError::replayed);
}

}  // namespace
}  // namespace pfp::kcp
