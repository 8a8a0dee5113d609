#pragma once
// One tunnelled TCP connection after its handshake (docs/kcp-tunnel.md, "Messages"): stream bytes
// and a FIN per direction, as KCP messages (a kind byte first), inside sealed datagrams, plus
// keepalives and the idle timeout. No I/O: the worker writes stream bytes in and reads them out,
// feeds received datagrams, and calls flush() by next_deadline() with a sink that sends.
//
// Data path: error codes, no exceptions (the constructor throws on a bad config or OpenSSL).
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/kcp/kcp.hpp"
#include "common/kcp/secure_channel.hpp"

namespace pfp::kcp {

struct TunnelConfig {
    Config kcp = Config::fast(1350 - sealed_overhead(Security::psk));
    uint32_t keepalive_ms = 10000;      // send a KEEPALIVE after this long without sending
    uint32_t idle_timeout_ms = 180000;  // end after this long without an authenticated datagram
    // The same, once a FIN went either way (a conversation closing), if shorter: a live peer sends
    // at least every keepalive_ms, so a closing conversation whose peer vanished (host gone after
    // its FIN) ends soon instead of holding its upstream connection for the whole idle timeout.
    // The data keeps flowing as long as the peer is heard: half-closed streams may last.
    uint32_t closing_timeout_ms = 60000;
    uint64_t rekey_after = kDefaultRekeyAfter;
};

// Gets the sealed datagrams to put on the UDP socket; the span is valid only during the call.
class DatagramSink {
  public:
    virtual void send_datagram(std::span<const uint8_t> datagram) = 0;

  protected:
    ~DatagramSink() = default;
};

class TunnelSession {
  public:
    enum class State {
        open,
        closed,   // the peer sent CLOSE, or close() was called
        expired,  // idle timeout
        failed,   // the peer broke the protocol, KCP declared the link dead, or sealing failed
    };
    enum class Read { data, fin, would_block, ended };

    TunnelSession(Role role, uint32_t conv, Security security, const SessionSecrets& secrets,
                  const TunnelConfig& config, uint32_t now);

    // Queues stream bytes; `accepted` says how many were taken (fewer when the send queue is full:
    // stop reading the TCP side until writable()). Nothing after shutdown_write().
    Status write(std::span<const uint8_t> bytes, size_t& accepted);
    bool writable() const noexcept;
    // Queues this direction's FIN (after everything written before it).
    Status shutdown_write();
    // Ends the conversation now: a CLOSE goes out with the next flush.
    void close() noexcept;

    // One datagram from the peer, already matched to this conversation by the worker. Refusals
    // are counted in channel().stats() and change nothing.
    ChannelError on_datagram(std::span<const uint8_t> datagram, uint32_t now);
    // The next stream bytes (into `out`, replaced), or the peer's FIN, once, after its last byte.
    Read read(std::vector<uint8_t>& out);

    void flush(uint32_t now, DatagramSink& sink);
    // When flush() must run next (the KCP deadline, the keepalive or the idle timeout).
    uint32_t next_deadline() const noexcept;

    State state() const noexcept { return state_; }
    bool fin_sent() const noexcept { return fin_queued_; }
    bool fin_received() const noexcept { return fin_received_; }
    // Both FINs through and everything acknowledged: the conversation ended cleanly.
    bool finished() const noexcept;
    const Kcp& kcp() const noexcept { return kcp_; }
    const SecureChannel& channel() const noexcept { return channel_; }

  private:
    struct Sealer final : Output {
        TunnelSession* session = nullptr;
        DatagramSink* sink = nullptr;
        void kcp_output(std::span<const uint8_t> datagram) override;
    };
    void send_sealed(Type type, std::span<const uint8_t> body, DatagramSink& sink);
    // How long the peer may be silent now: idle_timeout_ms, or closing_timeout_ms once closing.
    uint32_t silence_limit() const noexcept;

    TunnelConfig cfg_;
    SecureChannel channel_;
    Kcp kcp_;
    State state_ = State::open;
    bool fin_queued_ = false;
    bool fin_received_ = false;
    bool close_pending_ = false;
    uint32_t last_sent_;
    uint32_t last_heard_;
    std::vector<uint8_t> message_;  // one outgoing message being built
    std::vector<uint8_t> body_;     // one opened datagram
    std::vector<uint8_t> sealed_;   // one sealed datagram
};

}  // namespace pfp::kcp
