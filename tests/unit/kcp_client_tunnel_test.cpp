// A client connection's handshake against the server's dispatch (common/kcp/client_tunnel.hpp,
// server_sessions.hpp) when the path loses handshake datagrams: the HELLO is retransmitted until a
// WELCOME arrives, the server opens exactly one conversation and hands over the early bytes once,
// and the stream then flows; with no answer at all the client gives up on schedule.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/kcp/client_tunnel.hpp"
#include "common/kcp/server_sessions.hpp"

namespace pfp::kcp {
namespace {

using Bytes = std::vector<uint8_t>;

const Key kPsk = [] {
    Key k{};
    k[0] = 0x77;
    return k;
}();
constexpr uint64_t kUnix = 1750000000;
const Bytes kClientAddress{192, 0, 2, 7};

struct ToServer final : DatagramSink {
    std::vector<Bytes> d;
    void send_datagram(std::span<const uint8_t> b) override { d.emplace_back(b.begin(), b.end()); }
};
struct ToClient final : ServerOutput {
    std::vector<Bytes> d;
    void send_to(std::span<const uint8_t> to, std::span<const uint8_t> b) override {
        EXPECT_EQ(Bytes(to.begin(), to.end()), kClientAddress);
        d.emplace_back(b.begin(), b.end());
    }
};

ServerSessions Server() {
    ServerHandshakeConfig h;
    h.psk = kPsk;
    return ServerSessions(h, TunnelConfig{}, ServerLimits{}, 0);
}

TEST(KcpClientTunnel, LostHelloAndLostWelcomeStillOpenOneConversation) {
    SystemRandom random;
    const std::string early = "SSH-2.0-client\r\n";
    ClientTunnel client(Security::psk, kPsk, TunnelConfig{}, 1350, random, kUnix,
                        {reinterpret_cast<const uint8_t*>(early.data()), early.size()}, 0);
    EXPECT_EQ(client.early_taken(), early.size());
    ServerSessions server = Server();
    ToServer up;
    ToClient down;
    // The first HELLO (sent by the worker at once) is lost. At 250 ms the client resends it.
    client.flush(249, up);
    EXPECT_TRUE(up.d.empty());
    EXPECT_EQ(client.next_deadline(), 250u);
    client.flush(250, up);
    ASSERT_EQ(up.d.size(), 1u);
    EXPECT_EQ(up.d[0], client.hello());
    auto d = server.on_datagram(up.d[0], kClientAddress, 260, kUnix, random, down);
    ASSERT_EQ(d.kind, ServerSessions::Dispatch::Kind::opened);
    EXPECT_EQ(std::string(d.early_data.begin(), d.early_data.end()), early);
    const auto id = d.id;
    // Its WELCOME is lost too; the next HELLO gets the same WELCOME and opens nothing new.
    ASSERT_EQ(down.d.size(), 1u);
    const Bytes lost_welcome = down.d[0];
    client.flush(750, up);
    ASSERT_EQ(up.d.size(), 2u);
    d = server.on_datagram(up.d[1], kClientAddress, 760, kUnix, random, down);
    EXPECT_EQ(d.kind, ServerSessions::Dispatch::Kind::answered);
    EXPECT_TRUE(d.early_data.empty());
    ASSERT_EQ(down.d.size(), 2u);
    EXPECT_EQ(down.d[1], lost_welcome);
    EXPECT_EQ(server.sessions(), 1u);
    // A forged WELCOME first: ignored. Then the real one establishes the conversation.
    Bytes forged = down.d[1];
    forged.back() ^= 1;
    client.on_datagram(forged, 770);
    EXPECT_EQ(client.refused_welcomes(), 1u);
    EXPECT_EQ(client.state(), ClientTunnel::State::handshaking);
    client.on_datagram(down.d[1], 770);
    ASSERT_EQ(client.state(), ClientTunnel::State::established);
    EXPECT_EQ(client.hellos_sent(), 3u);

    // The stream continues after the early bytes.
    size_t n = 0;
    ASSERT_EQ(client.session()->write(Bytes{'l', 's', '\n'}, n), Status::ok);
    up.d.clear();
    client.flush(780, up);
    ASSERT_EQ(up.d.size(), 1u);
    d = server.on_datagram(up.d[0], kClientAddress, 790, kUnix, random, down);
    ASSERT_EQ(d.kind, ServerSessions::Dispatch::Kind::delivered);
    EXPECT_EQ(d.id, id);
    Bytes got;
    ASSERT_EQ(server.session(id)->read(got), TunnelSession::Read::data);
    EXPECT_EQ(got, (Bytes{'l', 's', '\n'}));
}

TEST(KcpClientTunnel, GivesUpWhenNobodyAnswersAndTakesOnlyWhatFitsTheHello) {
    SystemRandom random;
    const Bytes early(5000, 'x');
    ClientTunnel client(Security::psk, kPsk, TunnelConfig{}, 1350, random, kUnix, early, 0);
    EXPECT_EQ(client.early_taken(), 1350u - 44u);
    EXPECT_EQ(client.hello().size(), 1350u);
    ToServer up;
    uint32_t now = 0;
    while (client.state() == ClientTunnel::State::handshaking && now < 60000) {
        now = client.next_deadline();
        client.flush(now, up);
    }
    EXPECT_EQ(client.state(), ClientTunnel::State::gave_up);
    EXPECT_EQ(now, 15750u);
    EXPECT_EQ(up.d.size(), 5u);  // the five retransmissions
    EXPECT_EQ(client.hellos_sent(), 6u);
}

}  // namespace
}  // namespace pfp::kcp
