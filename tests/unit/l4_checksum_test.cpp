// TCP and UDP checksums filled in on whole packets: the result verifies (pseudo-header + segment
// sums to 0xffff, RFC 1071's receiver check), whatever the field held before (a pseudo-header-only
// sum, as checksum offload leaves it); packets it must not touch stay byte for byte the same.
#include "common/l4_checksum.hpp"

#include <gtest/gtest.h>

#include <vector>

using pfp::checksum_add;
using pfp::fill_l4_checksum;

namespace {

std::vector<uint8_t> ipv4(uint8_t proto, size_t l4_len) {
    std::vector<uint8_t> p(20 + l4_len, 0);
    p[0] = 0x45;
    p[2] = static_cast<uint8_t>(p.size() >> 8);
    p[3] = static_cast<uint8_t>(p.size());
    p[8] = 64;
    p[9] = proto;
    const uint8_t addrs[8] = {10, 98, 0, 1, 10, 98, 0, 2};
    std::copy(addrs, addrs + 8, p.begin() + 12);
    for (size_t i = 20; i < p.size(); ++i) p[i] = static_cast<uint8_t>(i * 7 + 3);
    return p;
}

std::vector<uint8_t> ipv6(uint8_t proto, size_t l4_len) {
    std::vector<uint8_t> p(40 + l4_len, 0);
    p[0] = 0x60;
    p[4] = static_cast<uint8_t>(l4_len >> 8);
    p[5] = static_cast<uint8_t>(l4_len);
    p[6] = proto;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = 1;
    p[24] = 0xfd;
    p[39] = 2;
    for (size_t i = 40; i < p.size(); ++i) p[i] = static_cast<uint8_t>(i * 5 + 1);
    return p;
}

// The receiver's check: the sum over the pseudo-header and the whole segment folds to 0xffff.
bool verifies(const std::vector<uint8_t>& p) {
    const bool v4 = (p[0] >> 4) == 4;
    const size_t l4 = v4 ? 20 : 40;
    std::span<const uint8_t> all(p);
    uint64_t sum = v4 ? checksum_add(0, all.subspan(12, 8)) : checksum_add(0, all.subspan(8, 32));
    sum += v4 ? p[9] : p[6];
    sum += p.size() - l4;
    sum = checksum_add(sum, all.subspan(l4));
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return sum == 0xffff;
}

TEST(L4Checksum, TcpAndUdpOfBothFamiliesVerifyAfterwardsWhateverTheFieldHeld) {
    for (const auto& make : {ipv4, ipv6}) {
        for (const uint8_t proto : {uint8_t{6}, uint8_t{17}}) {
            for (const size_t len : {size_t{20}, size_t{21}, size_t{1380}, size_t{65000}}) {
                std::vector<uint8_t> p = make(proto, len);
                const size_t field = ((p[0] >> 4) == 4 ? 20 : 40) + (proto == 6 ? 16 : 6);
                p[field] = 0x12;  // a partial (pseudo-header) sum, or garbage
                p[field + 1] = 0x34;
                ASSERT_TRUE(fill_l4_checksum(p)) << int(proto) << " " << len;
                EXPECT_TRUE(verifies(p)) << int(proto) << " " << len;
                const std::vector<uint8_t> once = p;
                ASSERT_TRUE(fill_l4_checksum(p));  // a right checksum stays what it is
                EXPECT_EQ(p, once);
            }
        }
    }
}

TEST(L4Checksum, PacketsItMustNotTouchStayUnchanged) {
    std::vector<std::vector<uint8_t>> keep;
    keep.push_back(ipv4(1, 64));   // ICMP: computed in software by the sender
    keep.push_back(ipv6(58, 64));  // ICMPv6
    keep.push_back(ipv6(0, 64));   // an extension header first
    auto frag = ipv4(17, 100);
    frag[6] = 0x20;  // more fragments
    keep.push_back(frag);
    auto later = ipv4(6, 100);
    later[7] = 0x10;  // a later fragment's offset
    keep.push_back(later);
    auto none = ipv4(17, 100);  // UDP over IPv4 with checksum 0: "none"
    none[26] = 0;
    none[27] = 0;
    keep.push_back(none);
    auto short_len = ipv4(6, 100);
    short_len[3] ^= 1;  // the header's length is not the packet's
    keep.push_back(short_len);
    keep.push_back(ipv4(6, 10));  // too short for a TCP header
    keep.push_back({0x45, 0, 0});
    keep.push_back({});
    for (auto& p : keep) {
        const std::vector<uint8_t> before = p;
        EXPECT_FALSE(fill_l4_checksum(p));
        EXPECT_EQ(p, before);
    }
}

}  // namespace
