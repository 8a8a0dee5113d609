#include "common/tcp_segment.hpp"

#include <algorithm>
#include <cstring>

#include "common/byte_order.hpp"
#include "common/l4_checksum.hpp"

namespace pfp {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kFin = 0x01, kPsh = 0x08, kUrg = 0x20, kCwr = 0x80;

}  // namespace

size_t segment_tcp(std::span<const uint8_t> p, size_t max_packet, std::span<uint8_t> out,
                   std::span<size_t> lengths) noexcept {
    if (p.size() < 20) return 0;
    const unsigned version = p[0] >> 4;
    size_t ip = 0;
    if (version == 4) {
        ip = static_cast<size_t>(p[0] & 0x0f) * 4;
        if (ip < 20 || be16(p.data() + 2) != p.size() || p[9] != kTcp) return 0;
        if ((be16(p.data() + 6) & 0x3fff) != 0) return 0;  // MF or an offset: a fragment
    } else if (version == 6) {
        ip = 40;
        if (p.size() < ip || size_t{be16(p.data() + 4)} + ip != p.size() || p[6] != kTcp) return 0;
    } else {
        return 0;
    }
    if (p.size() < ip + 20) return 0;
    const size_t tcp = static_cast<size_t>(p[ip + 12] >> 4) * 4;
    const uint8_t flags = p[ip + 13];
    if (tcp < 20 || ip + tcp > p.size() || (flags & kUrg)) return 0;
    const size_t header = ip + tcp;
    const size_t payload = p.size() - header;
    if (payload == 0 || max_packet <= header) return 0;
    const size_t mss = max_packet - header;
    const size_t n = (payload + mss - 1) / mss;
    if (n > lengths.size() || n * header + payload > out.size()) return 0;

    const uint32_t seq = be32(p.data() + ip + 4);
    const uint16_t id = version == 4 ? be16(p.data() + 4) : 0;
    size_t at = 0;
    for (size_t i = 0; i < n; ++i) {
        const size_t offset = i * mss;
        const size_t len = std::min(mss, payload - offset);
        const size_t total = header + len;
        uint8_t* s = out.data() + at;
        std::memcpy(s, p.data(), header);
        std::memcpy(s + header, p.data() + header + offset, len);
        if (version == 4) {
            put_be16(s + 2, total);
            put_be16(s + 4, static_cast<uint16_t>(id + i));
            s[10] = s[11] = 0;
            put_be16(s + 10, checksum_finish(checksum_add(0, {s, ip})));
        } else {
            put_be16(s + 4, total - ip);
        }
        put_be32(s + ip + 4, static_cast<uint32_t>(seq + offset));
        uint8_t f = flags;
        if (i + 1 < n) f &= static_cast<uint8_t>(~(kFin | kPsh));
        if (i > 0) f &= static_cast<uint8_t>(~kCwr);
        s[ip + 13] = f;
        fill_l4_checksum({s, total});
        lengths[i] = total;
        at += total;
    }
    return n;
}

}  // namespace pfp
