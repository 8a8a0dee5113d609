#pragma once
// What kcp-client and kcp-server (kcp_client.cpp, kcp_server.cpp) share: the core's configuration
// from the handover, the worker's millisecond clock, the upstream's addresses and the admitted
// sources (TunnelRoute), the statistics lines' pace, and StreamPump, which moves one tunnelled
// connection's bytes between its TCP socket and its TunnelSession with half-close and
// backpressure: TCP is read only while the session's send queue has room, and the session is
// read only while TCP takes what was read before (so KCP's receive window closes on a slow TCP
// reader, and the peer stops sending).
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/allow_list.hpp"
#include "common/endpoint.hpp"
#include "common/event_loop.hpp"
#include "common/handover.hpp"
#include "common/ipc.hpp"
#include "common/kcp/tunnel_session.hpp"
#include "common/unique_fd.hpp"

namespace pfp::worker {

kcp::Security tunnel_security(const TunnelOptions& o);
kcp::TunnelConfig tunnel_config(const TunnelOptions& o);

// A finished conversation stays this long (its TCP side closed), so the ACK of the peer's last FIN
// can be sent again if the first was lost; else the peer would resend it until its idle timeout.
inline constexpr auto kTunnelLinger = std::chrono::seconds(2);

// Where a tunnel end's upstream is (a host name's current address set, which the supervisor
// updates) and which sources it admits (allowed_sources).
struct TunnelRoute {
    explicit TunnelRoute(const TunnelOptions& o);
    // A host name's new address set (all on the upstream's port); false when the upstream is not
    // a host name or the set does not fit.
    bool update(std::vector<SockAddr> new_addresses);
    bool admits(const sockaddr* a, socklen_t len) const {
        return !sources || sources->contains(a, len);
    }

    Endpoint upstream;
    bool host_upstream;
    std::vector<SockAddr> addresses;
    std::optional<CidrSet> sources;
};

// The core's u32 millisecond clock (comparisons wrap), from the loop's steady clock.
class TunnelClock {
  public:
    TunnelClock() : epoch_(Clock::now()) {}
    uint32_t ms(Clock::time_point t) const {
        return static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(t - epoch_).count());
    }
    // The time point of a core deadline, seen from `now`.
    Clock::time_point at(uint32_t deadline, Clock::time_point now) const {
        const auto delta = static_cast<int32_t>(deadline - ms(now));
        return now + std::chrono::milliseconds(delta);
    }

  private:
    Clock::time_point epoch_;
};
uint64_t unix_seconds();

class StreamPump {
  public:
    enum class Result { ok, tcp_failed };
    StreamPump() : in_(kReadSize) {}
    explicit StreamPump(unique_fd tcp) : tcp_(std::move(tcp)), in_(kReadSize) {}

    int fd() const { return tcp_.get(); }
    void set_tcp(unique_fd tcp) { tcp_ = std::move(tcp); }
    // Bytes for the TCP side before anything the session delivers (kcp-server: the early data).
    void queue_to_tcp(std::span<const uint8_t> bytes) { out_.assign(bytes.begin(), bytes.end()); }
    // TCP bytes read already that the session has not taken (kcp-client: early bytes beyond the
    // HELLO's room; at most one read's worth).
    void queue_to_tunnel(std::span<const uint8_t> bytes);
    void tcp_ended() { tcp_eof_ = true; }
    // The TCP socket's readiness as epoll reported it. A read shorter than asked for (or EAGAIN)
    // means the socket is drained, and it is read again only after epoll says so: the pump runs
    // once per batch of datagrams, and a recv that only learns EAGAIN is a system call wasted.
    // After EPOLLHUP/EPOLLERR the socket leaves the loop, so it is read until its end.
    void note_events(uint32_t events);

    // The TCP socket in the worker's (level-triggered) loop: added with `events`; then its interest
    // follows wanted_events() (follow()); it leaves the loop on EPOLLHUP/EPOLLERR, which epoll
    // reports whatever the interest (it would spin), and at the end (unwatch()).
    bool watch(EventLoop& loop, uint32_t events, EventSource* source);
    void follow(EventLoop& loop, const kcp::TunnelSession& s);
    void unwatch(EventLoop& loop);

    // Moves what can move both ways now. `to_tunnel`/`to_tcp` count the bytes moved.
    Result pump(kcp::TunnelSession& s, uint64_t& to_tunnel, uint64_t& to_tcp);
    // The TCP socket's epoll interest after pump().
    uint32_t wanted_events(const kcp::TunnelSession& s) const;
    // Both directions ended cleanly: the peer's FIN passed on to TCP, TCP's end passed on as our
    // FIN, and everything acknowledged.
    bool done(const kcp::TunnelSession& s) const {
        return shut_wr_ && fin_sent_ && out_off_ >= out_.size() && s.finished();
    }
    void close_tcp() { tcp_.reset(); }

    uint64_t bytes_to_tunnel = 0;  // this connection's, for statistics lines
    uint64_t bytes_to_tcp = 0;

  private:
    // One TCP read; the session takes it in segments of about the MSS.
    static constexpr size_t kReadSize = 64 * 1024;
    // Messages gathered from the session into one TCP send.
    static constexpr size_t kWriteGather = 64 * 1024;

    Result to_tcp(kcp::TunnelSession& s, uint64_t& to_tcp);
    Result to_tunnel(kcp::TunnelSession& s, uint64_t& to_tunnel);

    unique_fd tcp_;
    EventSource* source_ = nullptr;
    bool watched_ = false;
    uint32_t events_ = 0;       // the interest the loop has
    std::vector<uint8_t> out_;  // from the session, not yet written to TCP
    size_t out_off_ = 0;
    std::vector<uint8_t> message_;  // one message from the session
    std::vector<uint8_t> in_;       // from TCP (kReadSize), [in_off_, in_len_) not yet taken
    size_t in_off_ = 0;
    size_t in_len_ = 0;
    bool tcp_readable_ = true;  // not known to be drained
    bool tcp_hung_up_ = false;  // out of the loop: read until the end
    bool tcp_eof_ = false;
    bool fin_received_ = false;  // the peer's FIN, to pass on once out_ is written
    bool fin_sent_ = false;
    bool shut_wr_ = false;
};

// One `stats conv=...` line (statistics: true), from the session's KCP state and the pump's bytes.
std::string stats_line(const kcp::TunnelSession& s, const StreamPump& p);

// At most one statistics line per connection a second, and only when bytes moved since the last.
class StatsPacer {
  public:
    bool due(Clock::time_point now, const StreamPump& p) {
        const uint64_t moved = p.bytes_to_tcp + p.bytes_to_tunnel;
        if (now < next_ || moved == bytes_) return false;
        bytes_ = moved;
        next_ = now + std::chrono::seconds(1);
        return true;
    }

  private:
    Clock::time_point next_{};
    uint64_t bytes_ = 0;
};

// Counters the core keeps per conversation, added to a worker's totals (retransmissions, and the
// channel's refusals as dropped_refused).
void add_session_counters(const kcp::TunnelSession& s, ipc::TunnelStats& out,
                          bool channel_refusals);

}  // namespace pfp::worker
