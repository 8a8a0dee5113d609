#include "workers/kcp_io.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <ctime>

#include "common/kcp/server_sessions.hpp"

namespace pfp::worker {

namespace {
// One TCP read; the session takes it in segments of about the MSS.
constexpr size_t kReadSize = 64 * 1024;
}  // namespace

kcp::Security tunnel_security(const TunnelOptions& o) {
    return o.psk.empty() ? kcp::Security::plain : kcp::Security::psk;
}

kcp::TunnelConfig tunnel_config(const TunnelOptions& o) {
    // The policy's defaults are the core's (policy/model.hpp says so; checked here).
    static_assert(uint64_t{1} << 30 == kcp::kDefaultRekeyAfter);
    static_assert(
        kcp::ServerLimits{}.max_sessions == 1024 && kcp::ServerLimits{}.max_per_source == 64 &&
        kcp::ServerLimits{}.hellos_per_second == 20 && kcp::ServerLimits{}.hello_burst == 40);
    kcp::TunnelConfig c;
    c.kcp =
        kcp::Config::fast(static_cast<uint32_t>(o.mtu - kcp::sealed_overhead(tunnel_security(o))));
    c.kcp.nodelay = o.nodelay;
    c.kcp.interval = static_cast<uint32_t>(o.interval.count());
    c.kcp.fast_resend = static_cast<uint32_t>(o.resend);
    c.kcp.no_congestion = o.no_congestion_control;
    c.kcp.snd_wnd = static_cast<uint32_t>(o.send_window);
    c.kcp.rcv_wnd = static_cast<uint32_t>(o.receive_window);
    c.idle_timeout_ms = static_cast<uint32_t>(o.idle_timeout.count());
    c.rekey_after = o.rekey_after;
    return c;
}

uint64_t unix_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec);
}

StreamPump::Result StreamPump::pump(kcp::TunnelSession& s, uint64_t& to_tunnel, uint64_t& to_tcp) {
    if (!tcp_) return Result::ok;
    // Tunnel -> TCP: what is pending first, then what the session has, until TCP is full.
    for (;;) {
        if (out_off_ < out_.size()) {
            const ssize_t n = ::send(tcp_.get(), out_.data() + out_off_, out_.size() - out_off_,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                return Result::tcp_failed;
            }
            out_off_ += static_cast<size_t>(n);
            to_tcp += static_cast<uint64_t>(n);
            bytes_to_tcp += static_cast<uint64_t>(n);
            continue;
        }
        if (shut_wr_) break;
        out_.clear();
        out_off_ = 0;
        const auto r = s.read(out_);
        if (r == kcp::TunnelSession::Read::data) continue;
        if (r == kcp::TunnelSession::Read::fin) {
            ::shutdown(tcp_.get(), SHUT_WR);  // the peer's half-close, passed on
            shut_wr_ = true;
        }
        break;
    }
    // TCP -> tunnel: while the session's send queue has room.
    while (!tcp_eof_ && s.state() == kcp::TunnelSession::State::open) {
        if (in_off_ < in_.size()) {
            size_t accepted = 0;
            const auto st = s.write(std::span<const uint8_t>(in_).subspan(in_off_), accepted);
            in_off_ += accepted;
            to_tunnel += accepted;
            bytes_to_tunnel += accepted;
            if (st != kcp::Status::ok && st != kcp::Status::would_block) return Result::tcp_failed;
            if (in_off_ < in_.size()) break;  // the queue is full: TCP waits
            continue;
        }
        if (!s.writable()) break;
        buf_.resize(kReadSize);
        const ssize_t n = ::recv(tcp_.get(), buf_.data(), buf_.size(), MSG_DONTWAIT);
        if (n > 0) {
            in_.assign(buf_.data(), buf_.data() + n);
            in_off_ = 0;
            continue;
        }
        if (n == 0) {
            tcp_eof_ = true;
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return Result::tcp_failed;
    }
    if (tcp_eof_ && in_off_ >= in_.size() && !fin_sent_ &&
        s.state() == kcp::TunnelSession::State::open) {
        if (s.shutdown_write() == kcp::Status::ok) fin_sent_ = true;
    }
    return Result::ok;
}

uint32_t StreamPump::wanted_events(const kcp::TunnelSession& s) const {
    uint32_t ev = 0;
    if (!tcp_eof_ && in_off_ >= in_.size() && s.writable()) ev |= EPOLLIN;
    if (out_off_ < out_.size()) ev |= EPOLLOUT;
    return ev;
}

std::string stats_line(const kcp::TunnelSession& s, const StreamPump& p) {
    const kcp::Kcp& k = s.kcp();
    return "stats conv=" + std::to_string(k.conv()) + " rtt=" + std::to_string(k.rtt().last()) +
           " srtt=" + std::to_string(k.rtt().srtt()) + " cwnd=" + std::to_string(k.cwnd()) +
           " sent=" + std::to_string(p.bytes_to_tunnel) +
           " recv=" + std::to_string(p.bytes_to_tcp) +
           " retrans=" + std::to_string(k.stats().timeouts + k.stats().fast_resends);
}

void add_session_counters(const kcp::TunnelSession& s, ipc::TunnelStats& out,
                          bool channel_refusals) {
    out.retransmits += s.kcp().stats().timeouts + s.kcp().stats().fast_resends;
    if (!channel_refusals) return;  // kcp-server: ServerSessions counts them as `refused`
    const kcp::ChannelStats& c = s.channel().stats();
    out.dropped_refused += c.forged + c.replayed + c.bad_epoch + c.malformed;
}

}  // namespace pfp::worker
