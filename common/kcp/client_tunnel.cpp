#include "common/kcp/client_tunnel.hpp"

#include <algorithm>
#include <stdexcept>

namespace pfp::kcp {

namespace {

Nonce fresh_nonce(RandomSource& random) {
    Nonce n;
    if (!random.fill(n)) throw std::runtime_error("KCP tunnel: no random bytes for the handshake");
    return n;
}

}  // namespace

ClientTunnel::ClientTunnel(Security security, std::span<const uint8_t> psk,
                           const TunnelConfig& config, size_t mtu, RandomSource& random,
                           uint64_t unix_seconds, std::span<const uint8_t> early, uint32_t now_ms)
    : cfg_(config),
      security_(security),
      early_taken_(std::min(early.size(), max_early_data(security, mtu))),
      handshake_(security, psk, fresh_nonce(random), unix_seconds, early.first(early_taken_),
                 now_ms) {}

void ClientTunnel::on_datagram(std::span<const uint8_t> datagram, uint32_t now_ms) {
    if (state_ == State::established) {
        session_->on_datagram(datagram, now_ms);
        return;
    }
    if (state_ != State::handshaking) return;
    if (handshake_.on_welcome(datagram) != ClientHandshake::Answer::accepted) {
        ++refused_;
        return;
    }
    session_.emplace(Role::client, handshake_.conv(), security_, handshake_.secrets(), cfg_,
                     now_ms);
    state_ = State::established;
}

void ClientTunnel::flush(uint32_t now_ms, DatagramSink& sink) {
    if (state_ == State::established) {
        session_->flush(now_ms, sink);
        return;
    }
    if (state_ != State::handshaking) return;
    switch (handshake_.on_timer(now_ms)) {
        case ClientHandshake::Tick::wait:
            break;
        case ClientHandshake::Tick::resend:
            sink.send_datagram(handshake_.hello());
            ++hellos_sent_;
            break;
        case ClientHandshake::Tick::give_up:
            state_ = State::gave_up;
            break;
    }
}

uint32_t ClientTunnel::next_deadline() const noexcept {
    return session_ ? session_->next_deadline() : handshake_.next_deadline();
}

}  // namespace pfp::kcp
