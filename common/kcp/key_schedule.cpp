#include "common/kcp/key_schedule.hpp"

#include <cstring>
#include <string_view>

#include "common/kcp/bytes.hpp"

namespace pfp::kcp {

namespace {

// label || u32 little-endian, into a small buffer.
struct Info {
    std::array<uint8_t, 64> bytes{};
    size_t size = 0;
    Info(std::string_view label, uint32_t n) noexcept {
        std::memcpy(bytes.data(), label.data(), label.size());
        put_le32(bytes.data() + label.size(), n);
        size = label.size() + 4;
    }
    std::span<const uint8_t> span() const noexcept { return {bytes.data(), size}; }
};

}  // namespace

bool derive_hello_key(std::span<const uint8_t, kKeySize> psk, const Nonce& client_nonce,
                      Key& out) noexcept {
    constexpr std::string_view label = "pf-proxy kcp v1 hello";
    Key prk;
    return hkdf_extract(client_nonce, psk, prk) &&
           hkdf_expand(prk, {reinterpret_cast<const uint8_t*>(label.data()), label.size()}, out);
}

bool derive_session(std::span<const uint8_t, kKeySize> psk, const Nonce& client_nonce,
                    const Nonce& server_nonce, uint32_t conv, Key& welcome_key,
                    SessionSecrets& secrets) noexcept {
    std::array<uint8_t, 2 * kNonceSize> salt;
    std::memcpy(salt.data(), client_nonce.data(), kNonceSize);
    std::memcpy(salt.data() + kNonceSize, server_nonce.data(), kNonceSize);
    Key prk;
    return hkdf_extract(salt, psk, prk) &&
           hkdf_expand(prk, Info("pf-proxy kcp v1 welcome", conv).span(), welcome_key) &&
           hkdf_expand(prk, Info("pf-proxy kcp v1 c2s", conv).span(), secrets.client_to_server) &&
           hkdf_expand(prk, Info("pf-proxy kcp v1 s2c", conv).span(), secrets.server_to_client);
}

bool derive_epoch_key(const Key& direction_secret, uint32_t epoch, Key& out) noexcept {
    return hkdf_expand(direction_secret, Info("pf-proxy kcp v1 epoch", epoch).span(), out);
}

std::array<uint8_t, kAeadNonceSize> sealed_nonce(uint64_t seq) noexcept {
    std::array<uint8_t, kAeadNonceSize> n{};
    put_le64(n.data() + 4, seq);
    return n;
}

}  // namespace pfp::kcp
