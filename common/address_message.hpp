#pragma once
// The ADDRESSES message (supervisor -> worker): the address set a host-name upstream resolved to,
// in the order to try them. The supervisor resolves names (workers cannot: no files, no DNS
// sockets) and sends a new set whenever a refresh changes it. Binary and fixed-size per entry,
// so the worker's decoder is a bounds check and nothing else:
//   u16 count | count x { u8 family (4 or 6) | 16 bytes address (IPv4: the first 4, rest 0)
//                          | u16 port (network order) | u32 IPv6 scope id (0 for IPv4) }
#include <cstddef>
#include <string>
#include <vector>

#include "common/endpoint.hpp"

namespace pfp::ipc {

constexpr size_t kMaxAddresses = 64;  // a DNS answer that fits a UDP packet has fewer
constexpr size_t kAddressEntrySize = 1 + 16 + 2 + 4;

// Throws std::invalid_argument for a non-IP address or more than kMaxAddresses.
std::string encode_addresses(const std::vector<SockAddr>& addresses);
// Throws protocol_error (common/ipc.hpp) for anything malformed: a wrong length, a count of 0
// or over the limit, an unknown family, an IPv4 entry with bytes past its address, port 0.
std::vector<SockAddr> decode_addresses(const std::string& payload);

}  // namespace pfp::ipc
