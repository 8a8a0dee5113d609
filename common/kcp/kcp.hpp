#pragma once
// One KCP conversation (docs/kcp-tunnel.md, "KCP"): reliable, ordered delivery of messages over
// an unreliable datagram path, written for this project from the protocol's published
// description. Message mode only: each send() is one message, split into at most 256 fragments
// and delivered whole by recv().
//
// The session does no I/O and reads no clock: the caller passes its millisecond clock `now` (any
// origin; comparisons wrap) to input() and flush(), and flush() hands finished datagrams to an
// Output. next_deadline() says when flush() must run again, or nothing while the session is idle,
// so one timer wheel can serve every session of a worker.
//
// Memory is bounded: at most max_send_queue segments wait to be sent or acknowledged, and at most
// 2 x rcv_wnd received segments are held (out of order, or complete but not yet read).
// Data path code: error codes, no exceptions (only the constructor throws, on a bad Config).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/kcp/rto.hpp"
#include "common/kcp/segment.hpp"

namespace pfp::kcp {

struct Config {
    uint32_t mtu = 1400;         // largest datagram flush() hands out (segment headers included)
    uint32_t snd_wnd = 32;       // segments in flight, at most
    uint32_t rcv_wnd = 128;      // segments accepted beyond the next expected one
    uint32_t interval = 100;     // ms between flushes while anything is pending
    bool nodelay = false;        // lower minimum RTO, 1.5x (not 2x) backoff, no RTO padding
    uint32_t fast_resend = 0;    // resend after this many acks of later segments; 0 = never
    uint32_t fast_limit = 5;     // no fast resend of a segment sent this many times; 0 = no limit
    bool no_congestion = false;  // nc: send window = min(snd_wnd, peer's window), no cwnd
    uint32_t min_rto = 0;        // 0: 30 ms with nodelay, else 100 ms
    uint32_t dead_link = 20;     // a segment sent this many times marks the link dead
    size_t max_message = 256 * 1024;  // bytes per message, both ways
    size_t max_send_queue = 0;        // segments queued + in flight; 0: 2 x snd_wnd + 256

    // The tunnel's tuning (nodelay 1, interval 10 ms, fast resend 2, no congestion control,
    // windows 1024/1024) for datagrams of `mtu` bytes.
    static Config fast(uint32_t mtu);
};

// Receives flush()'s datagrams; the span is valid only during the call.
class Output {
  public:
    virtual void kcp_output(std::span<const uint8_t> datagram) = 0;

  protected:
    ~Output() = default;
};

enum class Status {
    ok,
    would_block,  // send: the queue is full; recv: no whole message yet
    too_large,    // send: over max_message (or more than 256 fragments)
    broken,       // recv: the peer's fragments do not form a message within the limits
};
const char* to_string(Status s) noexcept;

struct Stats {
    uint64_t segments_sent = 0;  // push segments put on the wire, retransmissions included
    uint64_t timeouts = 0;       // retransmissions after an RTO expired
    uint64_t fast_resends = 0;   // retransmissions after fast_resend later acks
    uint64_t acks_sent = 0;
    uint64_t duplicates = 0;     // received push segments already held or delivered
    uint64_t out_of_window = 0;  // received push segments beyond the receive window
    uint64_t window_probes = 0;  // window_ask segments sent
    uint64_t bad_datagrams = 0;  // input() refusals
};

class Kcp {
  public:
    Kcp(uint32_t conv, const Config& config, uint32_t now);  // throws std::invalid_argument

    // Queues one message (copied). All or nothing.
    Status send(std::span<const uint8_t> message);
    // Takes the next whole message into `message` (replacing its contents).
    Status recv(std::vector<uint8_t>& message);
    // Size of the next whole message, if one is ready.
    std::optional<size_t> peek_size() const noexcept;

    // One datagram from the peer; the whole datagram is checked before any of it is used.
    InputError input(std::span<const uint8_t> datagram, uint32_t now);
    // Sends what is due: acks, window probes, new segments the window admits, retransmissions.
    void flush(uint32_t now, Output& out);
    // When flush() must run next (may be in the past); nothing while there is nothing to do.
    std::optional<uint32_t> next_deadline() const noexcept;

    uint32_t conv() const noexcept { return conv_; }
    size_t mss() const noexcept { return mss_; }
    bool dead() const noexcept { return dead_; }
    // Segments queued or in flight: the sender's backlog.
    size_t waiting_send() const noexcept { return snd_queue_.size() + snd_buf_.size(); }
    // Segments send() would still take.
    size_t send_room() const noexcept { return cfg_.max_send_queue - waiting_send(); }
    bool idle() const noexcept;  // nothing to send, to retransmit or to acknowledge
    // Received segments held (out of order, or in order but unread): at most 2 x rcv_wnd.
    size_t received_held() const noexcept { return rcv_queue_.size() + ring_used_; }
    uint32_t remote_window() const noexcept { return rmt_wnd_; }
    uint32_t cwnd() const noexcept { return cwnd_; }
    const RtoEstimator& rtt() const noexcept { return rto_; }
    const Stats& stats() const noexcept { return stats_; }

  private:
    struct Outgoing {
        uint32_t sn = 0;
        uint32_t ts = 0;
        uint32_t resend_at = 0;
        uint32_t rto = 0;
        uint32_t fastack = 0;
        uint32_t xmit = 0;
        uint8_t frg = 0;
        bool acked = false;
        std::vector<uint8_t> data;
    };
    struct Incoming {
        bool used = false;
        uint8_t frg = 0;
        std::vector<uint8_t> data;
    };
    enum Probe : uint8_t { probe_ask = 1, probe_tell = 2 };

    uint16_t free_window() const noexcept;
    uint32_t send_window() const noexcept;
    void on_una(uint32_t una) noexcept;
    void on_ack(uint32_t sn) noexcept;
    void on_push(const SegmentView& seg) noexcept;
    void move_to_queue() noexcept;
    void grow_cwnd() noexcept;
    void update_probe(uint32_t now) noexcept;

    // flush() helpers: datagrams are built in buf_ and handed out when the next piece won't fit.
    void put(const SegmentHeader& h, std::span<const uint8_t> payload, Output& out);
    void drain(Output& out);

    uint32_t conv_;
    Config cfg_;
    size_t mss_;
    RtoEstimator rto_;

    uint32_t snd_una_ = 0;  // oldest unacknowledged sn (== snd_nxt_ when nothing is in flight)
    uint32_t snd_nxt_ = 0;
    uint32_t rcv_nxt_ = 0;
    uint32_t rmt_wnd_;
    uint32_t cwnd_ = 1;
    uint32_t ssthresh_ = 2;
    uint32_t acked_in_round_ = 0;  // congestion avoidance: acks counted toward the next cwnd++

    std::deque<Outgoing> snd_queue_;                   // not yet given a sequence number
    std::deque<Outgoing> snd_buf_;                     // in flight; entry i has sn snd_una_ + i
    std::vector<Incoming> rcv_ring_;                   // out of order; slot sn % rcv_wnd
    size_t ring_used_ = 0;                             // slots of rcv_ring_ in use
    std::deque<Incoming> rcv_queue_;                   // in order, waiting for recv()
    std::vector<std::pair<uint32_t, uint32_t>> acks_;  // (sn, ts) to acknowledge

    uint32_t ts_flush_;             // last flush
    uint32_t earliest_resend_ = 0;  // min resend_at over snd_buf_ as of the last flush
    bool fast_pending_ = false;     // an in-flight segment reached fast_resend
    uint8_t probe_ = 0;
    uint32_t probe_wait_ = 0;
    uint32_t probe_at_ = 0;
    bool dead_ = false;

    std::vector<uint8_t> buf_;
    Stats stats_;
};

}  // namespace pfp::kcp
