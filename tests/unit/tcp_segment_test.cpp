// Whole TCP packets cut into segments that fit a route's MTU (common/tcp_segment.hpp): the
// segments put back together are the original's payload at the original's sequence numbers,
// each fits, each carries the original's headers and options with its own lengths, IPv4 ID and
// checksums (verified as a receiver does), and FIN, PSH and CWR sit where TCP expects them.
// Packets that are not to be cut come back as 0 segments.
#include "common/tcp_segment.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "common/byte_order.hpp"
#include "common/l4_checksum.hpp"

using pfp::checksum_add;
using pfp::segment_tcp;

namespace {

constexpr uint8_t kFin = 0x01, kPsh = 0x08, kAck = 0x10, kUrg = 0x20, kCwr = 0x80;

using pfp::be16;
using pfp::be32;

// A TCP packet with a 12-byte option block (NOP NOP timestamps), seq 4,000,000,000 (it wraps
// while cut), `flags`, and `payload` bytes of a pattern.
std::vector<uint8_t> tcp_packet(bool v6, size_t payload, uint8_t flags) {
    const size_t ip = v6 ? 40 : 20, tcp = 32;
    std::vector<uint8_t> p(ip + tcp + payload, 0);
    if (v6) {
        p[0] = 0x60;
        p[4] = static_cast<uint8_t>((tcp + payload) >> 8);
        p[5] = static_cast<uint8_t>(tcp + payload);
        p[6] = 6;
        p[7] = 64;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
    } else {
        p[0] = 0x45;
        p[2] = static_cast<uint8_t>(p.size() >> 8);
        p[3] = static_cast<uint8_t>(p.size());
        p[4] = 0xff;  // ID 0xfffe: wraps while cut
        p[5] = 0xfe;
        p[6] = 0x40;  // DF
        p[8] = 64;
        p[9] = 6;
        const uint8_t addrs[8] = {10, 98, 0, 1, 10, 98, 0, 2};
        std::copy(addrs, addrs + 8, p.begin() + 12);
    }
    uint8_t* t = p.data() + ip;
    t[0] = 0x9c;  // source port 40000
    t[1] = 0x40;
    t[3] = 80;
    const uint32_t seq = 4'000'000'000u;
    for (int i = 0; i < 4; ++i) t[4 + i] = static_cast<uint8_t>(seq >> (24 - 8 * i));
    t[11] = 9;  // ack number
    t[12] = 8 << 4;
    t[13] = flags;
    t[14] = 0xff;  // window
    const uint8_t options[12] = {1, 1, 8, 10, 0, 0, 0, 42, 0, 0, 0, 7};
    std::copy(options, options + 12, t + 20);
    for (size_t i = 0; i < payload; ++i) t[tcp + i] = static_cast<uint8_t>(i * 13 + 5);
    pfp::fill_l4_checksum(p);
    return p;
}

bool l4_verifies(std::span<const uint8_t> p) {
    const bool v4 = (p[0] >> 4) == 4;
    const size_t ip = v4 ? 20 : 40;
    uint64_t sum = v4 ? checksum_add(0, p.subspan(12, 8)) : checksum_add(0, p.subspan(8, 32));
    sum += 6;
    sum += p.size() - ip;
    sum = checksum_add(sum, p.subspan(ip));
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return sum == 0xffff;
}

bool ip_header_verifies(std::span<const uint8_t> p) {
    uint64_t sum = checksum_add(0, p.subspan(0, 20));
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return sum == 0xffff;
}

TEST(TcpSegment, SegmentsPutBackTogetherAreTheOriginalAndEachIsAValidPacket) {
    for (const bool v6 : {false, true}) {
        SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
        const size_t ip = v6 ? 40 : 20, header = ip + 32, payload = 60000;
        const auto original = tcp_packet(v6, payload, kAck | kPsh | kFin | kCwr);
        std::vector<uint8_t> out(128 << 10);
        std::vector<size_t> lengths(64);
        const size_t n = segment_tcp(original, 1500, out, lengths);
        const size_t mss = 1500 - header;
        ASSERT_EQ(n, (payload + mss - 1) / mss);
        std::vector<uint8_t> joined;
        size_t at = 0;
        for (size_t i = 0; i < n; ++i) {
            SCOPED_TRACE("segment " + std::to_string(i));
            std::span<const uint8_t> s(out.data() + at, lengths[i]);
            at += lengths[i];
            ASSERT_LE(s.size(), 1500u);
            ASSERT_GT(s.size(), header);
            if (i + 1 < n) {
                EXPECT_EQ(s.size(), 1500u);
            }
            if (v6) {
                EXPECT_EQ(be16(s.data() + 4) + 40u, s.size());
            } else {
                EXPECT_EQ(be16(s.data() + 2), s.size());
                EXPECT_EQ(be16(s.data() + 4), static_cast<uint16_t>(0xfffe + i));
                EXPECT_EQ(s[6], 0x40) << "DF kept";
                EXPECT_TRUE(ip_header_verifies(s));
            }
            EXPECT_TRUE(
                std::equal(s.begin() + ip + 20, s.begin() + header, original.begin() + ip + 20))
                << "options kept";
            EXPECT_EQ(be32(s.data() + ip + 4), static_cast<uint32_t>(4'000'000'000u + i * mss));
            EXPECT_EQ(be32(s.data() + ip + 8), 9u) << "ack number kept";
            const uint8_t f = s[ip + 13];
            EXPECT_TRUE(f & kAck);
            EXPECT_EQ(bool(f & kFin), i + 1 == n);
            EXPECT_EQ(bool(f & kPsh), i + 1 == n);
            EXPECT_EQ(bool(f & kCwr), i == 0);
            EXPECT_TRUE(l4_verifies(s));
            joined.insert(joined.end(), s.begin() + header, s.end());
        }
        EXPECT_TRUE(
            std::equal(joined.begin(), joined.end(), original.begin() + header, original.end()));
        EXPECT_EQ(joined.size(), payload);
    }
}

TEST(TcpSegment, PacketsNotToCutGiveNoSegments) {
    std::vector<uint8_t> out(128 << 10);
    std::vector<size_t> lengths(64);
    const auto good = tcp_packet(false, 3000, kAck);
    ASSERT_EQ(segment_tcp(good, 1500, out, lengths), 3u);
    auto udp = good;
    udp[9] = 17;
    EXPECT_EQ(segment_tcp(udp, 1500, out, lengths), 0u);
    auto fragment = good;
    fragment[6] = 0x20;  // MF
    EXPECT_EQ(segment_tcp(fragment, 1500, out, lengths), 0u);
    auto urgent = tcp_packet(false, 3000, kAck | kUrg);
    EXPECT_EQ(segment_tcp(urgent, 1500, out, lengths), 0u);
    auto ext = tcp_packet(true, 3000, kAck);
    ext[6] = 0;  // hop-by-hop options first
    EXPECT_EQ(segment_tcp(ext, 1500, out, lengths), 0u);
    auto short_by_one = good;
    short_by_one.pop_back();
    EXPECT_EQ(segment_tcp(short_by_one, 1500, out, lengths), 0u);
    EXPECT_EQ(segment_tcp(tcp_packet(false, 0, kAck | kFin), 40, out, lengths), 0u) << "no payload";
    EXPECT_EQ(segment_tcp(good, 52, out, lengths), 0u) << "headers alone fill max_packet";
    std::vector<size_t> two(2);
    EXPECT_EQ(segment_tcp(good, 1500, out, two), 0u) << "more segments than lengths";
    std::vector<uint8_t> small(3000);
    EXPECT_EQ(segment_tcp(good, 1500, small, lengths), 0u) << "more bytes than out";
    EXPECT_EQ(segment_tcp(std::span<const uint8_t>(good).first(19), 1500, out, lengths), 0u);
}

}  // namespace
