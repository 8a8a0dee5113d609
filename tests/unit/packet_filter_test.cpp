// The injecting side's packet filters (common/packet_filter.hpp): a table of packets, IPv4 and
// IPv6, each with the filter it meets and the reason it must be dropped for (or none); the
// reserved ranges at their edges; the port rule with fragments and extension headers; and the
// text forms of addresses and port ranges.
#include "common/packet_filter.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pfp {
namespace {

using Bytes = std::vector<uint8_t>;

PacketAddress Ip(const std::string& text) {
    auto a = parse_ip_address(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(PacketAddress{});
}

// An IPv4 packet from src to dst with protocol `proto` and a transport header whose source port
// is `sport` (payload 8 bytes when `l4` is true, else none).
Bytes V4(const std::string& src, const std::string& dst, uint8_t proto = 17, uint16_t sport = 5000,
         bool l4 = true, uint16_t frag_offset = 0) {
    Bytes p(20 + (l4 ? 8 : 0));
    p[0] = 0x45;
    p[2] = static_cast<uint8_t>(p.size() >> 8);
    p[3] = static_cast<uint8_t>(p.size());
    p[6] = static_cast<uint8_t>(frag_offset >> 8);
    p[7] = static_cast<uint8_t>(frag_offset);
    p[8] = 64;
    p[9] = proto;
    const PacketAddress s = Ip(src), d = Ip(dst);
    std::copy_n(s.bytes.begin(), 4, p.begin() + 12);
    std::copy_n(d.bytes.begin(), 4, p.begin() + 16);
    if (l4) {
        p[20] = static_cast<uint8_t>(sport >> 8);
        p[21] = static_cast<uint8_t>(sport);
    }
    return p;
}

// An IPv6 packet; `ext` extension headers (each 8 bytes, next header chained) before a UDP or TCP
// header with source port `sport`.
Bytes V6(const std::string& src, const std::string& dst, uint8_t proto = 17, uint16_t sport = 5000,
         std::vector<uint8_t> ext = {}, uint16_t frag_field = 0) {
    Bytes p(40 + ext.size() * 8 + 8);
    p[0] = 0x60;
    const size_t payload = p.size() - 40;
    p[4] = static_cast<uint8_t>(payload >> 8);
    p[5] = static_cast<uint8_t>(payload);
    p[6] = ext.empty() ? proto : ext[0];
    p[7] = 64;
    const PacketAddress s = Ip(src), d = Ip(dst);
    std::copy(s.bytes.begin(), s.bytes.end(), p.begin() + 8);
    std::copy(d.bytes.begin(), d.bytes.end(), p.begin() + 24);
    size_t off = 40;
    for (size_t i = 0; i < ext.size(); ++i, off += 8) {
        p[off] = i + 1 < ext.size() ? ext[i + 1] : proto;
        p[off + 1] = 0;  // (0 + 1) * 8 bytes for options/routing headers
        if (ext[i] == 44) {
            p[off + 2] = static_cast<uint8_t>(frag_field >> 8);
            p[off + 3] = static_cast<uint8_t>(frag_field);
        }
        if (ext[i] == 51) p[off + 1] = 0;  // AH: (0 + 2) * 4 = 8 bytes
    }
    p[off] = static_cast<uint8_t>(sport >> 8);
    p[off + 1] = static_cast<uint8_t>(sport);
    return p;
}

PacketFilter Incoming(const std::vector<std::string>& enclave) {
    PacketFilter f;
    for (const auto& a : enclave) EXPECT_TRUE(f.add_destination(Ip(a)));
    return f;
}

PacketFilter Outgoing(const std::vector<std::string>& egress) {
    PacketFilter f;
    for (const auto& a : egress) EXPECT_TRUE(f.add_source(Ip(a)));
    f.drop_reserved = true;
    for (const auto& r : kOysterSourcePorts) EXPECT_TRUE(f.add_source_ports(r));
    return f;
}

struct Case {
    const char* what;
    PacketFilter filter;
    Bytes packet;
    DropReason expected;
};

TEST(PacketFilter, TableOfPacketsAndReasons) {
    const PacketFilter in = Incoming({"10.0.0.5", "fd00::5"});
    const PacketFilter out = Outgoing({"198.51.99.7", "2a00:1::7"});
    const std::vector<Case> cases = {
        {"no rules: anything", PacketFilter{}, Bytes{0xff}, DropReason::none},
        {"in: to the enclave", in, V4("8.8.8.8", "10.0.0.5"), DropReason::none},
        {"in: to another host", in, V4("8.8.8.8", "10.0.0.6"), DropReason::destination},
        {"in: v6 to the enclave", in, V6("2a00::1", "fd00::5"), DropReason::none},
        {"in: v6 elsewhere", in, V6("2a00::1", "fd00::6"), DropReason::destination},
        {"in: v4 bytes of a v6 address do not match", Incoming({"fd00::5"}),
         V4("8.8.8.8", "253.0.0.0"), DropReason::destination},
        {"out: egress to the internet", out, V4("198.51.99.7", "8.8.8.8", 6, 443),
         DropReason::none},
        {"out: spoofed source", out, V4("198.51.99.8", "8.8.8.8", 6, 443), DropReason::source},
        {"out: private destination", out, V4("198.51.99.7", "10.1.2.3"), DropReason::reserved},
        {"out: loopback destination", out, V4("198.51.99.7", "127.0.0.1"), DropReason::reserved},
        {"out: multicast destination", out, V4("198.51.99.7", "239.1.1.1"), DropReason::reserved},
        {"out: broadcast destination", out, V4("198.51.99.7", "255.255.255.255"),
         DropReason::reserved},
        {"out: port 80", out, V4("198.51.99.7", "8.8.8.8", 6, 80), DropReason::none},
        {"out: port 22", out, V4("198.51.99.7", "8.8.8.8", 6, 22), DropReason::port},
        {"out: port 1023", out, V4("198.51.99.7", "8.8.8.8", 17, 1023), DropReason::port},
        {"out: port 1024", out, V4("198.51.99.7", "8.8.8.8", 17, 1024), DropReason::none},
        {"out: port 61439", out, V4("198.51.99.7", "8.8.8.8", 17, 61439), DropReason::none},
        {"out: port 61440", out, V4("198.51.99.7", "8.8.8.8", 17, 61440), DropReason::port},
        {"out: ICMP has no port", out, V4("198.51.99.7", "8.8.8.8", 1, 7), DropReason::none},
        {"out: later fragment has no port", out, V4("198.51.99.7", "8.8.8.8", 17, 22, true, 100),
         DropReason::none},
        {"out: first fragment without room for the port", out,
         V4("198.51.99.7", "8.8.8.8", 6, 0, false), DropReason::port},
        {"out: v6 egress", out, V6("2a00:1::7", "2a00:2::1", 6, 443), DropReason::none},
        {"out: v6 spoofed", out, V6("2a00:1::8", "2a00:2::1", 6, 443), DropReason::source},
        {"out: v6 ULA", out, V6("2a00:1::7", "fd12::1"), DropReason::reserved},
        {"out: v6 link-local", out, V6("2a00:1::7", "fe80::1"), DropReason::reserved},
        {"out: v6 mapped v4", out, V6("2a00:1::7", "::ffff:8.8.8.8"), DropReason::reserved},
        {"out: v6 documentation", out, V6("2a00:1::7", "2001:db8::1"), DropReason::reserved},
        {"out: v6 port 22", out, V6("2a00:1::7", "2a00:2::1", 6, 22), DropReason::port},
        {"out: v6 port behind hop-by-hop and routing", out,
         V6("2a00:1::7", "2a00:2::1", 17, 22, {0, 43}), DropReason::port},
        {"out: v6 good port behind destination options", out,
         V6("2a00:1::7", "2a00:2::1", 17, 2000, {60}), DropReason::none},
        {"out: v6 first fragment", out, V6("2a00:1::7", "2a00:2::1", 17, 22, {44}, 0),
         DropReason::port},
        {"out: v6 later fragment", out, V6("2a00:1::7", "2a00:2::1", 17, 22, {44}, 8 << 3),
         DropReason::none},
        {"out: v6 behind AH", out, V6("2a00:1::7", "2a00:2::1", 6, 22, {51}), DropReason::port},
        {"out: v6 nine extension headers", out,
         V6("2a00:1::7", "2a00:2::1", 17, 2000, {60, 60, 60, 60, 60, 60, 60, 60, 60}),
         DropReason::port},
        {"the first failing rule is the reason", out, V4("1.1.1.1", "10.0.0.1", 6, 22),
         DropReason::source},
        {"empty packet", in, Bytes{}, DropReason::malformed},
        {"version 5", in, Bytes(40, 0x50), DropReason::malformed},
        {"v4 shorter than its IHL", in,
         Bytes{0x46, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
         DropReason::malformed},
        {"v6 shorter than its header", in, Bytes(39, 0x60), DropReason::malformed},
    };
    for (const Case& c : cases)
        EXPECT_EQ(filter_packet(c.filter, c.packet), c.expected)
            << c.what << ": got " << drop_reason_name(filter_packet(c.filter, c.packet));
}

TEST(PacketFilter, TruncatedExtensionHeaderIsMalformed) {
    const PacketFilter out = Outgoing({"2a00:1::7"});
    Bytes p = V6("2a00:1::7", "2a00:2::1", 17, 2000, {60});
    p[41] = 5;  // claims 48 bytes of options in a 16-byte payload
    EXPECT_EQ(filter_packet(out, p), DropReason::malformed);
}

TEST(PacketFilter, ReservedRangesAtTheirEdges) {
    const std::vector<std::pair<const char*, bool>> cases = {
        {"0.255.255.255", true},
        {"1.0.0.0", false},
        {"9.255.255.255", false},
        {"10.0.0.0", true},
        {"100.63.255.255", false},
        {"100.64.0.0", true},
        {"100.127.255.255", true},
        {"100.128.0.0", false},
        {"169.254.1.1", true},
        {"172.15.255.255", false},
        {"172.16.0.0", true},
        {"172.31.255.255", true},
        {"172.32.0.0", false},
        {"192.0.0.1", true},
        {"192.0.1.0", false},
        {"192.0.2.255", true},
        {"192.88.99.1", true},
        {"192.167.255.255", false},
        {"192.168.0.0", true},
        {"198.17.255.255", false},
        {"198.18.0.0", true},
        {"198.19.255.255", true},
        {"198.20.0.0", false},
        {"198.51.100.9", true},
        {"203.0.113.9", true},
        {"223.255.255.255", false},
        {"224.0.0.0", true},
        {"255.255.255.255", true},
        {"::", true},
        {"::1", true},
        {"100::1", true},
        {"1fff:ffff::", true},
        {"2000::", false},
        {"2001::1", true},
        {"2001:1ff::1", true},
        {"2001:200::1", false},
        {"2001:db8::", true},
        {"2002::1", true},
        {"2003::1", false},
        {"3ffe::1", false},
        {"3fff::1", true},
        {"3fff:1000::", false},
        {"4000::1", true},
        {"fc00::1", true},
        {"ff02::1", true},
    };
    for (const auto& [text, reserved] : cases)
        EXPECT_EQ(is_reserved_destination(Ip(text)), reserved) << text;
}

TEST(PacketFilter, TextForms) {
    EXPECT_EQ(parse_port_range("443"), (PortSpan{443, 443}));
    EXPECT_EQ(parse_port_range("1024-61439"), (PortSpan{1024, 61439}));
    EXPECT_EQ(parse_port_range("0-65535"), (PortSpan{0, 65535}));
    for (const char* bad :
         {"", "-", "80-", "-80", "65536", "2-1", "8o", "1-2-3", " 80", "+80", "000000080"})
        EXPECT_FALSE(parse_port_range(bad)) << bad;
    EXPECT_EQ(Ip("10.0.0.5").version, 4);
    EXPECT_EQ(Ip("fd00::5").version, 6);
    for (const char* bad : {"", "10.0.0", "10.0.0.5:80", "[fd00::5]", "fe80::1%eth0", "host"})
        EXPECT_FALSE(parse_ip_address(bad)) << bad;
}

TEST(PacketFilter, ListsAreBounded) {
    PacketFilter f;
    for (size_t i = 0; i < PacketFilter::kMaxAddresses; ++i)
        EXPECT_TRUE(f.add_source(Ip("1.1.1.1")));
    EXPECT_FALSE(f.add_source(Ip("1.1.1.1")));
    for (size_t i = 0; i < PacketFilter::kMaxPortRanges; ++i)
        EXPECT_TRUE(f.add_source_ports({1, 2}));
    EXPECT_FALSE(f.add_source_ports({1, 2}));
}

}  // namespace
}  // namespace pfp
