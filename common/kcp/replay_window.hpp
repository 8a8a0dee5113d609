#pragma once
// The receiver's anti-replay window (docs/kcp-tunnel.md, "Replay"): the highest sequence
// accepted so far and a bitmap of the 64 below and including it. A sequence is fresh if it is
// above the highest, or inside the window and not yet seen; anything older is refused. check()
// runs before authentication and commit() only after, so forged datagrams never move the window.
#include <cstdint>

namespace pfp::kcp {

class ReplayWindow {
  public:
    static constexpr uint64_t kSize = 64;

    bool check(uint64_t seq) const noexcept {
        if (!any_ || seq > top_) return true;
        const uint64_t back = top_ - seq;
        return back < kSize && ((bits_ >> back) & 1) == 0;
    }
    void commit(uint64_t seq) noexcept {
        if (!any_) {
            any_ = true;
            top_ = seq;
            bits_ = 1;
        } else if (seq > top_) {
            const uint64_t shift = seq - top_;
            bits_ = shift >= kSize ? 1 : (bits_ << shift) | 1;
            top_ = seq;
        } else {
            bits_ |= uint64_t{1} << (top_ - seq);
        }
    }
    uint64_t highest() const noexcept { return top_; }

  private:
    uint64_t top_ = 0;
    uint64_t bits_ = 0;  // bit i: top_ - i was accepted
    bool any_ = false;
};

}  // namespace pfp::kcp
