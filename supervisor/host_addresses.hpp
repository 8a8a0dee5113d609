#pragma once
// The host's own IP addresses, which an `allow` list never reaches unless an entry names them.
#include <optional>
#include <string>
#include <vector>

namespace pfp::supervisor {

// From getifaddrs (a NETLINK_ROUTE dump); nullopt when netlink is refused (the shipped unit's
// RestrictAddressFamilies= has no AF_NETLINK).
std::optional<std::vector<std::string>> host_addresses_from_netlink();

// Without netlink: IPv4 from SIOCGIFCONF on an AF_INET socket, IPv6 from /proc/self/net/if_inet6
// (visible under ProcSubset=pid). Throws std::system_error when neither can be read.
std::vector<std::string> host_addresses_without_netlink();

}  // namespace pfp::supervisor
