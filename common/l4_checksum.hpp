#pragma once
// TCP and UDP checksums of whole IP packets, recomputed in place. A packet copied out of the
// kernel before its checksum was finished (nflog copies what OUTPUT sees: with checksum offload
// the field holds only the pseudo-header's sum) must have it filled in before it is injected
// anywhere else. Data path code: no exceptions, no allocation.
#include <cstdint>
#include <span>

namespace pfp {

// Recomputes the TCP or UDP checksum of `packet` (one IPv4 or IPv6 packet, exactly as long as its
// header says). False, and nothing changed, for other protocols, fragments, IPv6 extension
// headers, an IPv4 UDP datagram without checksum (field 0), or a packet too short for its header.
bool fill_l4_checksum(std::span<uint8_t> packet) noexcept;

// The Internet checksum (RFC 1071) of `data` added to `sum` (not yet folded or complemented).
uint64_t checksum_add(uint64_t sum, std::span<const uint8_t> data) noexcept;
// The checksum field for such a sum: folded to 16 bits and complemented.
uint16_t checksum_finish(uint64_t sum) noexcept;

}  // namespace pfp
