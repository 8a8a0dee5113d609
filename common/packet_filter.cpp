#include "common/packet_filter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "common/byte_order.hpp"

namespace pfp {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

struct Prefix {
    std::array<uint8_t, 16> bytes;
    unsigned bits;
};

bool in_prefix(const uint8_t* a, const Prefix& p) noexcept {
    const unsigned whole = p.bits / 8, rest = p.bits % 8;
    if (std::memcmp(a, p.bytes.data(), whole) != 0) return false;
    if (rest == 0) return true;
    const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a[whole] & mask) == (p.bytes[whole] & mask);
}

// The deployed outgoing tool's list (the IPv4 special-purpose ranges), in its order.
constexpr Prefix kReserved4[] = {
    {{0, 0, 0, 0}, 8},        // "this network"
    {{10, 0, 0, 0}, 8},       // private
    {{100, 64, 0, 0}, 10},    // carrier-grade NAT
    {{127, 0, 0, 0}, 8},      // loopback
    {{169, 254, 0, 0}, 16},   // link-local
    {{172, 16, 0, 0}, 12},    // private
    {{192, 0, 0, 0}, 24},     // IETF protocol assignments
    {{192, 0, 2, 0}, 24},     // TEST-NET-1
    {{192, 88, 99, 0}, 24},   // 6to4 relay anycast
    {{192, 168, 0, 0}, 16},   // private
    {{198, 18, 0, 0}, 15},    // benchmarking
    {{198, 51, 100, 0}, 24},  // TEST-NET-2
    {{203, 0, 113, 0}, 24},   // TEST-NET-3
    {{224, 0, 0, 0}, 4},      // multicast
    {{240, 0, 0, 0}, 4},      // reserved, broadcast
};

// IPv6: only global unicast (2000::/3) reaches the internet; within it, the special-purpose
// blocks that match the IPv4 list's kinds.
constexpr Prefix kGlobal6{{0x20}, 3};
constexpr Prefix kReserved6[] = {
    {{0x20, 0x01, 0x00, 0x00}, 23},  // IETF protocol assignments (Teredo, ORCHID, ...)
    {{0x20, 0x01, 0x0d, 0xb8}, 32},  // documentation
    {{0x20, 0x02}, 16},              // 6to4
    {{0x3f, 0xff, 0x00}, 20},        // documentation
};

bool listed(const std::array<PacketAddress, PacketFilter::kMaxAddresses>& list, size_t count,
            uint8_t version, const uint8_t* addr) noexcept {
    const size_t len = version == 4 ? 4 : 16;
    for (size_t i = 0; i < count; ++i)
        if (list[i].version == version && std::memcmp(list[i].bytes.data(), addr, len) == 0)
            return true;
    return false;
}

// What the port rule needs of a packet.
struct Transport {
    bool malformed = false;
    bool has_ports = false;  // a TCP or UDP header starts in this packet (not a later fragment)
    bool truncated = false;  // ...but its source port is not in the packet
    uint16_t source_port = 0;
};

Transport transport_at(std::span<const uint8_t> p, size_t offset, uint8_t protocol) noexcept {
    Transport t;
    if (protocol != kTcp && protocol != kUdp) return t;
    t.has_ports = true;
    if (offset + 2 > p.size()) {
        t.truncated = true;
        return t;
    }
    t.source_port = be16(p.data() + offset);
    return t;
}

Transport transport4(std::span<const uint8_t> p, size_t header) noexcept {
    if ((be16(p.data() + 6) & 0x1fff) != 0) return {};  // a later fragment: no L4 header
    return transport_at(p, header, p[9]);
}

// Walks the extension headers (a bounded number) to the transport header.
Transport transport6(std::span<const uint8_t> p) noexcept {
    constexpr int kMaxExtensions = 8;
    uint8_t next = p[6];
    size_t off = 40;
    for (int i = 0; i < kMaxExtensions; ++i) {
        size_t len = 0;
        switch (next) {
            case 0:   // hop-by-hop options
            case 43:  // routing
            case 60:  // destination options
                if (off + 2 > p.size()) return {.malformed = true};
                len = (size_t{p[off + 1]} + 1) * 8;
                break;
            case 44:  // fragment
                if (off + 8 > p.size()) return {.malformed = true};
                if ((be16(p.data() + off + 2) >> 3) != 0) return {};  // a later fragment
                len = 8;
                break;
            case 51:  // authentication header
                if (off + 2 > p.size()) return {.malformed = true};
                len = (size_t{p[off + 1]} + 2) * 4;
                break;
            default:
                return transport_at(p, off, next);
        }
        if (off + len > p.size()) return {.malformed = true};
        next = p[off];
        off += len;
    }
    // More extension headers than any real packet has: the port cannot be checked.
    return {.has_ports = true, .truncated = true};
}

}  // namespace

std::string_view drop_reason_name(DropReason r) noexcept {
    switch (r) {
        case DropReason::none:
            return "none";
        case DropReason::malformed:
            return "malformed";
        case DropReason::destination:
            return "destination";
        case DropReason::source:
            return "source";
        case DropReason::reserved:
            return "reserved";
        case DropReason::port:
            return "port";
    }
    return "?";
}

std::optional<PacketAddress> parse_ip_address(std::string_view text) noexcept {
    char buf[INET6_ADDRSTRLEN + 1];
    if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    PacketAddress a;
    if (::inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
        a.version = 4;
        return a;
    }
    if (::inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
        a.version = 6;
        return a;
    }
    return std::nullopt;
}

std::optional<PortSpan> parse_port_range(std::string_view text) noexcept {
    const auto number = [](std::string_view s) -> std::optional<uint16_t> {
        if (s.empty() || s.size() > 5) return std::nullopt;
        unsigned v = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return std::nullopt;
            v = v * 10 + static_cast<unsigned>(c - '0');
        }
        if (v > 65535) return std::nullopt;
        return static_cast<uint16_t>(v);
    };
    const size_t dash = text.find('-');
    const auto first = number(text.substr(0, dash));
    const auto last = dash == std::string_view::npos ? first : number(text.substr(dash + 1));
    if (!first || !last || *first > *last) return std::nullopt;
    return PortSpan{*first, *last};
}

bool PacketFilter::add_destination(const PacketAddress& a) noexcept {
    if (destination_count == kMaxAddresses) return false;
    destinations[destination_count++] = a;
    return true;
}

bool PacketFilter::add_source(const PacketAddress& a) noexcept {
    if (source_count == kMaxAddresses) return false;
    sources[source_count++] = a;
    return true;
}

bool PacketFilter::add_source_ports(const PortSpan& r) noexcept {
    if (source_port_count == kMaxPortRanges) return false;
    source_ports[source_port_count++] = r;
    return true;
}

bool is_reserved_destination(const PacketAddress& a) noexcept {
    if (a.version == 4)
        return std::any_of(std::begin(kReserved4), std::end(kReserved4),
                           [&a](const Prefix& p) { return in_prefix(a.bytes.data(), p); });
    if (!in_prefix(a.bytes.data(), kGlobal6)) return true;
    return std::any_of(std::begin(kReserved6), std::end(kReserved6),
                       [&a](const Prefix& p) { return in_prefix(a.bytes.data(), p); });
}

DropReason filter_packet(const PacketFilter& f, std::span<const uint8_t> p) noexcept {
    if (f.passes_everything()) return DropReason::none;
    if (p.empty()) return DropReason::malformed;
    const uint8_t version = p[0] >> 4;
    size_t header = 0;
    const uint8_t *src = nullptr, *dst = nullptr;
    if (version == 4) {
        header = size_t{p[0] & 0x0fu} * 4;
        if (header < 20 || p.size() < header) return DropReason::malformed;
        src = p.data() + 12;
        dst = p.data() + 16;
    } else if (version == 6) {
        if (p.size() < 40) return DropReason::malformed;
        src = p.data() + 8;
        dst = p.data() + 24;
    } else {
        return DropReason::malformed;
    }
    if (f.destination_count && !listed(f.destinations, f.destination_count, version, dst))
        return DropReason::destination;
    if (f.source_count && !listed(f.sources, f.source_count, version, src))
        return DropReason::source;
    if (f.drop_reserved) {
        PacketAddress a;
        a.version = version;
        std::memcpy(a.bytes.data(), dst, version == 4 ? 4 : 16);
        if (is_reserved_destination(a)) return DropReason::reserved;
    }
    if (f.source_port_count) {
        const Transport t = version == 4 ? transport4(p, header) : transport6(p);
        if (t.malformed) return DropReason::malformed;
        if (t.has_ports) {
            if (t.truncated) return DropReason::port;
            const auto begin = f.source_ports.begin();
            const auto end = begin + static_cast<ptrdiff_t>(f.source_port_count);
            if (std::none_of(begin, end, [&t](const PortSpan& r) {
                    return r.first <= t.source_port && t.source_port <= r.last;
                }))
                return DropReason::port;
        }
    }
    return DropReason::none;
}

}  // namespace pfp
