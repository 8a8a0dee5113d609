#include "common/address_order.hpp"

#include <cstddef>

namespace pfp {

std::vector<SockAddr> interleave_families(const std::vector<SockAddr>& preferred) {
    if (preferred.empty()) return {};
    const int first = preferred.front().family();
    std::vector<const SockAddr*> same, other;
    for (const SockAddr& a : preferred) (a.family() == first ? same : other).push_back(&a);
    std::vector<SockAddr> out;
    out.reserve(preferred.size());
    for (size_t i = 0; i < same.size() || i < other.size(); ++i) {
        if (i < same.size()) out.push_back(*same[i]);
        if (i < other.size()) out.push_back(*other[i]);
    }
    return out;
}

}  // namespace pfp
