#pragma once
// The tunnel's primitives, all from OpenSSL (libcrypto): HKDF-SHA256 (RFC 5869),
// ChaCha20-Poly1305 (RFC 8439) and the kernel's random source. Nothing here is hand-written
// cryptography; these are thin wrappers that turn OpenSSL's calls into error codes.
//
// OpenSSL loads its configuration and providers on first use, which reads files: call
// warm_up_crypto() before a worker's lock-down.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace pfp::kcp {

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kAeadNonceSize = 12;
inline constexpr size_t kTagSize = 16;
using Key = std::array<uint8_t, kKeySize>;

// Setup: makes OpenSSL load everything the tunnel uses; throws std::runtime_error if it can't.
void warm_up_crypto();

// HKDF-Extract with SHA-256: prk = HMAC(salt, ikm). Empty salt means HashLen zero bytes.
bool hkdf_extract(std::span<const uint8_t> salt, std::span<const uint8_t> ikm, Key& prk) noexcept;
// HKDF-Expand with SHA-256: out.size() bytes (at most 255 x 32) from prk and info.
bool hkdf_expand(std::span<const uint8_t> prk, std::span<const uint8_t> info,
                 std::span<uint8_t> out) noexcept;

// ChaCha20-Poly1305 under one key. Not copyable (owns an OpenSSL context).
class Aead {
  public:
    Aead();
    ~Aead();
    Aead(Aead&&) noexcept;
    Aead& operator=(Aead&&) noexcept;

    bool set_key(std::span<const uint8_t, kKeySize> key) noexcept;
    bool has_key() const noexcept { return keyed_; }
    // out: plaintext.size() + kTagSize bytes (ciphertext, then tag). out may not overlap input.
    bool seal(std::span<const uint8_t, kAeadNonceSize> nonce, std::span<const uint8_t> aad,
              std::span<const uint8_t> plaintext, std::span<uint8_t> out) noexcept;
    // sealed: ciphertext then tag; out: sealed.size() - kTagSize bytes. False if the tag is wrong.
    bool open(std::span<const uint8_t, kAeadNonceSize> nonce, std::span<const uint8_t> aad,
              std::span<const uint8_t> sealed, std::span<uint8_t> out) noexcept;

  private:
    struct Ctx;
    std::unique_ptr<Ctx> ctx_;
    bool keyed_ = false;
};

// Fills `out` from getrandom(2). False only if the kernel refuses.
bool fill_random(std::span<uint8_t> out) noexcept;

// Where handshakes get their nonces and conversation ids; tests substitute a seeded one.
class RandomSource {
  public:
    virtual bool fill(std::span<uint8_t> out) noexcept = 0;

  protected:
    ~RandomSource() = default;
};
class SystemRandom final : public RandomSource {
  public:
    bool fill(std::span<uint8_t> out) noexcept override { return fill_random(out); }
};

}  // namespace pfp::kcp
