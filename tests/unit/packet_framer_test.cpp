// Framing of the raw packet stream (docs/wire-formats.md, "Raw packet stream"): golden streams of
// IPv4 and IPv6 packets back to back, several packets per read, every split of a stream across two
// reads and a byte at a time, each malformed header class refused with the offset and field named,
// and a stream that ends inside a packet.
#include "common/packet_framer.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pfp {
namespace {

using Bytes = std::vector<uint8_t>;

// An IPv4 packet: IHL words of header (options zero), then payload bytes counting from `fill`.
Bytes Ipv4(size_t payload, unsigned ihl = 5, uint8_t fill = 0) {
    Bytes p(ihl * 4 + payload);
    p[0] = static_cast<uint8_t>(0x40 | ihl);
    p[2] = static_cast<uint8_t>(p.size() >> 8);
    p[3] = static_cast<uint8_t>(p.size());
    p[8] = 64;
    p[9] = 17;
    for (size_t i = ihl * 4; i < p.size(); ++i) p[i] = static_cast<uint8_t>(fill + i);
    return p;
}

Bytes Ipv6(size_t payload, uint8_t next_header = 17, uint8_t fill = 0) {
    Bytes p(40 + payload);
    p[0] = 0x60;
    p[4] = static_cast<uint8_t>(payload >> 8);
    p[5] = static_cast<uint8_t>(payload);
    p[6] = next_header;
    p[7] = 64;
    for (size_t i = 40; i < p.size(); ++i) p[i] = static_cast<uint8_t>(fill + i);
    return p;
}

Bytes Cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

struct Outcome {
    std::vector<Bytes> packets;
    std::string error;      // set when the framer refused a header
    std::string eof_error;  // what end of stream would say afterwards
};

// Feeds `stream` in reads of the given sizes (the rest in one last read) and takes every packet.
Outcome Frame(const Bytes& stream, const std::vector<size_t>& reads) {
    PacketFramer framer;
    Outcome out;
    size_t pos = 0;
    auto take = [&] {
        for (;;) {
            const auto n = framer.next();
            if (n.status == PacketFramer::Status::packet) {
                out.packets.emplace_back(n.packet.begin(), n.packet.end());
                continue;
            }
            if (n.status == PacketFramer::Status::error) out.error = framer.error();
            return n.status;
        }
    };
    auto feed = [&](size_t len) {
        while (len > 0) {
            const auto space = framer.write_space();
            if (space.empty()) return false;
            const size_t n = std::min(len, space.size());
            std::memcpy(space.data(), stream.data() + pos, n);
            framer.commit(n);
            pos += n;
            len -= n;
            if (take() == PacketFramer::Status::error) return false;
        }
        return true;
    };
    bool ok = true;
    for (size_t r : reads)
        if (ok) ok = feed(std::min(r, stream.size() - pos));
    if (ok) feed(stream.size() - pos);
    if (out.error.empty()) out.eof_error = framer.eof_error();
    return out;
}

TEST(PacketFramer, SeveralPacketsInOneRead) {
    const Bytes a = Ipv4(0), b = Ipv4(1400, 5, 3), c = Ipv6(8), d = Ipv4(12, 15), e = Ipv6(0, 59);
    const auto out = Frame(Cat({a, b, c, d, e}), {});
    ASSERT_EQ(out.error, "");
    ASSERT_EQ(out.packets.size(), 5u);
    EXPECT_EQ(out.packets[0], a);
    EXPECT_EQ(out.packets[1], b);
    EXPECT_EQ(out.packets[2], c);
    EXPECT_EQ(out.packets[3], d);  // IHL 15: 60 bytes of header with options
    EXPECT_EQ(out.packets[4], e);  // IPv6 with no payload ("no next header")
    EXPECT_EQ(out.eof_error, "");
}

TEST(PacketFramer, EverySplitAcrossTwoReadsAndByteAtATime) {
    const Bytes stream = Cat({Ipv4(30), Ipv6(17, 6, 9), Ipv4(0, 6)});
    for (size_t split = 0; split <= stream.size(); ++split) {
        const auto out = Frame(stream, {split});
        ASSERT_EQ(out.error, "") << "split " << split;
        ASSERT_EQ(out.packets.size(), 3u) << "split " << split;
        EXPECT_EQ(Cat({out.packets[0], out.packets[1], out.packets[2]}), stream);
        EXPECT_EQ(out.eof_error, "");
    }
    const auto bytes = Frame(stream, std::vector<size_t>(stream.size(), 1));
    ASSERT_EQ(bytes.packets.size(), 3u);
    EXPECT_EQ(Cat({bytes.packets[0], bytes.packets[1], bytes.packets[2]}), stream);
}

TEST(PacketFramer, LargestPacketsOfBothFamiliesAndManyReads) {
    // 65535-byte IPv4 and 65575-byte IPv6 packets, read in 1000-byte pieces, across compaction.
    const Bytes stream = Cat({Ipv4(3), Ipv4(65535 - 20), Ipv6(65535), Ipv4(3), Ipv6(65535)});
    std::vector<size_t> reads(stream.size() / 1000, 1000);
    const auto out = Frame(stream, reads);
    ASSERT_EQ(out.error, "");
    ASSERT_EQ(out.packets.size(), 5u);
    EXPECT_EQ(out.packets[1].size(), 65535u);
    EXPECT_EQ(out.packets[2].size(), 65575u);
    EXPECT_EQ(Cat({out.packets[0], out.packets[1], out.packets[2], out.packets[3], out.packets[4]}),
              stream);
}

struct Malformed {
    const char* name;
    Bytes bad;  // the offending packet (or its start)
    const char* message_part;
    size_t field_offset;
};

TEST(PacketFramer, EveryMalformedHeaderClassEndsTheStreamNamingOffsetAndField) {
    Bytes ihl4 = Ipv4(10);
    ihl4[0] = 0x44;
    Bytes short_total = Ipv4(10, 6);
    short_total[2] = 0;
    short_total[3] = 23;  // below IHL 6 x 4 = 24
    Bytes tiny_total = Ipv4(10);
    tiny_total[2] = 0;
    tiny_total[3] = 3;  // the deployed tools crashed on this one
    Bytes jumbo = Ipv6(0, 0);
    const std::vector<Malformed> cases = {
        {"version 0", Bytes(20, 0), "version is neither 4 nor 6", 0},
        {"version 5", Bytes{0x55, 0, 0, 20}, "version is neither 4 nor 6", 0},
        {"version 15", Bytes{0xf0}, "version is neither 4 nor 6", 0},
        {"IHL 0", Bytes{0x40}, "IHL is below 5", 0},
        {"IHL 4", ihl4, "IHL is below 5", 0},
        {"total length below IHL", short_total, "total length is shorter than the header", 2},
        {"total length 3", tiny_total, "total length is shorter than the header", 2},
        {"IPv6 jumbogram", jumbo, "payload length is 0 with a hop-by-hop header (jumbogram)", 4},
    };
    const Bytes good = Ipv4(100);
    for (const auto& c : cases) {
        const Bytes stream = Cat({good, good, c.bad, good});
        const size_t at = 2 * good.size();
        for (size_t split = 0; split <= stream.size(); split += 7) {
            const auto out = Frame(stream, {split});
            EXPECT_EQ(out.packets.size(), 2u) << c.name;  // the good ones before it, none after
            const std::string want =
                "invalid IP header at stream offset " + std::to_string(at + c.field_offset) +
                " (packet 3 starting at offset " + std::to_string(at) + "): " + c.message_part +
                "; the stream cannot be resynchronised";
            EXPECT_EQ(out.error, want) << c.name << " split " << split;
        }
    }
}

TEST(PacketFramer, ErrorIsStickyAndRefusesMoreInput) {
    PacketFramer framer;
    auto space = framer.write_space();
    space[0] = 0x20;
    framer.commit(1);
    EXPECT_EQ(framer.next().status, PacketFramer::Status::error);
    EXPECT_TRUE(framer.write_space().empty());
    EXPECT_EQ(framer.next().status, PacketFramer::Status::error);
}

// After reset() a framer that was in error, or held half a packet and had counted others, frames
// a new stream as a new framer would: offsets and counts from zero, nothing of the old bytes.
TEST(PacketFramer, ResetStartsANewStreamAsANewFramerWould) {
    PacketFramer framer;
    const auto put = [&](const Bytes& bytes) {
        auto space = framer.write_space();
        ASSERT_GE(space.size(), bytes.size());
        std::copy(bytes.begin(), bytes.end(), space.begin());
        framer.commit(bytes.size());
    };
    const Bytes a = Ipv4(30), b = Ipv6(20);
    Bytes half = Ipv6(200);
    half.resize(90);
    put(Cat({a, half}));
    ASSERT_EQ(framer.next().status, PacketFramer::Status::packet);
    ASSERT_EQ(framer.next().status, PacketFramer::Status::need_more);
    framer.reset();
    EXPECT_EQ(framer.packets(), 0u);
    EXPECT_EQ(framer.stream_offset(), 0u);
    EXPECT_EQ(framer.eof_error(), "");
    put(Cat({b, a}));
    auto next = framer.next();
    ASSERT_EQ(next.status, PacketFramer::Status::packet);
    EXPECT_EQ(Bytes(next.packet.begin(), next.packet.end()), b)
        << "not the old half packet's bytes";
    EXPECT_EQ(framer.next().packet.size(), a.size());
    EXPECT_EQ(framer.packets(), 2u);
    // And out of an error.
    put(Bytes{0x20});
    EXPECT_EQ(framer.next().status, PacketFramer::Status::error);
    framer.reset();
    EXPECT_EQ(framer.error(), "");
    put(a);
    EXPECT_EQ(framer.next().status, PacketFramer::Status::packet);
    EXPECT_EQ(framer.stream_offset(), a.size());
}

TEST(PacketFramer, StreamEndingInsideAPacketSaysWhere) {
    const Bytes a = Ipv4(50);
    Bytes stream = Cat({a, Ipv6(100)});
    stream.resize(a.size() + 60);
    auto out = Frame(stream, {});
    EXPECT_EQ(out.packets.size(), 1u);
    EXPECT_EQ(out.eof_error,
              "stream ended inside packet 2 starting at offset 70: 60 of its 140 bytes arrived");
    stream.resize(a.size() + 3);
    out = Frame(stream, {});
    EXPECT_EQ(out.eof_error,
              "stream ended inside packet 2 starting at offset 70: 3 bytes arrived, too few for "
              "its header");
}

TEST(PacketFramer, HeaderCheckNeedsOnlyTheBytesOfTheFieldItChecks) {
    const Bytes v4 = Ipv4(8);
    EXPECT_EQ(check_packet_header({v4.data(), 3}).status, PacketHeaderCheck::Status::need_more);
    const auto c = check_packet_header({v4.data(), 4});
    EXPECT_EQ(c.status, PacketHeaderCheck::Status::length_known);
    EXPECT_EQ(c.length, 28u);
    const Bytes v6 = Ipv6(8);
    EXPECT_EQ(check_packet_header({v6.data(), 6}).status, PacketHeaderCheck::Status::need_more);
    EXPECT_EQ(check_packet_header({v6.data(), 7}).length, 48u);
    EXPECT_EQ(check_packet_header({}).status, PacketHeaderCheck::Status::need_more);
}

}  // namespace
}  // namespace pfp
