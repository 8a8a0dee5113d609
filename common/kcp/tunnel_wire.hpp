#pragma once
// The tunnel's datagram format, version 1 (docs/kcp-tunnel.md has every byte). Every datagram
// starts with a version byte and a type. HELLO and WELCOME make the handshake; every other type is
// a "sealed" datagram of an established conversation: an 18-byte header (version, type, conv,
// epoch, seq) and a body that is ChaCha20-Poly1305 ciphertext plus tag (or plain bytes in a
// session without a key). This file only lays out and reads the bytes; crypto is elsewhere.
//
// Data path code: no exceptions, no allocation, no I/O.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/kcp/crypto.hpp"

namespace pfp::kcp {

inline constexpr uint8_t kWireVersion = 1;

enum class Type : uint8_t {
    hello = 1,      // client -> server: opens a conversation (carries early stream bytes)
    welcome = 2,    // server -> client: the conversation id and the server's nonce
    segments = 3,   // sealed: KCP segments of the conversation
    keepalive = 4,  // sealed, empty: the peer is alive
    close = 5,      // sealed, empty: the sender has ended the conversation (abort)
};

enum class Security : uint8_t {
    plain = 0,  // no key: integrity and secrecy are the network's
    psk = 1,    // pre-shared key: HKDF-SHA256 keys, ChaCha20-Poly1305
};

enum class Direction : uint8_t { client_to_server = 0, server_to_client = 1 };

inline constexpr size_t kNonceSize = 16;  // each side's handshake nonce
using Nonce = std::array<uint8_t, kNonceSize>;

// HELLO: version type security reserved(0) client_nonce[16] timestamp(u64 LE, unix seconds),
// then the early bytes (ciphertext + tag under psk).
inline constexpr size_t kHelloHeader = 28;
// WELCOME: version type security reserved(0) conv(u32 LE) server_nonce[16], then a tag under psk.
inline constexpr size_t kWelcomeHeader = 24;
// Sealed: version type conv(u32 LE) epoch(u32 LE) seq(u64 LE), then the body.
inline constexpr size_t kSealedHeader = 18;

inline constexpr size_t tag_size(Security s) noexcept {
    return s == Security::psk ? kTagSize : 0;
}
inline constexpr size_t hello_size(Security s, size_t early) noexcept {
    return kHelloHeader + early + tag_size(s);
}
inline constexpr size_t welcome_size(Security s) noexcept {
    return kWelcomeHeader + tag_size(s);
}
// Bytes a sealed datagram adds around its body.
inline constexpr size_t sealed_overhead(Security s) noexcept {
    return kSealedHeader + tag_size(s);
}
// The server never answers with more bytes than it was sent (no amplification).
static_assert(welcome_size(Security::psk) <= hello_size(Security::psk, 0));
static_assert(welcome_size(Security::plain) <= hello_size(Security::plain, 0));

enum class WireError {
    none,
    too_short,    // shorter than its type's fixed part
    bad_version,  // not version 1
    bad_type,     // unknown type, or one that only flows the other way
    bad_field,    // a reserved byte is not 0, or an unknown security mode
};
const char* to_string(WireError e) noexcept;

struct HelloView {
    Security security = Security::plain;
    Nonce client_nonce{};
    uint64_t timestamp = 0;
    std::span<const uint8_t> header;  // the first kHelloHeader bytes (authenticated data)
    std::span<const uint8_t> body;    // early bytes (+ tag under psk)
};
struct WelcomeView {
    Security security = Security::plain;
    uint32_t conv = 0;
    Nonce server_nonce{};
    std::span<const uint8_t> header;  // the first kWelcomeHeader bytes
    std::span<const uint8_t> body;    // the tag under psk, else empty
};
struct SealedView {
    Type type = Type::segments;
    uint32_t conv = 0;
    uint32_t epoch = 0;
    uint64_t seq = 0;
    std::span<const uint8_t> header;  // the first kSealedHeader bytes
    std::span<const uint8_t> body;
};

// The datagram's type, after checking its version; bad_type for an unknown one.
WireError peek_type(std::span<const uint8_t> d, Type& type) noexcept;
WireError parse_hello(std::span<const uint8_t> d, HelloView& out) noexcept;
WireError parse_welcome(std::span<const uint8_t> d, WelcomeView& out) noexcept;
WireError parse_sealed(std::span<const uint8_t> d, SealedView& out) noexcept;

void write_hello_header(uint8_t* out, Security s, const Nonce& client_nonce,
                        uint64_t timestamp) noexcept;
void write_welcome_header(uint8_t* out, Security s, uint32_t conv,
                          const Nonce& server_nonce) noexcept;
void write_sealed_header(uint8_t* out, Type t, uint32_t conv, uint32_t epoch,
                         uint64_t seq) noexcept;

// Inside the KCP stream each message starts with a kind byte: stream bytes follow, or the
// sender's half of the stream has ended. Never a bare magic byte that stream data could mimic.
enum class MessageKind : uint8_t { data = 0, fin = 1 };

}  // namespace pfp::kcp
