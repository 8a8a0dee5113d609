#include "common/l4_checksum.hpp"

#include "common/byte_order.hpp"

namespace pfp {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

}  // namespace

uint16_t checksum_finish(uint64_t sum) noexcept {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

uint64_t checksum_add(uint64_t sum, std::span<const uint8_t> data) noexcept {
    size_t i = 0;
    for (; i + 1 < data.size(); i += 2) sum += be16(data.data() + i);
    if (i < data.size()) sum += static_cast<uint64_t>(data[i]) << 8;
    return sum;
}

bool fill_l4_checksum(std::span<uint8_t> p) noexcept {
    if (p.empty()) return false;
    const unsigned version = p[0] >> 4;
    size_t l4 = 0;
    uint8_t proto = 0;
    uint64_t sum = 0;
    if (version == 4) {
        if (p.size() < 20) return false;
        l4 = static_cast<size_t>(p[0] & 0x0f) * 4;
        if (l4 < 20 || be16(p.data() + 2) != p.size() || l4 > p.size()) return false;
        if ((be16(p.data() + 6) & 0x3fff) != 0) return false;  // MF or an offset: a fragment
        proto = p[9];
        sum = checksum_add(0, p.subspan(12, 8));  // source and destination
    } else if (version == 6) {
        l4 = 40;
        if (p.size() < l4 || be16(p.data() + 4) + l4 != p.size()) return false;
        proto = p[6];  // no extension headers: the next header is TCP or UDP or left alone
        sum = checksum_add(0, p.subspan(8, 32));
    } else {
        return false;
    }
    const size_t len = p.size() - l4;
    size_t field = 0;
    if (proto == kTcp && len >= 20) {
        field = l4 + 16;
    } else if (proto == kUdp && len >= 8) {
        field = l4 + 6;
        if (version == 4 && p[field] == 0 && p[field + 1] == 0) return false;  // no checksum
    } else {
        return false;
    }
    sum += proto;
    sum += len;  // the pseudo-header's length: 16 bits (IPv4) or 32 (IPv6), the same sum
    p[field] = 0;
    p[field + 1] = 0;
    uint16_t c = checksum_finish(checksum_add(sum, p.subspan(l4)));
    if (c == 0 && proto == kUdp) c = 0xffff;  // 0 means "none" for UDP
    p[field] = static_cast<uint8_t>(c >> 8);
    p[field + 1] = static_cast<uint8_t>(c & 0xff);
    return true;
}

}  // namespace pfp
