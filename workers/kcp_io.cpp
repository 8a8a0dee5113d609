#include "workers/kcp_io.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "common/kcp/server_sessions.hpp"
#include "workers/redirected_destination.hpp"
#include "workers/route.hpp"

namespace pfp::worker {

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
    // A closing conversation (a FIN went either way) whose peer is silent ends after a third of
    // the idle timeout: 60 s by default, Linux's tcp_fin_timeout for an orphaned connection whose
    // peer went quiet mid-close. A live peer sends at least every 10 s (keepalive), so that takes
    // five or six of them lost in a row (0.03 % at 20 % loss), and it comes before KCP's dead-link
    // verdict (20 sends of one segment: over two minutes) and needs no data in flight. Tied to
    // idle_timeout so one key scales both (a lossy link's longer idle timeout lengthens this too).
    c.closing_timeout_ms = std::max<uint32_t>(c.idle_timeout_ms / 3, 1);
    c.rekey_after = o.rekey_after;
    return c;
}

TunnelRoute::TunnelRoute(const TunnelOptions& o)
    : upstream(parse_endpoint(o.upstream)), host_upstream(!o.upstream_host.empty()) {
    if (!o.allowed_sources.empty()) sources = CidrSet::parse(o.allowed_sources);
    addresses = upstream_address_set(o.upstream_host, o.upstream_addresses, upstream);
    if (addresses.empty()) addresses.push_back(upstream.addr);
}

bool TunnelRoute::update(std::vector<SockAddr> new_addresses) {
    if (!host_upstream || new_addresses.empty()) return false;
    for (const SockAddr& a : new_addresses)
        if (port_of(a) != upstream.port) return false;
    addresses = std::move(new_addresses);
    return true;
}

uint64_t unix_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec);
}

void StreamPump::queue_to_tunnel(std::span<const uint8_t> bytes) {
    if (bytes.size() > in_.size()) in_.resize(bytes.size());
    std::copy(bytes.begin(), bytes.end(), in_.begin());
    in_off_ = 0;
    in_len_ = bytes.size();
}

void StreamPump::note_events(uint32_t events) {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) tcp_readable_ = true;
    if (events & (EPOLLHUP | EPOLLERR)) tcp_hung_up_ = true;
}

bool StreamPump::watch(EventLoop& loop, uint32_t events, EventSource* source) {
    if (!loop.add(tcp_.get(), events, source)) return false;
    source_ = source;
    watched_ = true;
    events_ = events;
    return true;
}

void StreamPump::follow(EventLoop& loop, const kcp::TunnelSession& s) {
    const uint32_t want = tcp_ ? wanted_events(s) : 0;
    if (watched_ && want != events_) {
        loop.modify(tcp_.get(), want, source_);
        events_ = want;
    }
}

void StreamPump::unwatch(EventLoop& loop) {
    if (watched_) loop.remove(tcp_.get());
    watched_ = false;
    events_ = 0;
}

StreamPump::Result StreamPump::pump(kcp::TunnelSession& s, uint64_t& to_tunnel, uint64_t& to_tcp) {
    if (!tcp_) return Result::ok;
    if (this->to_tcp(s, to_tcp) == Result::tcp_failed) return Result::tcp_failed;
    if (this->to_tunnel(s, to_tunnel) == Result::tcp_failed) return Result::tcp_failed;
    if (tcp_eof_ && in_off_ >= in_len_ && !fin_sent_ &&
        s.state() == kcp::TunnelSession::State::open) {
        if (s.shutdown_write() == kcp::Status::ok) fin_sent_ = true;
    }
    return Result::ok;
}

// Tunnel -> TCP: what is pending first, then the session's messages gathered into one send, until
// TCP is full (a short write says so: no second send to learn EAGAIN).
StreamPump::Result StreamPump::to_tcp(kcp::TunnelSession& s, uint64_t& to_tcp) {
    for (;;) {
        if (out_off_ < out_.size()) {
            const size_t want = out_.size() - out_off_;
            const ssize_t n =
                ::send(tcp_.get(), out_.data() + out_off_, want, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return Result::ok;
                return Result::tcp_failed;
            }
            out_off_ += static_cast<size_t>(n);
            to_tcp += static_cast<uint64_t>(n);
            bytes_to_tcp += static_cast<uint64_t>(n);
            if (static_cast<size_t>(n) < want) return Result::ok;  // full: wait for EPOLLOUT
            continue;
        }
        if (shut_wr_) return Result::ok;
        if (fin_received_) {
            ::shutdown(tcp_.get(), SHUT_WR);  // the peer's half-close, passed on
            shut_wr_ = true;
            return Result::ok;
        }
        out_.clear();
        out_off_ = 0;
        while (out_.size() < kWriteGather) {
            const auto r = s.read(message_);
            if (r == kcp::TunnelSession::Read::data) {
                out_.insert(out_.end(), message_.begin(), message_.end());
                continue;
            }
            if (r == kcp::TunnelSession::Read::fin) fin_received_ = true;
            break;
        }
        if (out_.empty() && !fin_received_) return Result::ok;
    }
}

// TCP -> tunnel: while the session's send queue has room and the socket is not known drained.
StreamPump::Result StreamPump::to_tunnel(kcp::TunnelSession& s, uint64_t& to_tunnel) {
    while (!tcp_eof_ && s.state() == kcp::TunnelSession::State::open) {
        if (in_off_ < in_len_) {
            size_t accepted = 0;
            const auto st = s.write(
                std::span<const uint8_t>(in_).subspan(in_off_, in_len_ - in_off_), accepted);
            in_off_ += accepted;
            to_tunnel += accepted;
            bytes_to_tunnel += accepted;
            if (st != kcp::Status::ok && st != kcp::Status::would_block) return Result::tcp_failed;
            if (in_off_ < in_len_) return Result::ok;  // the queue is full: TCP waits
            continue;
        }
        if (!s.writable() || !tcp_readable_) return Result::ok;
        const ssize_t n = ::recv(tcp_.get(), in_.data(), kReadSize, MSG_DONTWAIT);
        if (n > 0) {
            in_off_ = 0;
            in_len_ = static_cast<size_t>(n);
            if (static_cast<size_t>(n) < kReadSize && !tcp_hung_up_) tcp_readable_ = false;
            continue;
        }
        if (n == 0) {
            tcp_eof_ = true;
            return Result::ok;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            tcp_readable_ = false;
            return Result::ok;
        }
        return Result::tcp_failed;
    }
    return Result::ok;
}

uint32_t StreamPump::wanted_events(const kcp::TunnelSession& s) const {
    uint32_t ev = 0;
    if (!tcp_eof_ && in_off_ >= in_len_ && s.writable()) ev |= EPOLLIN;
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
