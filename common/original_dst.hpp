#pragma once
// Where a client redirected by iptables (REDIRECT/DNAT) meant to go: SO_ORIGINAL_DST for IPv4,
// IP6T_SO_ORIGINAL_DST for IPv6. Data path: no exceptions.
#include <optional>

#include "common/endpoint.hpp"

namespace pfp {

// nullopt with errno set (ENOENT: the connection was not redirected / not tracked).
std::optional<SockAddr> original_destination(int fd);

}  // namespace pfp
