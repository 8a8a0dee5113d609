#pragma once
// The server's half of the handshake (docs/kcp-tunnel.md, "Handshake"). A HELLO is accepted once:
// it must authenticate under the PSK, carry a timestamp within max_skew of the server's clock, and
// bring a client nonce not seen before. Its WELCOME is kept for as long as the HELLO's timestamp
// stays acceptable, so a retransmitted HELLO from the same address gets the very same answer (and
// no second conversation), while the same HELLO from elsewhere, or after the window, is refused.
// Refusals are counted and never answered; no answer is longer than the HELLO it answers.
//
// Data path: error codes, no exceptions (beyond allocation failure).
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "common/kcp/crypto.hpp"
#include "common/kcp/key_schedule.hpp"
#include "common/kcp/tunnel_wire.hpp"

namespace pfp::kcp {

inline constexpr uint64_t kMaxClockSkew = 300;  // seconds, either way

struct ServerHandshakeConfig {
    Security security = Security::psk;
    std::span<const uint8_t> psk;  // 32 bytes with psk (copied), empty with plain
    uint64_t max_skew = kMaxClockSkew;
    size_t max_remembered = 4096;  // HELLOs remembered; when full (of unexpired ones) new ones wait
};

enum class HelloVerdict {
    accepted,        // a new conversation: answer, conv, secrets and early data are set
    duplicate,       // seen from this address before: answer (the same bytes) and conv are set
    malformed,       // not a HELLO of version 1
    wrong_security,  // plain HELLO to a keyed server, or the reverse
    stale,           // timestamp outside the window
    forged,          // does not authenticate under the PSK
    replayed,        // a nonce already used from another address
    busy,            // too many HELLOs remembered
    internal_error,  // the random source or OpenSSL failed
};
const char* to_string(HelloVerdict v) noexcept;

struct HelloOutcome {
    HelloVerdict verdict = HelloVerdict::malformed;
    uint32_t conv = 0;
    std::span<const uint8_t> answer;      // the WELCOME; valid until the next call
    std::span<const uint8_t> early_data;  // accepted only; valid until the next call
    SessionSecrets secrets;               // accepted only
};

class ServerHandshake {
  public:
    explicit ServerHandshake(const ServerHandshakeConfig& config);  // throws on a bad config

    // `source`: the sender's address as opaque bytes (at most 32, e.g. the sockaddr); `now`: the
    // server's unix time in seconds.
    HelloOutcome on_hello(std::span<const uint8_t> datagram, std::span<const uint8_t> source,
                          uint64_t now, RandomSource& random);
    // Drops remembered HELLOs whose timestamp can no longer pass (call now and then).
    void expire(uint64_t now);
    size_t remembered() const noexcept { return seen_.size(); }

  private:
    struct Seen {
        std::array<uint8_t, 32> source{};
        size_t source_len = 0;
        uint64_t expires = 0;  // unix seconds
        uint32_t conv = 0;
        std::array<uint8_t, welcome_size(Security::psk)> answer{};
        size_t answer_len = 0;
    };

    ServerHandshakeConfig cfg_;
    Key psk_{};
    std::map<Nonce, Seen> seen_;
    std::vector<uint8_t> early_;
    Aead aead_;
};

}  // namespace pfp::kcp
