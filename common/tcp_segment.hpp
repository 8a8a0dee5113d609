#pragma once
// Cutting one whole TCP packet into segments that fit a route's MTU, as the kernel's GSO would
// have: the packet an nfqueue reader with "gso" queued whole (up to 64 KiB), which the injecting
// end must send through a real link. Each segment carries the original's IP and TCP headers
// (options included), its slice of the payload, its own sequence number, lengths and checksums;
// FIN and PSH stay on the last segment, CWR on the first, and IPv4 IDs count up from the
// original's. Data path code: no exceptions, no allocation.
#include <cstddef>
#include <cstdint>
#include <span>

namespace pfp {

// Whether `packet` is IPv4 or IPv6 (without extension headers) carrying TCP, as far as its fixed
// header says: the packets the kernel's GSO merges and segment_tcp() may cut.
inline bool carries_tcp(std::span<const uint8_t> packet) noexcept {
    constexpr uint8_t kTcp = 6;
    if (packet.size() >= 20 && (packet[0] >> 4) == 4) return packet[9] == kTcp;
    return packet.size() >= 40 && (packet[0] >> 4) == 6 && packet[6] == kTcp;
}

// Writes the segments of `packet` (one IPv4 or IPv6 TCP packet, exactly as long as its header
// says) one after another into `out`, each at most `max_packet` bytes, and each one's length into
// `lengths`. Returns how many, or 0 when this packet is not one to cut: not TCP, an IPv4
// fragment, IPv6 with extension headers, lengths that do not match, the urgent flag (its pointer
// would need moving), no payload, headers that leave no room for payload within max_packet, or
// more segments than `lengths` holds or bytes than `out` holds.
size_t segment_tcp(std::span<const uint8_t> packet, size_t max_packet, std::span<uint8_t> out,
                   std::span<size_t> lengths) noexcept;

}  // namespace pfp
