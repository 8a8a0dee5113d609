#pragma once
// The upstream of a client that iptables redirected to a tcp-forward listener, from the address
// it meant to reach (SO_ORIGINAL_DST): that address itself ("original-destination"), or the
// configured upstream's IP moved by the original port's distance from the listener's port
// (base_address: a REDIRECTed port range becomes an IP range). Data path: no exceptions.
#include <cstdint>
#include <optional>
#include <string>

#include "common/endpoint.hpp"

namespace pfp::worker {

// `base` + (original_port - local_port), added to an IPv4 address or to the last 32 bits of an
// IPv6 one; the port stays `base`'s. nullopt when the sum leaves those 32 bits (the deployed tool
// wrapped around; an address the operator never configured is refused instead).
std::optional<SockAddr> base_address_destination(const SockAddr& base, uint16_t original_port,
                                                 uint16_t local_port);

// The TCP endpoint for `original` (an AF_INET or AF_INET6 address with its port).
Endpoint tcp_endpoint(const SockAddr& original);

// The port of an AF_INET or AF_INET6 address (0 for anything else).
uint16_t port_of(const SockAddr& a);

// getsockname(): for a redirected client, the listener's own address (after NAT).
SockAddr local_address(int fd);

}  // namespace pfp::worker
