#pragma once
// The client side of one tunnelled TCP connection (docs/kcp-tunnel.md, "Handshake"): a HELLO
// carrying the first stream bytes, retransmitted by the schedule until a WELCOME authenticates,
// then a TunnelSession. No I/O: the worker sends hello() at once, feeds the datagrams that arrive
// on the connection's UDP socket, and calls flush() by next_deadline().
//
// Data path: error codes; the constructor throws (bad config, no randomness, OpenSSL failure).
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/kcp/client_handshake.hpp"
#include "common/kcp/tunnel_session.hpp"

namespace pfp::kcp {

class ClientTunnel {
  public:
    enum class State { handshaking, established, gave_up };

    // Takes as many of `early` as fit the HELLO (early_taken()); the rest is the worker's to
    // write() once established. `mtu` is the tunnel's datagram size.
    ClientTunnel(Security security, std::span<const uint8_t> psk, const TunnelConfig& config,
                 size_t mtu, RandomSource& random, uint64_t unix_seconds,
                 std::span<const uint8_t> early, uint32_t now_ms);

    const std::vector<uint8_t>& hello() const noexcept { return handshake_.hello(); }
    size_t early_taken() const noexcept { return early_taken_; }

    // A datagram from the server. While handshaking only a genuine WELCOME counts (anything else
    // is dropped and counted); then it goes to the session.
    void on_datagram(std::span<const uint8_t> datagram, uint32_t now_ms);
    // Handshaking: resends the HELLO when due, or gives up. Established: flushes the session.
    void flush(uint32_t now_ms, DatagramSink& sink);
    uint32_t next_deadline() const noexcept;

    State state() const noexcept { return state_; }
    TunnelSession* session() noexcept { return session_ ? &*session_ : nullptr; }
    uint64_t refused_welcomes() const noexcept { return refused_; }
    uint32_t hellos_sent() const noexcept { return hellos_sent_; }

  private:
    TunnelConfig cfg_;
    Security security_;
    size_t early_taken_;
    ClientHandshake handshake_;
    State state_ = State::handshaking;
    std::optional<TunnelSession> session_;
    uint64_t refused_ = 0;
    uint32_t hellos_sent_ = 1;  // the worker sends the first at once
};

}  // namespace pfp::kcp
