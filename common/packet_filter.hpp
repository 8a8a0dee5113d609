#pragma once
// The injecting side's packet filters (docs/policy.md, "Packet filters"): which IP packets from
// the stream a stream-to-raw worker may put on the network. The deployed Oyster tools hard-code
// them; here they are policy fields the compat commands set to the tools' values:
//   - destination: the destination address must be one of the listed ones (the enclave's);
//   - source: the source address must be one of the listed ones (the egress interface's);
//   - reserved: destinations in special-purpose ranges (RFC 6890 and its IPv6 equivalents) are
//     dropped;
//   - port: a TCP or UDP packet's source port must be in the listed ranges.
// A rule with nothing listed (or `drop_reserved` false) lets every packet through. Each drop has
// one reason, the first rule that fails in the order above, so the counters add up.
//
// Data path code: the decision is pure, no allocation, no exceptions, no I/O. The packet is
// untrusted; the framer checked its header, but filter_packet() checks every length it reads.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace pfp {

enum class DropReason : uint8_t { none, malformed, destination, source, reserved, port };
inline constexpr size_t kDropReasons = 6;  // including none
// "destination", "source", ...: the counters' and metrics' names.
std::string_view drop_reason_name(DropReason r) noexcept;

struct PacketAddress {
    uint8_t version = 0;              // 4 or 6
    std::array<uint8_t, 16> bytes{};  // IPv4: the first 4
    bool operator==(const PacketAddress&) const = default;
};
// An IPv4 or IPv6 address in its text form (no port, no brackets, no scope); nullopt if not one.
std::optional<PacketAddress> parse_ip_address(std::string_view text) noexcept;

struct PortSpan {
    uint16_t first = 0;
    uint16_t last = 0;
    bool operator==(const PortSpan&) const = default;
};
// "443" or "1024-61439" (first <= last); nullopt otherwise.
std::optional<PortSpan> parse_port_range(std::string_view text) noexcept;

struct PacketFilter {
    static constexpr size_t kMaxAddresses = 8;
    static constexpr size_t kMaxPortRanges = 16;
    std::array<PacketAddress, kMaxAddresses> destinations{};
    size_t destination_count = 0;  // 0: any destination
    std::array<PacketAddress, kMaxAddresses> sources{};
    size_t source_count = 0;  // 0: any source
    bool drop_reserved = false;
    std::array<PortSpan, kMaxPortRanges> source_ports{};
    size_t source_port_count = 0;  // 0: any source port

    // False when the list is full.
    bool add_destination(const PacketAddress& a) noexcept;
    bool add_source(const PacketAddress& a) noexcept;
    bool add_source_ports(const PortSpan& r) noexcept;
    bool passes_everything() const noexcept {
        return destination_count == 0 && source_count == 0 && !drop_reserved &&
               source_port_count == 0;
    }
};

// The Oyster outgoing tool's source ports: {80, 443} and [1024, 61439].
inline constexpr std::array<PortSpan, 3> kOysterSourcePorts{{{80, 80}, {443, 443}, {1024, 61439}}};

// Whether `a` is in a special-purpose range: not a destination a packet to the internet has.
bool is_reserved_destination(const PacketAddress& a) noexcept;

// The verdict on one whole packet: DropReason::none lets it through. `malformed`: too short for
// what its header says (the framer never yields such a packet; the fuzz target does).
DropReason filter_packet(const PacketFilter& f, std::span<const uint8_t> packet) noexcept;

}  // namespace pfp
