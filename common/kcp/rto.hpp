#pragma once
// Retransmission timeout from round-trip samples, in the manner of RFC 6298 (smoothed RTT and
// its mean deviation, gains 1/8 and 1/4), in whole milliseconds as KCP keeps them. The deviation
// term is at least the flush interval, since a segment's ack can wait that long at the peer.
#include <cstdint>

namespace pfp::kcp {

inline constexpr uint32_t kInitialRto = 200;  // before the first sample
inline constexpr uint32_t kMaxRto = 60000;

class RtoEstimator {
  public:
    RtoEstimator(uint32_t min_rto, uint32_t interval) noexcept
        : min_rto_(min_rto), interval_(interval) {}

    void sample(uint32_t rtt) noexcept;
    uint32_t rto() const noexcept { return rto_; }
    uint32_t srtt() const noexcept { return srtt_; }
    uint32_t rttvar() const noexcept { return rttvar_; }
    uint32_t last() const noexcept { return last_; }  // the latest sample (0 before the first)

  private:
    uint32_t min_rto_;
    uint32_t interval_;
    uint32_t srtt_ = 0;
    uint32_t rttvar_ = 0;
    uint32_t last_ = 0;
    uint32_t rto_ = kInitialRto;
    bool sampled_ = false;
};

}  // namespace pfp::kcp
