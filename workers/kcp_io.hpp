#pragma once
// What kcp-client and kcp-server (kcp_client.cpp, kcp_server.cpp) share: the core's configuration
// from the handover, the worker's millisecond clock, and StreamPump, which moves one tunnelled
// connection's bytes between its TCP socket and its TunnelSession with half-close and
// backpressure: TCP is read only while the session's send queue has room, and the session is
// read only while TCP takes what was read before (so KCP's receive window closes on a slow TCP
// reader, and the peer stops sending).
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "common/handover.hpp"
#include "common/ipc.hpp"
#include "common/kcp/tunnel_session.hpp"
#include "common/unique_fd.hpp"

namespace pfp::worker {

kcp::Security tunnel_security(const TunnelOptions& o);
kcp::TunnelConfig tunnel_config(const TunnelOptions& o);

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
    StreamPump() = default;
    explicit StreamPump(unique_fd tcp) : tcp_(std::move(tcp)) {}

    int fd() const { return tcp_.get(); }
    void set_tcp(unique_fd tcp) { tcp_ = std::move(tcp); }
    // Bytes for the TCP side before anything the session delivers (kcp-server: the early data).
    void queue_to_tcp(std::span<const uint8_t> bytes) { out_.assign(bytes.begin(), bytes.end()); }
    // TCP bytes read already that the session has not taken (kcp-client: early bytes beyond the
    // HELLO's room).
    void queue_to_tunnel(std::span<const uint8_t> bytes) {
        in_.assign(bytes.begin(), bytes.end());
        in_off_ = 0;
    }
    void tcp_ended() { tcp_eof_ = true; }

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
    unique_fd tcp_;
    std::vector<uint8_t> out_;  // from the session, not yet written to TCP
    size_t out_off_ = 0;
    std::vector<uint8_t> in_;  // from TCP, not yet taken by the session
    size_t in_off_ = 0;
    std::vector<uint8_t> buf_;
    bool tcp_eof_ = false;
    bool fin_sent_ = false;
    bool shut_wr_ = false;
};

// One `stats conv=...` line (statistics: true), from the session's KCP state and the pump's bytes.
std::string stats_line(const kcp::TunnelSession& s, const StreamPump& p);

// Counters the core keeps per conversation, added to a worker's totals (retransmissions, and the
// channel's refusals as dropped_refused).
void add_session_counters(const kcp::TunnelSession& s, ipc::TunnelStats& out,
                          bool channel_refusals);

}  // namespace pfp::worker
