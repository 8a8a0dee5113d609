// The transparent destination header (docs/wire-formats.md): golden bytes of both
// formats, the decoder under every split of a header across reads, payload after the header, a bad
// version byte and a short header.
#include "common/transparent_header.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pfp {
namespace {

using Bytes = std::vector<uint8_t>;
using Status = TransparentHeaderDecoder::Status;

sockaddr_in V4(const char* ip, uint16_t port) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET, ip, &sin.sin_addr), 1) << ip;
    return sin;
}

sockaddr_in6 V6(const char* ip, uint16_t port) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1) << ip;
    return sin6;
}

Bytes Encode(TransparentHeaderFormat f, const sockaddr_in& a) {
    const auto h = encode_transparent_header(f, a);
    EXPECT_TRUE(h.has_value());
    if (!h) return {};
    return Bytes(h->span().begin(), h->span().end());
}

Bytes Encode(TransparentHeaderFormat f, const sockaddr_in6& a) {
    const auto h = encode_transparent_header(f, a);
    EXPECT_TRUE(h.has_value());
    if (!h) return {};
    return Bytes(h->span().begin(), h->span().end());
}

// "1.2.3.4:443" / "[2001:db8::1]:443" for the decoder's result.
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
    return "<family " + std::to_string(a.family()) + " len " + std::to_string(a.len) + ">";
}

const Bytes kStd4 = {0x04, 0x04, 0x03, 0x02, 0x01, 0xBB, 0x01};  // 1.2.3.4:443
const Bytes kOyster4 = {0x04, 0x03, 0x02, 0x01, 0xBB, 0x01};     // 1.2.3.4:443
// [2001:db8::1]:443 -- address octets reversed, then the port little-endian.
const Bytes kStd6 = {0x06, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                     0x00, 0x00, 0x00, 0xB8, 0x0D, 0x01, 0x20, 0xBB, 0x01};

TEST(TransparentHeaderEncode, StandardIpv4GoldenBytes) {
    EXPECT_EQ(Encode(TransparentHeaderFormat::standard, V4("1.2.3.4", 443)), kStd4);
    EXPECT_EQ(Encode(TransparentHeaderFormat::standard, V4("93.184.216.34", 80)),
              (Bytes{0x04, 0x22, 0xD8, 0xB8, 0x5D, 0x50, 0x00}));
    EXPECT_EQ(Encode(TransparentHeaderFormat::standard, V4("255.255.255.255", 65535)),
              (Bytes{0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}));
}

TEST(TransparentHeaderEncode, StandardIpv6GoldenBytes) {
    EXPECT_EQ(Encode(TransparentHeaderFormat::standard, V6("2001:db8::1", 443)), kStd6);
    EXPECT_EQ(Encode(TransparentHeaderFormat::standard,
                     V6("0102:0304:0506:0708:090a:0b0c:0d0e:0f10", 0x1234)),
              (Bytes{0x06, 0x10, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09, 0x08, 0x07, 0x06, 0x05,
                     0x04, 0x03, 0x02, 0x01, 0x34, 0x12}));
}

TEST(TransparentHeaderEncode, OysterV4GoldenBytes) {
    EXPECT_EQ(Encode(TransparentHeaderFormat::oyster_v4, V4("1.2.3.4", 443)), kOyster4);
    EXPECT_EQ(Encode(TransparentHeaderFormat::oyster_v4, V4("10.0.0.1", 8080)),
              (Bytes{0x01, 0x00, 0x00, 0x0A, 0x90, 0x1F}));
}

TEST(TransparentHeaderEncode, OysterV4RejectsIpv6) {
    EXPECT_FALSE(
        encode_transparent_header(TransparentHeaderFormat::oyster_v4, V6("2001:db8::1", 443)));
}

// An IPv4 host reached through a dual-stack socket is still an IPv4 host.
TEST(TransparentHeaderEncode, Ipv4MappedIsSentAsIpv4) {
    EXPECT_EQ(Encode(TransparentHeaderFormat::standard, V6("::ffff:1.2.3.4", 443)), kStd4);
    EXPECT_EQ(Encode(TransparentHeaderFormat::oyster_v4, V6("::ffff:1.2.3.4", 443)), kOyster4);
}

TEST(TransparentHeaderEncode, GenericSockaddr) {
    const sockaddr_in sin = V4("1.2.3.4", 443);
    const auto h = encode_transparent_header(TransparentHeaderFormat::standard,
                                             reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
    ASSERT_TRUE(h);
    EXPECT_EQ(Bytes(h->span().begin(), h->span().end()), kStd4);

    const sockaddr_in6 sin6 = V6("2001:db8::1", 443);
    const auto h6 = encode_transparent_header(
        TransparentHeaderFormat::standard, reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
    ASSERT_TRUE(h6);
    EXPECT_EQ(Bytes(h6->span().begin(), h6->span().end()), kStd6);

    // Too short for the family, another family, no address at all.
    EXPECT_FALSE(encode_transparent_header(TransparentHeaderFormat::standard,
                                           reinterpret_cast<const sockaddr*>(&sin), 8));
    sockaddr_storage unix_like{};
    unix_like.ss_family = AF_UNIX;
    EXPECT_FALSE(encode_transparent_header(TransparentHeaderFormat::standard,
                                           reinterpret_cast<const sockaddr*>(&unix_like),
                                           sizeof unix_like));
    EXPECT_FALSE(encode_transparent_header(TransparentHeaderFormat::standard, nullptr, 0));
}

TEST(TransparentHeaderFormatName, RoundTrips) {
    for (auto f : {TransparentHeaderFormat::standard, TransparentHeaderFormat::oyster_v4}) {
        EXPECT_EQ(transparent_header_format_from_name(transparent_header_format_name(f)), f);
    }
    EXPECT_EQ(transparent_header_format_name(TransparentHeaderFormat::oyster_v4), "oyster-v4");
    EXPECT_FALSE(transparent_header_format_from_name("oyster"));
}

struct Case {
    TransparentHeaderFormat format;
    Bytes header;
    std::string expected;
};

const Case kCases[] = {
    {TransparentHeaderFormat::standard, kStd4, "1.2.3.4:443"},
    {TransparentHeaderFormat::standard, kStd6, "[2001:db8::1]:443"},
    {TransparentHeaderFormat::oyster_v4, kOyster4, "1.2.3.4:443"},
};

TEST(TransparentHeaderDecode, WholeHeaderInOneRead) {
    for (const auto& c : kCases) {
        TransparentHeaderDecoder d(c.format);
        const auto r = d.feed(c.header);
        EXPECT_EQ(r.status, Status::done);
        EXPECT_EQ(r.consumed, c.header.size());
        EXPECT_EQ(Text(d.destination()), c.expected);
        EXPECT_EQ(d.error(), "");
        EXPECT_EQ(d.eof(), "");
    }
}

TEST(TransparentHeaderDecode, OneByteAtATime) {
    for (const auto& c : kCases) {
        TransparentHeaderDecoder d(c.format);
        for (size_t i = 0; i < c.header.size(); ++i) {
            const auto r = d.feed(&c.header[i], 1);
            EXPECT_EQ(r.consumed, 1u);
            EXPECT_EQ(r.status, i + 1 == c.header.size() ? Status::done : Status::need_more);
            EXPECT_EQ(d.header_bytes(), i + 1);
        }
        EXPECT_EQ(Text(d.destination()), c.expected);
    }
}

// Every split point, with payload following the header in the second read.
TEST(TransparentHeaderDecode, EverySplitPointKeepsPayload) {
    const Bytes payload = {'G', 'E', 'T', ' ', '/', 0x00, 0x04, 0x06};
    for (const auto& c : kCases) {
        Bytes stream = c.header;
        stream.insert(stream.end(), payload.begin(), payload.end());
        for (size_t split = 0; split <= stream.size(); ++split) {
            SCOPED_TRACE("split at " + std::to_string(split));
            TransparentHeaderDecoder d(c.format);
            const auto first = d.feed(stream.data(), split);
            ASSERT_LE(first.consumed, split);
            Bytes rest(stream.begin() + static_cast<long>(first.consumed), stream.end());
            if (first.status == Status::need_more) {
                EXPECT_EQ(first.consumed, split);
                const auto second = d.feed(rest);
                ASSERT_EQ(second.status, Status::done);
                rest.erase(rest.begin(), rest.begin() + static_cast<long>(second.consumed));
            } else {
                ASSERT_EQ(first.status, Status::done);
                EXPECT_EQ(first.consumed, c.header.size());
            }
            EXPECT_EQ(rest, payload);
            EXPECT_EQ(Text(d.destination()), c.expected);
        }
    }
}

TEST(TransparentHeaderDecode, EmptyFeedsChangeNothing) {
    TransparentHeaderDecoder d;
    EXPECT_EQ(d.feed(nullptr, 0).status, Status::need_more);
    EXPECT_EQ(d.feed(kStd4.data(), 3).consumed, 3u);
    EXPECT_EQ(d.feed(nullptr, 0).status, Status::need_more);
    const auto r = d.feed(kStd4.data() + 3, 4);
    EXPECT_EQ(r.status, Status::done);
    EXPECT_EQ(r.consumed, 4u);
}

TEST(TransparentHeaderDecode, AfterDoneConsumesNothing) {
    TransparentHeaderDecoder d;
    ASSERT_EQ(d.feed(kStd4).status, Status::done);
    const auto r = d.feed(kStd6);
    EXPECT_EQ(r.status, Status::done);
    EXPECT_EQ(r.consumed, 0u);
    EXPECT_EQ(Text(d.destination()), "1.2.3.4:443");
}

TEST(TransparentHeaderDecode, BadVersionByte) {
    TransparentHeaderDecoder d;
    const Bytes bad = {0x05, 0x04, 0x03, 0x02, 0x01, 0xBB, 0x01};
    const auto r = d.feed(bad);
    EXPECT_EQ(r.status, Status::error);
    EXPECT_EQ(r.consumed, 1u);
    EXPECT_EQ(d.error(),
              "bad transparent header: version byte 0x05, expected 0x04 (IPv4) or 0x06 (IPv6)");
    EXPECT_EQ(d.feed(kStd4).status, Status::error);  // stays failed
    EXPECT_EQ(d.eof(), d.error());
    EXPECT_EQ(d.destination().len, 0u);

    // An oyster-v4 header sent to a standard reader: 0x04 happens to be a valid version byte only
    // when the address ends in .4; anything else fails on the first byte.
    TransparentHeaderDecoder d2;
    EXPECT_EQ(d2.feed(Bytes{0xC8, 0x00}).status, Status::error);
    EXPECT_EQ(d2.error(),
              "bad transparent header: version byte 0xc8, expected 0x04 (IPv4) or 0x06 (IPv6)");
}

TEST(TransparentHeaderDecode, ShortHeader) {
    {
        TransparentHeaderDecoder d;
        EXPECT_EQ(d.eof(),
                  "short transparent header: stream ended after 0 bytes, expected 7 (IPv4) or 19 "
                  "(IPv6)");
        EXPECT_EQ(d.status(), Status::error);
    }
    {
        TransparentHeaderDecoder d;
        d.feed(kStd4.data(), 3);
        EXPECT_EQ(d.eof(), "short transparent header: stream ended after 3 of 7 bytes");
        EXPECT_EQ(d.status(), Status::error);
        EXPECT_EQ(d.error(), "short transparent header: stream ended after 3 of 7 bytes");
    }
    {
        TransparentHeaderDecoder d;
        d.feed(kStd6.data(), 18);
        EXPECT_EQ(d.eof(), "short transparent header: stream ended after 18 of 19 bytes");
    }
    {
        TransparentHeaderDecoder d(TransparentHeaderFormat::oyster_v4);
        EXPECT_EQ(d.eof(), "short transparent header: stream ended after 0 of 6 bytes");
    }
    {
        TransparentHeaderDecoder d(TransparentHeaderFormat::oyster_v4);
        d.feed(kOyster4.data(), 5);
        EXPECT_EQ(d.eof(), "short transparent header: stream ended after 5 of 6 bytes");
    }
}

TEST(TransparentHeaderDecode, RoundTripThroughEncoder) {
    for (const char* ip : {"0.0.0.0", "10.1.2.3", "192.168.255.1"}) {
        for (uint16_t port : {uint16_t{0}, uint16_t{1}, uint16_t{443}, uint16_t{65535}}) {
            for (auto f : {TransparentHeaderFormat::standard, TransparentHeaderFormat::oyster_v4}) {
                const Bytes b = Encode(f, V4(ip, port));
                TransparentHeaderDecoder d(f);
                ASSERT_EQ(d.feed(b).status, Status::done);
                EXPECT_EQ(Text(d.destination()), std::string(ip) + ":" + std::to_string(port));
            }
        }
    }
    for (const char* ip : {"::", "::1", "fe80::1", "2001:db8:1234:5678:9abc:def0:1234:5678"}) {
        const Bytes b = Encode(TransparentHeaderFormat::standard, V6(ip, 8443));
        TransparentHeaderDecoder d;
        ASSERT_EQ(d.feed(b).status, Status::done);
        EXPECT_EQ(Text(d.destination()), "[" + std::string(ip) + "]:8443");
    }
}

}  // namespace
}  // namespace pfp
