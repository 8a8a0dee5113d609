#pragma once
// Every key the tunnel uses, derived with HKDF-SHA256 from the pre-shared key and the handshake's
// two nonces (docs/kcp-tunnel.md, "Keys"). Labels start "pf-proxy kcp v1 " so no key of this
// format can equal one of another use of the same PSK.
//
//   hello key    = HKDF(salt = client_nonce, IKM = PSK, info = "pf-proxy kcp v1 hello")
//   PRK          = HKDF-Extract(salt = client_nonce || server_nonce, IKM = PSK)
//   welcome key  = HKDF-Expand(PRK, "pf-proxy kcp v1 welcome" || conv)
//   c2s, s2c     = HKDF-Expand(PRK, "pf-proxy kcp v1 c2s" || conv), likewise "s2c"
//   epoch key    = HKDF-Expand(direction secret, "pf-proxy kcp v1 epoch" || epoch)
//
// conv and epoch are u32 little-endian.
#include <array>
#include <cstdint>
#include <span>

#include "common/kcp/crypto.hpp"
#include "common/kcp/tunnel_wire.hpp"

namespace pfp::kcp {

// One secret per direction; each epoch's key is derived from its direction's secret.
struct SessionSecrets {
    Key client_to_server{};
    Key server_to_client{};
    const Key& of(Direction d) const noexcept {
        return d == Direction::client_to_server ? client_to_server : server_to_client;
    }
};

bool derive_hello_key(std::span<const uint8_t, kKeySize> psk, const Nonce& client_nonce,
                      Key& out) noexcept;
bool derive_session(std::span<const uint8_t, kKeySize> psk, const Nonce& client_nonce,
                    const Nonce& server_nonce, uint32_t conv, Key& welcome_key,
                    SessionSecrets& secrets) noexcept;
bool derive_epoch_key(const Key& direction_secret, uint32_t epoch, Key& out) noexcept;

// The 96-bit AEAD nonce of a sealed datagram: 4 zero bytes, then seq (u64 little-endian). Keys
// differ per direction and epoch and seq never repeats in a direction, so no nonce is reused.
std::array<uint8_t, kAeadNonceSize> sealed_nonce(uint64_t seq) noexcept;
// HELLO and WELCOME keys each seal one message (a retransmitted HELLO is the same bytes).
inline constexpr std::array<uint8_t, kAeadNonceSize> kHandshakeNonce{};

}  // namespace pfp::kcp
