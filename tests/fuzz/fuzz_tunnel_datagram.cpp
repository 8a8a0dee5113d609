// libFuzzer entry point for the KCP tunnel's datagram decoder (untrusted: anyone can send UDP to
// the server or spoof the server to a client). One datagram goes to every place that reads one: the
// server's handshake, a client's handshake, and established conversations with and without a key.
// None may crash; nothing forged may be accepted under the key; the server's answer is never
// longer than the datagram it answers; a plain conversation gives back exactly the body it got.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/kcp/client_handshake.hpp"
#include "common/kcp/secure_channel.hpp"
#include "common/kcp/server_handshake.hpp"
#include "common/kcp/server_sessions.hpp"
#include "common/kcp/tunnel_session.hpp"
#include "common/kcp/tunnel_wire.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

struct CountingRandom final : pfp::kcp::RandomSource {
    uint8_t next = 1;
    bool fill(std::span<uint8_t> out) noexcept override {
        for (auto& b : out) b = next++;
        return true;
    }
};

// The key, nonces, time and conversation of the golden datagrams in docs/kcp-tunnel.md, so the
// corpus's genuine datagrams authenticate and the fuzzer starts from accepted ones.
constexpr uint64_t kNow = 1700000000;
constexpr uint32_t kConv = 0x11223344;
template <typename T>
T filled(uint8_t first) {
    T t{};
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint8_t>(first + i);
    return t;
}
const pfp::kcp::Key kPsk = filled<pfp::kcp::Key>(0);
const pfp::kcp::Nonce kClientNonce = filled<pfp::kcp::Nonce>(0xc0);
const pfp::kcp::Nonce kServerNonce = filled<pfp::kcp::Nonce>(0x50);

pfp::kcp::SessionSecrets golden_secrets() {
    pfp::kcp::Key welcome;
    pfp::kcp::SessionSecrets s;
    check(pfp::kcp::derive_session(kPsk, kClientNonce, kServerNonce, kConv, welcome, s));
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pfp::kcp;
    const std::span<const uint8_t> d(data, size);
    const uint8_t source[6] = {127, 0, 0, 1, 0x30, 0x39};
    CountingRandom random;

    ServerHandshakeConfig keyed;
    keyed.psk = kPsk;
    ServerHandshake server(keyed);
    HelloOutcome o = server.on_hello(d, source, kNow, random);
    if (o.verdict == HelloVerdict::accepted || o.verdict == HelloVerdict::duplicate)
        check(o.answer.size() <= size);
    else
        check(o.answer.empty());
    if (o.verdict == HelloVerdict::accepted) {
        const HelloOutcome again = server.on_hello(d, source, kNow, random);
        check(again.verdict == HelloVerdict::duplicate && again.conv == o.conv);
        check(again.answer.size() == o.answer.size());
    }

    ServerHandshakeConfig plain;
    plain.security = Security::plain;
    ServerHandshake plain_server(plain);
    o = plain_server.on_hello(d, source, kNow, random);
    if (o.verdict == HelloVerdict::accepted) {
        check(o.answer.size() <= size);
        check(o.early_data.size() == size - kHelloHeader);
    }

    ClientHandshake client(Security::psk, kPsk, kClientNonce, kNow, {}, 0);
    const auto answer = client.on_welcome(d);
    if (answer == ClientHandshake::Answer::accepted) check(client.conv() != 0);

    static const SessionSecrets secrets = golden_secrets();
    SealedView v;
    const uint32_t conv = parse_sealed(d, v) == WireError::none ? v.conv : 1;
    std::vector<uint8_t> body;
    Type type{};
    for (const Role role : {Role::server, Role::client}) {
        SecureChannel keyed_channel(role, kConv, Security::psk, secrets, 2);
        if (keyed_channel.open(d, type, body) == ChannelError::none) {
            check(size == kSealedHeader + body.size() + kTagSize);
            check(keyed_channel.open(d, type, body) == ChannelError::replayed);
        }
    }
    SecureChannel plain_channel(Role::client, conv, Security::plain, {});
    if (plain_channel.open(d, type, body) == ChannelError::none) {
        check(size == kSealedHeader + body.size());
        check(std::equal(body.begin(), body.end(), d.begin() + kSealedHeader));
    }

    // A plain conversation takes it as its peer's: stream bytes, a FIN or a broken stream.
    TunnelConfig tunnel;
    TunnelSession session(Role::server, conv, Security::plain, {}, tunnel, 0);
    session.on_datagram(d, 1);
    for (int i = 0; i < 64; ++i) {
        const auto r = session.read(body);
        if (r == TunnelSession::Read::data) check(!body.empty());
        if (r != TunnelSession::Read::data) break;
    }

    // The server socket's dispatch: nothing is sent unless a conversation opened or a live one's
    // HELLO came again.
    struct Out final : ServerOutput {
        size_t sent = 0;
        void send_to(std::span<const uint8_t>, std::span<const uint8_t> datagram) override {
            ++sent;
            check(!datagram.empty());
        }
    } out;
    ServerSessions sessions(keyed, tunnel, {}, 0);
    const auto dispatch = sessions.on_datagram(d, source, 0, kNow, random, out);
    using Kind = ServerSessions::Dispatch::Kind;
    check(out.sent == (dispatch.kind == Kind::opened || dispatch.kind == Kind::answered ? 1u : 0u));
    check(sessions.sessions() == (dispatch.kind == Kind::opened ? 1u : 0u));
    return 0;
}
