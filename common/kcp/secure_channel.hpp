#pragma once
// One established conversation's sealed datagrams (docs/kcp-tunnel.md, "Sealed datagrams"): the
// sender numbers every datagram with a 64-bit sequence per direction and seals it with that
// direction's current epoch key (ChaCha20-Poly1305; the authenticated data is the 18-byte header
// and the direction byte); the receiver refuses anything whose tag, epoch or sequence is wrong.
//
// Rekeying: the sender moves to the next epoch after `rekey_after` datagrams, long before any
// counter could wrap; epoch keys come from the direction's secret by HKDF, so no message is
// exchanged for it. The receiver keeps the previous, current and next epoch's keys, so reordering
// across the boundary is harmless, and moves on when a datagram of the next epoch authenticates.
//
// Without a key (Security::plain) the same header and sequence checks apply to plain bodies.
// Data path: error codes, no exceptions (the constructor throws if OpenSSL fails at setup).
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "common/kcp/crypto.hpp"
#include "common/kcp/key_schedule.hpp"
#include "common/kcp/replay_window.hpp"
#include "common/kcp/tunnel_wire.hpp"

namespace pfp::kcp {

inline constexpr uint64_t kDefaultRekeyAfter = uint64_t{1} << 30;  // datagrams per epoch

enum class Role : uint8_t { client, server };

enum class ChannelError {
    none,
    malformed,   // not a sealed datagram of version 1
    wrong_conv,  // another conversation's
    bad_epoch,   // an epoch the receiver holds no key for
    forged,      // the tag does not verify (tampered, wrong key, or plain body too short)
    replayed,    // sequence already seen, or older than the window
    exhausted,   // seal: no sequence or epoch left; the conversation must end
    crypto,      // OpenSSL failed
};
const char* to_string(ChannelError e) noexcept;

struct ChannelStats {
    uint64_t sealed = 0;
    uint64_t opened = 0;
    uint64_t forged = 0;
    uint64_t replayed = 0;
    uint64_t bad_epoch = 0;
    uint64_t malformed = 0;
};

class SecureChannel {
  public:
    SecureChannel(Role role, uint32_t conv, Security security, const SessionSecrets& secrets,
                  uint64_t rekey_after = kDefaultRekeyAfter);

    // A whole datagram of `type` carrying `body`, into `out` (replaced).
    ChannelError seal(Type type, std::span<const uint8_t> body, std::vector<uint8_t>& out);
    // Checks and opens a datagram; on success `type` and `body` (replaced) are set.
    ChannelError open(std::span<const uint8_t> datagram, Type& type, std::vector<uint8_t>& body);

    uint32_t conv() const noexcept { return conv_; }
    Security security() const noexcept { return security_; }
    uint32_t send_epoch() const noexcept { return send_epoch_; }
    uint32_t receive_epoch() const noexcept { return recv_epoch_; }
    uint64_t next_seq() const noexcept { return send_seq_; }
    const ChannelStats& stats() const noexcept { return stats_; }
    // Bytes a sealed datagram adds around its body.
    size_t overhead() const noexcept { return sealed_overhead(security_); }

  private:
    bool key_for(Aead& aead, const Key& secret, uint32_t epoch) noexcept;
    void aad(std::span<const uint8_t> header, Direction d) noexcept;

    uint32_t conv_;
    Security security_;
    Direction send_dir_;
    Direction recv_dir_;
    SessionSecrets secrets_;
    uint64_t rekey_after_;

    Aead send_aead_;
    uint32_t send_epoch_ = 0;
    uint64_t send_seq_ = 0;
    uint64_t sent_in_epoch_ = 0;

    // Receive keys for epochs recv_epoch_ - 1, recv_epoch_, recv_epoch_ + 1.
    std::array<Aead, 3> recv_aead_;
    std::array<bool, 3> recv_keyed_{};
    uint32_t recv_epoch_ = 0;
    ReplayWindow replay_;

    std::array<uint8_t, kSealedHeader + 1> aad_{};
    ChannelStats stats_;
};

}  // namespace pfp::kcp
