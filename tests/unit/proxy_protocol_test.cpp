// PROXY protocol v2: golden bytes for an IPv4 and an IPv6 client and the vsock LOCAL case, round
// trips through the decoder under every split, and malformed headers rejected with their message.
#include "common/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pfp {
namespace {

using Bytes = std::vector<uint8_t>;
using Status = ProxyHeaderDecoder::Status;

SockAddr V4(const char* ip, uint16_t port) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET, ip, &sin.sin_addr), 1) << ip;
    SockAddr a;
    std::memcpy(&a.storage, &sin, sizeof sin);
    a.len = sizeof sin;
    return a;
}

SockAddr V6(const char* ip, uint16_t port) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1) << ip;
    SockAddr a;
    std::memcpy(&a.storage, &sin6, sizeof sin6);
    a.len = sizeof sin6;
    return a;
}

SockAddr Vsock(uint32_t cid, uint32_t port) {
    sockaddr_vm svm{};
    svm.svm_family = AF_VSOCK;
    svm.svm_cid = cid;
    svm.svm_port = port;
    SockAddr a;
    std::memcpy(&a.storage, &svm, sizeof svm);
    a.len = sizeof svm;
    return a;
}

std::string Text(const SockAddr& a) {
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a.family() == AF_INET && a.len == sizeof(sockaddr_in)) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(&a.storage);
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        return std::string(ip) + ":" + std::to_string(ntohs(sin->sin_port));
    }
    if (a.family() == AF_INET6 && a.len == sizeof(sockaddr_in6)) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        return "[" + std::string(ip) + "]:" + std::to_string(ntohs(sin6->sin6_port));
    }
    return a.len == 0 ? "<none>" : "<family " + std::to_string(a.family()) + ">";
}

Bytes Encode(const SockAddr& src, const SockAddr& dst) {
    const auto h = encode_proxy_v2(src, dst);
    return Bytes(h.span().begin(), h.span().end());
}

Bytes Cat(Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

const Bytes kSig = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// Client 192.0.2.10:51234 connected to 198.51.100.7:443.
const Bytes kTcp4 = Cat(kSig, {0x21, 0x11, 0x00, 0x0C,  // PROXY, TCP over IPv4, 12 bytes
                               0xC0, 0x00, 0x02, 0x0A,  // source 192.0.2.10
                               0xC6, 0x33, 0x64, 0x07,  // destination 198.51.100.7
                               0xC8, 0x22,              // source port 51234
                               0x01, 0xBB});            // destination port 443

// Client [2001:db8::1]:51234 connected to [2001:db8::2]:443.
const Bytes kTcp6 = Cat(kSig, {0x21, 0x21, 0x00, 0x24,  // PROXY, TCP over IPv6, 36 bytes
                               0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,  // source
                               0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  //
                               0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,  // destination
                               0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,  //
                               0xC8, 0x22,                                      // source port
                               0x01, 0xBB});                                    // dest port

const Bytes kLocal = Cat(kSig, {0x20, 0x00, 0x00, 0x00});  // LOCAL, UNSPEC, no addresses

TEST(ProxyProtocolEncode, Ipv4GoldenBytes) {
    EXPECT_EQ(Encode(V4("192.0.2.10", 51234), V4("198.51.100.7", 443)), kTcp4);
}

TEST(ProxyProtocolEncode, Ipv6GoldenBytes) {
    EXPECT_EQ(Encode(V6("2001:db8::1", 51234), V6("2001:db8::2", 443)), kTcp6);
}

// A vsock client (CID 3, port 1200): LOCAL, UNSPEC, then the vsock TLV.
const Bytes kLocalVsock3 = Cat(kSig, {0x20, 0x00, 0x00, 0x0B,    // LOCAL, UNSPEC, 11 bytes
                                      0xE0, 0x00, 0x08,          // TLV 0xE0, length 8
                                      0x00, 0x00, 0x00, 0x03,    // CID 3
                                      0x00, 0x00, 0x04, 0xB0});  // port 1200

TEST(ProxyProtocolEncode, VsockPeerIsLocalWithItsCidAndPortInATlv) {
    EXPECT_EQ(Encode(Vsock(3, 1200), V4("198.51.100.7", 443)), kLocalVsock3);
    EXPECT_EQ(Encode(Vsock(3, 1200), Vsock(88, 5000)), kLocalVsock3);
    EXPECT_EQ(Encode(V4("192.0.2.10", 51234), Vsock(88, 5000)), kLocal);
}

TEST(ProxyProtocolEncode, UnixPeerAndMissingAddressAreLocal) {
    SockAddr un;
    un.storage.ss_family = AF_UNIX;
    un.len = sizeof(sa_family_t) + 4;
    EXPECT_EQ(Encode(un, V4("198.51.100.7", 443)), kLocal);
    EXPECT_EQ(Encode(SockAddr{}, V4("198.51.100.7", 443)), kLocal);
    SockAddr truncated = V4("192.0.2.10", 1);
    truncated.len = 8;
    EXPECT_EQ(Encode(truncated, V4("198.51.100.7", 443)), kLocal);
}

// A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: still TCP over IPv4.
TEST(ProxyProtocolEncode, MappedAddressesAreIpv4) {
    EXPECT_EQ(Encode(V6("::ffff:192.0.2.10", 51234), V4("198.51.100.7", 443)), kTcp4);
    EXPECT_EQ(Encode(V6("::ffff:192.0.2.10", 51234), V6("::ffff:198.51.100.7", 443)), kTcp4);
}

// Mixed families: the IPv4 side is written IPv4-mapped, as haproxy does.
TEST(ProxyProtocolEncode, MixedFamiliesUseIpv6) {
    const Bytes mixed = Encode(V4("192.0.2.10", 51234), V6("2001:db8::2", 443));
    const Bytes expected = Cat(kSig, {0x21, 0x21, 0x00, 0x24,                          //
                                      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // source
                                      0x00, 0x00, 0xFF, 0xFF, 0xC0, 0x00, 0x02, 0x0A,  // ::ffff:..
                                      0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,  // dest
                                      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,  //
                                      0xC8, 0x22, 0x01, 0xBB});                        // ports
    EXPECT_EQ(mixed, expected);
}

struct Golden {
    Bytes header;
    ProxyCommand command;
    uint8_t family;
    std::string source;
    std::string destination;
};

const Golden kGolden[] = {
    {kTcp4, ProxyCommand::proxy, kProxyTcp4, "192.0.2.10:51234", "198.51.100.7:443"},
    {kTcp6, ProxyCommand::proxy, kProxyTcp6, "[2001:db8::1]:51234", "[2001:db8::2]:443"},
    {kLocal, ProxyCommand::local, kProxyFamilyUnspec, "<none>", "<none>"},
};

TEST(ProxyProtocolDecode, RoundTripWholeHeader) {
    for (const auto& g : kGolden) {
        ProxyHeaderDecoder d;
        const auto r = d.feed(g.header);
        ASSERT_EQ(r.status, Status::done) << d.error();
        EXPECT_EQ(r.consumed, g.header.size());
        EXPECT_EQ(d.header().command, g.command);
        EXPECT_EQ(d.header().family_protocol, g.family);
        EXPECT_EQ(d.header().size, g.header.size());
        EXPECT_EQ(Text(d.header().source), g.source);
        EXPECT_EQ(Text(d.header().destination), g.destination);
        EXPECT_EQ(d.eof(), "");
    }
}

TEST(ProxyProtocolDecode, EverySplitPointKeepsPayload) {
    const Bytes payload = {'G', 'E', 'T', ' ', '/', '\r', '\n', 0x0D, 0x0A};
    for (const auto& g : kGolden) {
        const Bytes stream = Cat(g.header, payload);
        for (size_t split = 0; split <= stream.size(); ++split) {
            SCOPED_TRACE("split at " + std::to_string(split));
            ProxyHeaderDecoder d;
            const auto first = d.feed(stream.data(), split);
            ASSERT_LE(first.consumed, split);
            Bytes rest(stream.begin() + static_cast<long>(first.consumed), stream.end());
            if (first.status == Status::need_more) {
                EXPECT_EQ(first.consumed, split);
                const auto second = d.feed(rest);
                ASSERT_EQ(second.status, Status::done) << d.error();
                rest.erase(rest.begin(), rest.begin() + static_cast<long>(second.consumed));
            } else {
                ASSERT_EQ(first.status, Status::done) << d.error();
            }
            EXPECT_EQ(rest, payload);
            EXPECT_EQ(Text(d.header().source), g.source);
            EXPECT_EQ(Text(d.header().destination), g.destination);
        }
    }
}

TEST(ProxyProtocolDecode, OneByteAtATime) {
    for (const auto& g : kGolden) {
        ProxyHeaderDecoder d;
        for (size_t i = 0; i < g.header.size(); ++i) {
            const auto r = d.feed(&g.header[i], 1);
            ASSERT_EQ(r.consumed, 1u);
            ASSERT_EQ(r.status, i + 1 == g.header.size() ? Status::done : Status::need_more);
        }
        EXPECT_EQ(Text(d.header().source), g.source);
    }
}

TEST(ProxyProtocolDecode, TlvsAreSkipped) {
    // TCP over IPv4 with one 5-byte TLV (PP2_TYPE_AUTHORITY "ab"): length 12 + 5.
    Bytes h = kTcp4;
    h[15] = 0x11;
    h = Cat(h, {0x02, 0x00, 0x02, 'a', 'b'});
    ProxyHeaderDecoder d;
    const auto r = d.feed(Cat(h, {'X'}));
    ASSERT_EQ(r.status, Status::done) << d.error();
    EXPECT_EQ(r.consumed, h.size());
    EXPECT_EQ(d.header().size, 33u);
    EXPECT_EQ(Text(d.header().source), "192.0.2.10:51234");
}

TEST(ProxyProtocolDecode, LocalSkipsWhateverFollows) {
    // LOCAL with an address block: the receiver discards family and addresses.
    Bytes h = kTcp4;
    h[12] = 0x20;
    ProxyHeaderDecoder d;
    ASSERT_EQ(d.feed(h).status, Status::done) << d.error();
    EXPECT_EQ(d.header().command, ProxyCommand::local);
    EXPECT_FALSE(d.header().has_addresses());
    EXPECT_EQ(d.header().size, kTcp4.size());
}

TEST(ProxyProtocolDecode, UdpAndUnixFamilies) {
    Bytes udp = kTcp4;
    udp[13] = kProxyUdp4;
    ProxyHeaderDecoder d;
    ASSERT_EQ(d.feed(udp).status, Status::done) << d.error();
    EXPECT_EQ(Text(d.header().source), "192.0.2.10:51234");

    // UNIX stream: 216 bytes of paths, which we skip and treat as UNSPEC.
    Bytes unix_header = Cat(kSig, {0x21, 0x31, 0x00, 0xD8});
    unix_header.resize(unix_header.size() + 216, 'p');
    ProxyHeaderDecoder du;
    const auto r = du.feed(Cat(unix_header, {'X'}));
    ASSERT_EQ(r.status, Status::done) << du.error();
    EXPECT_EQ(r.consumed, 232u);
    EXPECT_FALSE(du.header().has_addresses());
    EXPECT_EQ(du.header().family_protocol, kProxyUnixStream);
}

TEST(ProxyProtocolDecode, LongestAllowedHeader) {
    Bytes h = Cat(kSig, {0x21, 0x11, 0x02, 0x08});  // 520 bytes follow: 536 in all
    h.resize(536, 0);
    ProxyHeaderDecoder d;
    const auto r = d.feed(h);
    EXPECT_EQ(r.status, Status::done) << d.error();
    EXPECT_EQ(r.consumed, 536u);
}

std::string ErrorOf(const Bytes& b) {
    ProxyHeaderDecoder d;
    const auto r = d.feed(b);
    if (r.status != Status::error) return "<no error>";
    if (r.consumed > b.size()) return "<consumed too much>";
    return std::string(d.error());
}

TEST(ProxyProtocolDecode, MalformedHeadersRejected) {
    EXPECT_EQ(ErrorOf({'G', 'E', 'T', ' ', '/'}),
              "not a PROXY protocol v2 header: byte 0 is 0x47, expected 0x0d");
    // Version 1's text form starts "PROXY ".
    EXPECT_EQ(ErrorOf({'P', 'R', 'O', 'X', 'Y', ' '}),
              "not a PROXY protocol v2 header: byte 0 is 0x50, expected 0x0d");
    Bytes sig = kSig;
    sig[11] = 0x0B;
    EXPECT_EQ(ErrorOf(sig), "not a PROXY protocol v2 header: byte 11 is 0x0b, expected 0x0a");

    EXPECT_EQ(ErrorOf(Cat(kSig, {0x11, 0x11, 0x00, 0x0C})),
              "bad PROXY header: version/command byte 0x11 has version 1, expected 2");
    EXPECT_EQ(ErrorOf(Cat(kSig, {0x31})),
              "bad PROXY header: version/command byte 0x31 has version 3, expected 2");
    EXPECT_EQ(ErrorOf(Cat(kSig, {0x22, 0x11})),
              "bad PROXY header: version/command byte 0x22 has command 2, expected 0 (LOCAL) or "
              "1 (PROXY)");
    for (uint8_t fam : {0x01, 0x13, 0x23, 0x33, 0x40, 0x10, 0xFF}) {
        char want[96];
        std::snprintf(want, sizeof want,
                      "bad PROXY header: family/protocol byte 0x%02x is not one the spec defines",
                      fam);
        EXPECT_EQ(ErrorOf(Cat(kSig, {0x21, fam})), want);
    }
    EXPECT_EQ(ErrorOf(Cat(kSig, {0x21, 0x11, 0x02, 0x09})),
              "bad PROXY header: length 521 makes it 537 bytes, more than the 536 allowed");
    EXPECT_EQ(ErrorOf(Cat(kSig, {0x20, 0x00, 0xFF, 0xFF})),
              "bad PROXY header: length 65535 makes it 65551 bytes, more than the 536 allowed");
    EXPECT_EQ(ErrorOf(Cat(kSig, {0x21, 0x11, 0x00, 0x0B})),
              "bad PROXY header: length 11 is too short for the IPv4 addresses (12 bytes)");
    EXPECT_EQ(ErrorOf(Cat(kSig, {0x21, 0x21, 0x00, 0x0C})),
              "bad PROXY header: length 12 is too short for the IPv6 addresses (36 bytes)");
    EXPECT_EQ(ErrorOf(Cat(kSig, {0x21, 0x31, 0x00, 0x24})),
              "bad PROXY header: length 36 is too short for the UNIX addresses (216 bytes)");
}

TEST(ProxyProtocolDecode, RejectsEarlyAndStaysFailed) {
    ProxyHeaderDecoder d;
    const Bytes b = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 'X', 0, 0, 0};
    const auto r = d.feed(b);
    EXPECT_EQ(r.status, Status::error);
    EXPECT_EQ(r.consumed, 7u);  // through the first byte that is wrong
    const auto again = d.feed(kTcp4);
    EXPECT_EQ(again.status, Status::error);
    EXPECT_EQ(again.consumed, 0u);
    EXPECT_EQ(d.eof(), "not a PROXY protocol v2 header: byte 6 is 0x58, expected 0x0a");
}

TEST(ProxyProtocolDecode, ShortHeader) {
    {
        ProxyHeaderDecoder d;
        EXPECT_EQ(d.eof(), "short PROXY header: stream ended after 0 of at least 16 bytes");
    }
    {
        ProxyHeaderDecoder d;
        d.feed(kTcp4.data(), 10);
        EXPECT_EQ(d.eof(), "short PROXY header: stream ended after 10 of at least 16 bytes");
        EXPECT_EQ(d.status(), Status::error);
    }
    {
        ProxyHeaderDecoder d;
        d.feed(kTcp6.data(), 40);
        EXPECT_EQ(d.eof(), "short PROXY header: stream ended after 40 of 52 bytes");
    }
}

}  // namespace
}  // namespace pfp
