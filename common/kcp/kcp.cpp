// Kcp: construction, the application side (send, recv) and state queries. Input is in
// kcp_input.cpp, output in kcp_flush.cpp.
#include "common/kcp/kcp.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace pfp::kcp {

namespace {

constexpr size_t kMaxFragments = 256;  // frg is one byte and counts down to 0

}  // namespace

Config Config::fast(uint32_t mtu) {
    Config c;
    c.mtu = mtu;
    c.snd_wnd = 1024;
    c.rcv_wnd = 1024;
    c.interval = 10;
    c.nodelay = true;
    c.fast_resend = 2;
    c.no_congestion = true;
    return c;
}

const char* to_string(Status s) noexcept {
    switch (s) {
        case Status::ok:
            return "ok";
        case Status::would_block:
            return "would block";
        case Status::too_large:
            return "message too large";
        case Status::broken:
            return "malformed message from peer";
    }
    return "?";
}

Kcp::Kcp(uint32_t conv, const Config& config, uint32_t now)
    : conv_(conv),
      cfg_(config),
      mss_(config.mtu > kSegmentHeader ? config.mtu - kSegmentHeader : 0),
      rto_(config.min_rto != 0 ? config.min_rto : (config.nodelay ? 30 : 100), config.interval),
      rmt_wnd_(config.rcv_wnd),
      ts_flush_(now) {
    auto bad = [](const std::string& what) { throw std::invalid_argument("KCP config: " + what); };
    if (cfg_.mtu < kSegmentHeader + 1 || cfg_.mtu > 65535) bad("mtu must be 25..65535");
    if (cfg_.snd_wnd == 0 || cfg_.snd_wnd > 65535) bad("snd_wnd must be 1..65535");
    if (cfg_.rcv_wnd == 0 || cfg_.rcv_wnd > 65535) bad("rcv_wnd must be 1..65535");
    if (cfg_.interval == 0 || cfg_.interval > 5000) bad("interval must be 1..5000 ms");
    if (cfg_.dead_link == 0) bad("dead_link must be at least 1");
    if (cfg_.max_send_queue == 0) cfg_.max_send_queue = 2 * size_t{cfg_.snd_wnd} + 256;
    // A largest message must fit in the queue, and its fragments in the peer's receive queue.
    const size_t max_frags = std::min<size_t>({kMaxFragments, cfg_.rcv_wnd, cfg_.max_send_queue});
    cfg_.max_message = std::min(cfg_.max_message, max_frags * mss_);
    rcv_ring_.resize(cfg_.rcv_wnd);
    buf_.reserve(cfg_.mtu);
}

Status Kcp::send(std::span<const uint8_t> message) {
    if (message.size() > cfg_.max_message) return Status::too_large;
    const size_t count = message.empty() ? 1 : (message.size() + mss_ - 1) / mss_;
    if (waiting_send() + count > cfg_.max_send_queue) return Status::would_block;
    for (size_t i = 0; i < count; ++i) {
        Outgoing seg;
        const size_t off = std::min(i * mss_, message.size());
        const size_t len = std::min(mss_, message.size() - off);
        seg.data.assign(message.data() + off, message.data() + off + len);
        seg.frg = static_cast<uint8_t>(count - 1 - i);
        snd_queue_.push_back(std::move(seg));
    }
    return Status::ok;
}

std::optional<size_t> Kcp::peek_size() const noexcept {
    if (rcv_queue_.empty()) return std::nullopt;
    const size_t frags = size_t{rcv_queue_.front().frg} + 1;
    if (rcv_queue_.size() < frags) return std::nullopt;
    size_t size = 0;
    for (size_t i = 0; i < frags; ++i) {
        if (rcv_queue_[i].frg != frags - 1 - i) return std::nullopt;  // recv() says broken
        size += rcv_queue_[i].data.size();
    }
    return size;
}

Status Kcp::recv(std::vector<uint8_t>& message) {
    message.clear();
    if (rcv_queue_.empty()) return Status::would_block;
    const size_t frags = size_t{rcv_queue_.front().frg} + 1;
    // The fragments must count down to 0, and the whole message must be able to arrive.
    if (frags > cfg_.rcv_wnd) return Status::broken;
    const size_t have = std::min(frags, rcv_queue_.size());
    size_t size = 0;
    for (size_t i = 0; i < have; ++i) {
        if (rcv_queue_[i].frg != frags - 1 - i) return Status::broken;
        size += rcv_queue_[i].data.size();
    }
    if (size > cfg_.max_message) return Status::broken;
    if (have < frags) return Status::would_block;
    const bool was_full = rcv_queue_.size() >= cfg_.rcv_wnd;
    message.reserve(size);
    for (size_t i = 0; i < frags; ++i) {
        const auto& d = rcv_queue_.front().data;
        message.insert(message.end(), d.begin(), d.end());
        rcv_queue_.pop_front();
    }
    move_to_queue();
    // The peer saw a zero window: tell it the window reopened rather than wait for its probe.
    if (was_full && rcv_queue_.size() < cfg_.rcv_wnd) probe_ |= probe_tell;
    return Status::ok;
}

uint16_t Kcp::free_window() const noexcept {
    const size_t used = rcv_queue_.size();
    return static_cast<uint16_t>(used < cfg_.rcv_wnd ? cfg_.rcv_wnd - used : 0);
}

uint32_t Kcp::send_window() const noexcept {
    uint32_t w = std::min(cfg_.snd_wnd, rmt_wnd_);
    if (!cfg_.no_congestion) w = std::min(w, cwnd_);
    return w;
}

bool Kcp::idle() const noexcept {
    return snd_queue_.empty() && snd_buf_.empty() && acks_.empty() && probe_ == 0;
}

}  // namespace pfp::kcp
