#include "common/kcp/rto.hpp"

#include <algorithm>

namespace pfp::kcp {

void RtoEstimator::sample(uint32_t rtt) noexcept {
    rtt = std::min(rtt, kMaxRto);
    last_ = rtt;
    if (!sampled_) {
        sampled_ = true;
        srtt_ = rtt;
        rttvar_ = rtt / 2;
    } else {
        const uint32_t delta = rtt > srtt_ ? rtt - srtt_ : srtt_ - rtt;
        rttvar_ = (3 * rttvar_ + delta) / 4;
        srtt_ = (7 * srtt_ + rtt) / 8;
    }
    srtt_ = std::max<uint32_t>(srtt_, 1);
    const uint32_t rto = srtt_ + std::max(interval_, 4 * rttvar_);
    rto_ = std::clamp(rto, min_rto_, kMaxRto);
}

}  // namespace pfp::kcp
