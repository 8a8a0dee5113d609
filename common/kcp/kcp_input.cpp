// Kcp: what arrives from the peer. A datagram is checked whole first, so a bad one changes no
// state; then each segment updates the peer's window, releases what it acknowledges and files
// what it carries.
#include <algorithm>

#include "common/kcp/kcp.hpp"

namespace pfp::kcp {

InputError Kcp::input(std::span<const uint8_t> datagram, uint32_t now) {
    if (const InputError e = check_datagram(datagram, conv_, mss_); e != InputError::none) {
        ++stats_.bad_datagrams;
        return e;
    }
    const uint32_t una_before = snd_una_;
    bool acked_any = false;
    uint32_t max_ack = 0;
    SegmentReader reader(datagram, conv_, mss_);
    SegmentView seg;
    while (reader.next(seg)) {
        const SegmentHeader& h = seg.header;
        rmt_wnd_ = h.wnd;
        on_una(h.una);
        switch (static_cast<Command>(h.cmd)) {
            case Command::ack:
                // ts echoes our clock when we sent it; a value from the future is no sample.
                if (diff32(now, h.ts) >= 0) rto_.sample(static_cast<uint32_t>(diff32(now, h.ts)));
                on_ack(h.sn);
                if (!acked_any || diff32(h.sn, max_ack) > 0) max_ack = h.sn;
                acked_any = true;
                break;
            case Command::push:
                on_push(seg);
                break;
            case Command::window_ask:
                probe_ |= probe_tell;
                break;
            case Command::window_tell:
                break;  // its wnd field is the news
        }
    }
    // Fast retransmit: every in-flight segment below the highest acked one was skipped once more.
    if (acked_any && cfg_.fast_resend != 0) {
        for (auto& s : snd_buf_) {
            if (diff32(s.sn, max_ack) >= 0) break;
            if (!s.acked && ++s.fastack >= cfg_.fast_resend) fast_pending_ = true;
        }
    }
    move_to_queue();
    if (diff32(snd_una_, una_before) > 0) grow_cwnd();
    return InputError::none;
}

void Kcp::on_una(uint32_t una) noexcept {
    // Only what we sent can be acknowledged: snd_buf_ holds nothing at or beyond snd_nxt_.
    while (!snd_buf_.empty() && diff32(una, snd_buf_.front().sn) > 0) snd_buf_.pop_front();
    while (!snd_buf_.empty() && snd_buf_.front().acked) snd_buf_.pop_front();
    snd_una_ = snd_buf_.empty() ? snd_nxt_ : snd_buf_.front().sn;
}

void Kcp::on_ack(uint32_t sn) noexcept {
    const int32_t i = diff32(sn, snd_una_);
    if (i < 0 || static_cast<size_t>(i) >= snd_buf_.size()) return;
    auto& s = snd_buf_[static_cast<size_t>(i)];
    s.acked = true;
    s.data = {};
    on_una(snd_una_);  // pops the front if that was it
}

void Kcp::on_push(const SegmentView& seg) noexcept {
    const SegmentHeader& h = seg.header;
    const int32_t ahead = diff32(h.sn, rcv_nxt_);
    if (ahead >= static_cast<int32_t>(cfg_.rcv_wnd)) {
        ++stats_.out_of_window;
        return;  // no ack: the peer resends when the window has moved
    }
    // Acknowledge everything inside or below the window (a duplicate's ack may have been lost).
    // The list is bounded; an ack dropped here is replaced by the peer's next retransmission.
    if (acks_.size() < 2 * size_t{cfg_.rcv_wnd}) acks_.emplace_back(h.sn, h.ts);
    if (ahead < 0) {
        ++stats_.duplicates;
        return;
    }
    Incoming& slot = rcv_ring_[h.sn % cfg_.rcv_wnd];
    if (slot.used) {
        ++stats_.duplicates;
        return;
    }
    slot.used = true;
    ++ring_used_;
    slot.frg = h.frg;
    slot.data.assign(seg.payload.begin(), seg.payload.end());
}

void Kcp::move_to_queue() noexcept {
    while (rcv_queue_.size() < cfg_.rcv_wnd) {
        Incoming& slot = rcv_ring_[rcv_nxt_ % cfg_.rcv_wnd];
        if (!slot.used) break;
        rcv_queue_.push_back(std::move(slot));
        slot = Incoming{};
        --ring_used_;
        ++rcv_nxt_;
    }
}

void Kcp::grow_cwnd() noexcept {
    if (cfg_.no_congestion || cwnd_ >= rmt_wnd_) return;
    if (cwnd_ < ssthresh_) {
        ++cwnd_;  // slow start
    } else if (++acked_in_round_ >= cwnd_) {
        acked_in_round_ = 0;  // congestion avoidance: one more per window's worth of progress
        ++cwnd_;
    }
    cwnd_ = std::min(cwnd_, std::max<uint32_t>(rmt_wnd_, 1));
}

}  // namespace pfp::kcp
