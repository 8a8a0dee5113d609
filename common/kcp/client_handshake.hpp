#pragma once
// The client's half of the handshake (docs/kcp-tunnel.md, "Handshake"): one HELLO, built once and
// sent again unchanged until a WELCOME that authenticates arrives or the schedule runs out. The
// HELLO carries the first stream bytes, so the server can connect upstream and forward them
// before the first round trip ends.
//
// Data path: error codes; only the constructor throws (bad arguments, OpenSSL failure).
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/kcp/crypto.hpp"
#include "common/kcp/key_schedule.hpp"
#include "common/kcp/tunnel_wire.hpp"

namespace pfp::kcp {

// Retransmissions after the first send (ms after it): 250, 750, 1750, 3750, 7750; the client gives
// up at 15750 ms.
inline constexpr uint32_t kHelloFirstRetry = 250;
inline constexpr int kHelloRetries = 5;

class ClientHandshake {
  public:
    // psk: 32 bytes with Security::psk, empty with Security::plain. `unix_seconds` is the
    // timestamp the server checks; `now_ms` the worker's clock at the first send.
    ClientHandshake(Security security, std::span<const uint8_t> psk, const Nonce& client_nonce,
                    uint64_t unix_seconds, std::span<const uint8_t> early_data, uint32_t now_ms);

    const std::vector<uint8_t>& hello() const noexcept { return hello_; }
    const Nonce& client_nonce() const noexcept { return client_nonce_; }

    enum class Tick { wait, resend, give_up };
    // resend: send hello() again now; give_up: the server did not answer in time.
    Tick on_timer(uint32_t now_ms) noexcept;
    uint32_t next_deadline() const noexcept { return deadline_; }

    enum class Answer { accepted, malformed, wrong_security, forged };
    // A datagram that arrived on the client's socket. accepted: conv() and secrets() are set.
    Answer on_welcome(std::span<const uint8_t> datagram) noexcept;
    uint32_t conv() const noexcept { return conv_; }
    const SessionSecrets& secrets() const noexcept { return secrets_; }

  private:
    Security security_;
    Key psk_{};
    Nonce client_nonce_;
    std::vector<uint8_t> hello_;
    uint32_t deadline_;
    uint32_t wait_ = kHelloFirstRetry;
    int retries_left_ = kHelloRetries;
    uint32_t conv_ = 0;
    SessionSecrets secrets_;
    Aead aead_;  // checks WELCOMEs (allocated once, not per datagram)
};

// Largest early-data count a HELLO can carry in a datagram of `mtu` bytes.
inline constexpr size_t max_early_data(Security s, size_t mtu) noexcept {
    return mtu > hello_size(s, 0) ? mtu - hello_size(s, 0) : 0;
}

}  // namespace pfp::kcp
