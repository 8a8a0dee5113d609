#include "common/kcp/tunnel_session.hpp"

#include <algorithm>
#include <stdexcept>

namespace pfp::kcp {

TunnelSession::TunnelSession(Role role, uint32_t conv, Security security,
                             const SessionSecrets& secrets, const TunnelConfig& config,
                             uint32_t now)
    : cfg_(config),
      channel_(role, conv, security, secrets, config.rekey_after),
      kcp_(conv, config.kcp, now),
      last_sent_(now),
      last_heard_(now) {
    if (cfg_.keepalive_ms == 0 || cfg_.idle_timeout_ms == 0 || cfg_.closing_timeout_ms == 0)
        throw std::invalid_argument(
            "KCP tunnel: keepalive, idle and closing timeouts must be positive");
    if (kcp_.mss() < 2) throw std::invalid_argument("KCP tunnel: MTU too small");
}

bool TunnelSession::writable() const noexcept {
    // Room for one more segment, and one kept for the FIN.
    return state_ == State::open && !fin_queued_ && kcp_.send_room() > 1;
}

Status TunnelSession::write(std::span<const uint8_t> bytes, size_t& accepted) {
    accepted = 0;
    if (state_ != State::open || fin_queued_) return Status::broken;
    // One segment per message: a kind byte and up to mss - 1 stream bytes.
    const size_t chunk = kcp_.mss() - 1;
    while (accepted < bytes.size() && kcp_.send_room() > 1) {
        const size_t n = std::min(chunk, bytes.size() - accepted);
        message_.resize(1 + n);
        message_[0] = static_cast<uint8_t>(MessageKind::data);
        std::copy_n(bytes.data() + accepted, n, message_.data() + 1);
        const Status s = kcp_.send(message_);
        if (s != Status::ok) return s;
        accepted += n;
    }
    return accepted != 0 || bytes.empty() ? Status::ok : Status::would_block;
}

Status TunnelSession::shutdown_write() {
    if (state_ != State::open) return Status::broken;
    if (fin_queued_) return Status::ok;
    const uint8_t fin = static_cast<uint8_t>(MessageKind::fin);
    const Status s = kcp_.send({&fin, 1});
    if (s == Status::ok) fin_queued_ = true;
    return s;
}

void TunnelSession::close() noexcept {
    if (state_ == State::open) {
        state_ = State::closed;
        close_pending_ = true;
    }
}

ChannelError TunnelSession::on_datagram(std::span<const uint8_t> datagram, uint32_t now) {
    if (state_ != State::open) return ChannelError::none;  // nothing more is wanted
    Type type{};
    const ChannelError e = channel_.open(datagram, type, body_);
    if (e != ChannelError::none) return e;
    last_heard_ = now;
    switch (type) {
        case Type::segments:
            // Authenticated but not KCP: the peer (who holds the key) broke the protocol.
            if (kcp_.input(body_, now) != InputError::none) state_ = State::failed;
            break;
        case Type::keepalive:
            break;
        case Type::close:
            state_ = State::closed;
            break;
        case Type::hello:
        case Type::welcome:
            break;  // open() never yields these
    }
    return ChannelError::none;
}

TunnelSession::Read TunnelSession::read(std::vector<uint8_t>& out) {
    out.clear();
    if (fin_received_ || state_ == State::failed) return Read::ended;
    const Status s = kcp_.recv(out);
    if (s == Status::would_block) return Read::would_block;
    if (s == Status::ok && !out.empty()) {
        if (out[0] == static_cast<uint8_t>(MessageKind::fin) && out.size() == 1) {
            out.clear();
            fin_received_ = true;
            return Read::fin;
        }
        if (out[0] == static_cast<uint8_t>(MessageKind::data) && out.size() > 1) {
            out.erase(out.begin());
            return Read::data;
        }
    }
    out.clear();
    state_ = State::failed;  // a malformed message: the stream cannot be trusted any further
    return Read::ended;
}

void TunnelSession::Sealer::kcp_output(std::span<const uint8_t> datagram) {
    session->send_sealed(Type::segments, datagram, *sink);
}

void TunnelSession::send_sealed(Type type, std::span<const uint8_t> body, DatagramSink& sink) {
    if (channel_.seal(type, body, sealed_) != ChannelError::none) {
        state_ = State::failed;  // out of sequence numbers or OpenSSL failed: stop sending
        return;
    }
    sink.send_datagram(sealed_);
}

void TunnelSession::flush(uint32_t now, DatagramSink& sink) {
    if (close_pending_) {
        close_pending_ = false;
        send_sealed(Type::close, {}, sink);
        return;
    }
    if (state_ != State::open) return;
    if (diff32(now, last_heard_) >= static_cast<int32_t>(silence_limit())) {
        state_ = State::expired;
        return;
    }
    const uint64_t sealed_before = channel_.stats().sealed;
    Sealer sealer;
    sealer.session = this;
    sealer.sink = &sink;
    kcp_.flush(now, sealer);
    if (kcp_.dead()) state_ = State::failed;
    if (channel_.stats().sealed != sealed_before) {
        last_sent_ = now;
    } else if (diff32(now, last_sent_) >= static_cast<int32_t>(cfg_.keepalive_ms)) {
        send_sealed(Type::keepalive, {}, sink);
        last_sent_ = now;
    }
}

uint32_t TunnelSession::next_deadline() const noexcept {
    if (close_pending_) return last_sent_;  // now-ish: any past time means "flush now"
    uint32_t due = last_sent_ + cfg_.keepalive_ms;
    const uint32_t idle = last_heard_ + silence_limit();
    if (diff32(idle, due) < 0) due = idle;
    if (const auto k = kcp_.next_deadline(); k && diff32(*k, due) < 0) due = *k;
    return due;
}

uint32_t TunnelSession::silence_limit() const noexcept {
    if (!fin_queued_ && !fin_received_) return cfg_.idle_timeout_ms;
    return std::min(cfg_.idle_timeout_ms, cfg_.closing_timeout_ms);
}

bool TunnelSession::finished() const noexcept {
    return fin_queued_ && fin_received_ && kcp_.waiting_send() == 0;
}

}  // namespace pfp::kcp
