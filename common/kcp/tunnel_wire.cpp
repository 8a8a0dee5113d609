#include "common/kcp/tunnel_wire.hpp"

#include <cstring>

#include "common/kcp/bytes.hpp"

namespace pfp::kcp {

namespace {

bool known_security(uint8_t b) noexcept {
    return b == static_cast<uint8_t>(Security::plain) || b == static_cast<uint8_t>(Security::psk);
}

}  // namespace

const char* to_string(WireError e) noexcept {
    switch (e) {
        case WireError::none:
            return "ok";
        case WireError::too_short:
            return "datagram too short";
        case WireError::bad_version:
            return "unknown version";
        case WireError::bad_type:
            return "unexpected datagram type";
        case WireError::bad_field:
            return "invalid header field";
    }
    return "?";
}

WireError peek_type(std::span<const uint8_t> d, Type& type) noexcept {
    if (d.size() < 2) return WireError::too_short;
    if (d[0] != kWireVersion) return WireError::bad_version;
    if (d[1] < static_cast<uint8_t>(Type::hello) || d[1] > static_cast<uint8_t>(Type::close))
        return WireError::bad_type;
    type = static_cast<Type>(d[1]);
    return WireError::none;
}

WireError parse_hello(std::span<const uint8_t> d, HelloView& out) noexcept {
    Type t{};
    if (const WireError e = peek_type(d, t); e != WireError::none) return e;
    if (t != Type::hello) return WireError::bad_type;
    if (d.size() < kHelloHeader) return WireError::too_short;
    if (!known_security(d[2]) || d[3] != 0) return WireError::bad_field;
    out.security = static_cast<Security>(d[2]);
    if (d.size() < hello_size(out.security, 0)) return WireError::too_short;
    std::memcpy(out.client_nonce.data(), d.data() + 4, kNonceSize);
    out.timestamp = get_le64(d.data() + 20);
    out.header = d.first(kHelloHeader);
    out.body = d.subspan(kHelloHeader);
    return WireError::none;
}

WireError parse_welcome(std::span<const uint8_t> d, WelcomeView& out) noexcept {
    Type t{};
    if (const WireError e = peek_type(d, t); e != WireError::none) return e;
    if (t != Type::welcome) return WireError::bad_type;
    if (d.size() < kWelcomeHeader) return WireError::too_short;
    if (!known_security(d[2]) || d[3] != 0) return WireError::bad_field;
    out.security = static_cast<Security>(d[2]);
    // Exactly the header and the tag: nothing else rides on a WELCOME.
    if (d.size() != welcome_size(out.security)) return WireError::bad_field;
    out.conv = get_le32(d.data() + 4);
    if (out.conv == 0) return WireError::bad_field;
    std::memcpy(out.server_nonce.data(), d.data() + 8, kNonceSize);
    out.header = d.first(kWelcomeHeader);
    out.body = d.subspan(kWelcomeHeader);
    return WireError::none;
}

WireError parse_sealed(std::span<const uint8_t> d, SealedView& out) noexcept {
    Type t{};
    if (const WireError e = peek_type(d, t); e != WireError::none) return e;
    if (t == Type::hello || t == Type::welcome) return WireError::bad_type;
    if (d.size() < kSealedHeader) return WireError::too_short;
    out.type = t;
    out.conv = get_le32(d.data() + 2);
    if (out.conv == 0) return WireError::bad_field;
    out.epoch = get_le32(d.data() + 6);
    out.seq = get_le64(d.data() + 10);
    out.header = d.first(kSealedHeader);
    out.body = d.subspan(kSealedHeader);
    return WireError::none;
}

void write_hello_header(uint8_t* out, Security s, const Nonce& client_nonce,
                        uint64_t timestamp) noexcept {
    out[0] = kWireVersion;
    out[1] = static_cast<uint8_t>(Type::hello);
    out[2] = static_cast<uint8_t>(s);
    out[3] = 0;
    std::memcpy(out + 4, client_nonce.data(), kNonceSize);
    put_le64(out + 20, timestamp);
}

void write_welcome_header(uint8_t* out, Security s, uint32_t conv,
                          const Nonce& server_nonce) noexcept {
    out[0] = kWireVersion;
    out[1] = static_cast<uint8_t>(Type::welcome);
    out[2] = static_cast<uint8_t>(s);
    out[3] = 0;
    put_le32(out + 4, conv);
    std::memcpy(out + 8, server_nonce.data(), kNonceSize);
}

void write_sealed_header(uint8_t* out, Type t, uint32_t conv, uint32_t epoch,
                         uint64_t seq) noexcept {
    out[0] = kWireVersion;
    out[1] = static_cast<uint8_t>(t);
    put_le32(out + 2, conv);
    put_le32(out + 6, epoch);
    put_le64(out + 10, seq);
}

}  // namespace pfp::kcp
