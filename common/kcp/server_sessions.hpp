#pragma once
// The server side of a kcp-server worker, without sockets (docs/kcp-tunnel.md, "Server limits"):
// every datagram from the UDP socket goes to on_datagram() with its source address, which either
// drops it (counted by reason, never answered), answers a HELLO, opens a conversation, or hands it
// to the conversation it belongs to (matched by source address and conv). Limits: conversations in
// all and per source address, and a token bucket of HELLOs per source address, spent before any
// cryptography so a flood costs a table lookup. One timer wheel drives every conversation.
//
// Data path: error codes, no exceptions (the constructor throws on a bad config).
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "common/kcp/server_handshake.hpp"
#include "common/kcp/timer_wheel.hpp"
#include "common/kcp/tunnel_session.hpp"

namespace pfp::kcp {

struct ServerLimits {
    size_t max_sessions = 1024;
    size_t max_per_source = 64;
    uint32_t hellos_per_second = 20;  // per source address, sustained
    uint32_t hello_burst = 40;        // per source address, at once
    size_t max_sources = 8192;        // source addresses tracked for the rate limit
};

// Sends a datagram to a source address (as given to on_datagram).
class ServerOutput {
  public:
    virtual void send_to(std::span<const uint8_t> source, std::span<const uint8_t> datagram) = 0;

  protected:
    ~ServerOutput() = default;
};

enum class DropReason {
    malformed,        // not a v1 datagram, or a type the server never receives
    rate_limited,     // too many HELLOs from this source
    handshake,        // the HELLO was refused (ServerHandshake's verdict says why)
    full,             // max_sessions, max_per_source or max_sources reached
    stale_duplicate,  // a retransmitted HELLO whose conversation has already ended
    unknown,          // a sealed datagram for no conversation of this source
    refused,          // the conversation's channel refused it (forged, replayed, ...)
};
inline constexpr size_t kDropReasons = 7;
const char* to_string(DropReason r) noexcept;

class ServerSessions {
  public:
    using Id = TimerWheel::Id;

    struct Dispatch {
        enum class Kind { dropped, answered, opened, delivered } kind = Kind::dropped;
        DropReason reason = DropReason::malformed;       // dropped
        HelloVerdict verdict = HelloVerdict::malformed;  // dropped for handshake
        Id id = 0;                                       // opened, delivered, answered
        std::span<const uint8_t> early_data;             // opened: the first stream bytes
    };

    ServerSessions(const ServerHandshakeConfig& handshake, const TunnelConfig& tunnel,
                   const ServerLimits& limits, uint32_t now_ms);

    // One datagram. Answers (WELCOMEs) are sent through `out` before this returns.
    Dispatch on_datagram(std::span<const uint8_t> datagram, std::span<const uint8_t> source,
                         uint32_t now_ms, uint64_t unix_seconds, RandomSource& random,
                         ServerOutput& out);

    TunnelSession* session(Id id) noexcept;
    // After the worker used a session (wrote, read, fed it): puts it on the wheel at its deadline.
    void reschedule(Id id);
    // Flushes every session whose deadline passed; appends those no longer open to `ended`
    // (the worker closes their upstream connection, then calls remove()).
    void tick(uint32_t now_ms, ServerOutput& out, std::vector<Id>& ended);
    void remove(Id id);
    // Also forgets old HELLOs and idle rate-limit entries (call about once a second).
    void expire_handshakes(uint64_t unix_seconds, uint32_t now_ms);

    std::optional<uint32_t> next_deadline() const noexcept { return wheel_.next_expiry(); }
    size_t sessions() const noexcept { return count_; }
    size_t tracked_sources() const noexcept { return sources_.size(); }
    uint64_t dropped(DropReason r) const noexcept { return dropped_[static_cast<size_t>(r)]; }

  private:
    using Source = std::array<uint8_t, 32>;  // address bytes, zero-padded; length alongside
    struct SourceKey {
        Source bytes{};
        uint8_t len = 0;
        auto operator<=>(const SourceKey&) const = default;
    };
    struct SourceState {
        size_t sessions = 0;
        uint64_t tokens_milli = 0;  // HELLO tokens x 1000
        uint32_t refilled_at = 0;
    };
    struct Slot {
        SourceKey source;
        uint32_t conv = 0;
        TunnelSession session;
    };
    struct SlotSink;

    Dispatch drop(DropReason r, HelloVerdict v = HelloVerdict::malformed) noexcept;
    void refill(SourceState& s, uint32_t now_ms) const noexcept;
    bool take_token(SourceState& s, uint32_t now_ms) noexcept;
    SourceState* source_state(const SourceKey& key, uint32_t now_ms);

    ServerHandshake handshake_;
    Security security_;
    TunnelConfig tunnel_;
    ServerLimits limits_;
    TimerWheel wheel_;
    std::vector<std::unique_ptr<Slot>> slots_;  // index = Id
    std::vector<Id> free_;
    size_t count_ = 0;
    std::map<std::pair<SourceKey, uint32_t>, Id> by_conv_;
    std::map<SourceKey, SourceState> sources_;
    std::array<uint64_t, kDropReasons> dropped_{};
};

}  // namespace pfp::kcp
