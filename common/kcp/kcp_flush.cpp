// Kcp: what goes out. flush() packs acks, window probes and push segments into datagrams of at
// most mtu bytes; next_deadline() says when it is due again.
#include <algorithm>
#include <cstring>

#include "common/kcp/kcp.hpp"

namespace pfp::kcp {

namespace {

constexpr uint32_t kProbeInitial = 7000;  // ms of zero window before the first window_ask
constexpr uint32_t kProbeLimit = 120000;

}  // namespace

void Kcp::put(const SegmentHeader& h, std::span<const uint8_t> payload, Output& out) {
    if (buf_.size() + kSegmentHeader + payload.size() > cfg_.mtu) drain(out);
    const size_t at = buf_.size();
    buf_.resize(at + kSegmentHeader + payload.size());
    encode_header(h, buf_.data() + at);
    if (!payload.empty())
        std::memcpy(buf_.data() + at + kSegmentHeader, payload.data(), payload.size());
}

void Kcp::drain(Output& out) {
    if (buf_.empty()) return;
    out.kcp_output(buf_);
    buf_.clear();
}

void Kcp::update_probe(uint32_t now) noexcept {
    if (rmt_wnd_ != 0) {
        probe_wait_ = 0;
        return;
    }
    if (probe_wait_ == 0) {
        probe_wait_ = kProbeInitial;
        probe_at_ = now + probe_wait_;
    } else if (diff32(now, probe_at_) >= 0) {
        probe_wait_ = std::min(probe_wait_ + probe_wait_ / 2, kProbeLimit);
        probe_at_ = now + probe_wait_;
        probe_ |= probe_ask;
    }
}

void Kcp::flush(uint32_t now, Output& out) {
    ts_flush_ = now;
    buf_.clear();
    SegmentHeader h;
    h.conv = conv_;
    h.wnd = free_window();
    h.una = rcv_nxt_;

    h.cmd = static_cast<uint8_t>(Command::ack);
    for (const auto& [sn, ts] : acks_) {
        h.sn = sn;
        h.ts = ts;
        put(h, {}, out);
    }
    stats_.acks_sent += acks_.size();
    acks_.clear();

    update_probe(now);
    h.sn = 0;
    h.ts = now;
    if (probe_ & probe_ask) {
        h.cmd = static_cast<uint8_t>(Command::window_ask);
        put(h, {}, out);
        ++stats_.window_probes;
    }
    if (probe_ & probe_tell) {
        h.cmd = static_cast<uint8_t>(Command::window_tell);
        put(h, {}, out);
    }
    probe_ = 0;

    // Admit queued segments while the window has room.
    const uint32_t window = send_window();
    while (!snd_queue_.empty() && diff32(snd_nxt_, snd_una_) < static_cast<int32_t>(window)) {
        Outgoing seg = std::move(snd_queue_.front());
        snd_queue_.pop_front();
        seg.sn = snd_nxt_++;
        snd_buf_.push_back(std::move(seg));
    }
    if (snd_buf_.empty()) snd_una_ = snd_nxt_;

    const uint32_t resend_after = cfg_.fast_resend != 0 ? cfg_.fast_resend : UINT32_MAX;
    const uint32_t rto_pad = cfg_.nodelay ? 0 : rto_.rto() >> 3;
    bool timed_out = false;
    bool fast = false;
    bool have_resend = false;
    fast_pending_ = false;
    h.cmd = static_cast<uint8_t>(Command::push);
    for (auto& seg : snd_buf_) {
        if (seg.acked) continue;
        bool send = false;
        if (seg.xmit == 0) {
            send = true;
            seg.rto = rto_.rto();
            seg.resend_at = now + seg.rto + rto_pad;
        } else if (diff32(now, seg.resend_at) >= 0) {
            send = true;
            timed_out = true;
            ++stats_.timeouts;
            seg.rto = std::min(cfg_.nodelay ? seg.rto + seg.rto / 2 : seg.rto * 2, kMaxRto);
            seg.resend_at = now + seg.rto;
        } else if (seg.fastack >= resend_after &&
                   (cfg_.fast_limit == 0 || seg.xmit <= cfg_.fast_limit)) {
            send = true;
            fast = true;
            ++stats_.fast_resends;
            seg.fastack = 0;
            seg.resend_at = now + seg.rto;
        }
        if (send) {
            ++seg.xmit;
            seg.ts = now;
            h.frg = seg.frg;
            h.ts = now;
            h.sn = seg.sn;
            h.len = static_cast<uint32_t>(seg.data.size());
            put(h, seg.data, out);
            ++stats_.segments_sent;
            if (seg.xmit >= cfg_.dead_link) dead_ = true;
        }
        if (!have_resend || diff32(seg.resend_at, earliest_resend_) < 0) {
            earliest_resend_ = seg.resend_at;
            have_resend = true;
        }
    }
    drain(out);

    if (!cfg_.no_congestion) {
        if (fast) {
            ssthresh_ =
                std::max<uint32_t>(static_cast<uint32_t>(diff32(snd_nxt_, snd_una_)) / 2, 2);
            cwnd_ = ssthresh_ + resend_after;
        }
        if (timed_out) {
            ssthresh_ = std::max<uint32_t>(cwnd_ / 2, 2);
            cwnd_ = 1;
        }
    }
}

std::optional<uint32_t> Kcp::next_deadline() const noexcept {
    std::optional<uint32_t> due;
    auto consider = [&due](uint32_t t) {
        if (!due || diff32(t, *due) < 0) due = t;
    };
    const uint32_t next_tick = ts_flush_ + cfg_.interval;
    const bool room = diff32(snd_nxt_, snd_una_) < static_cast<int32_t>(send_window());
    if (!acks_.empty() || probe_ != 0 || fast_pending_ || (!snd_queue_.empty() && room))
        consider(next_tick);
    if (!snd_buf_.empty()) consider(earliest_resend_);
    // A zero window with data waiting: the probe timer runs (started by the next flush).
    if (rmt_wnd_ == 0 && !snd_queue_.empty()) consider(probe_wait_ == 0 ? next_tick : probe_at_);
    return due;
}

}  // namespace pfp::kcp
