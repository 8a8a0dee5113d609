#pragma once
// The Landlock layer of a worker's lock-down, under the seccomp filter: what seccomp cannot see
// (a connect()'s address, a path) Landlock bounds by port and by domain. Applied as far as the
// running kernel's Landlock ABI goes:
//   ABI >= 1  no file access at all (production builds; a sanitizer build reads /proc for its
//             reports)
//   ABI >= 4  TCP connect only to the ports the proxy's upstream or `allow` list names; no TCP
//             bind (workers connect, the supervisor binds)
//   ABI >= 6  no abstract Unix socket and no signal outside the worker's own domain
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/allow_list.hpp"
#include "common/handover.hpp"

namespace pfp::sandbox {

struct LandlockRules {
    // TCP ports connect() may reach; nullopt: any (a destination chosen per connection that no
    // `allow` entry bounds by port).
    std::optional<std::vector<PortRange>> tcp_connect;
    // Off only for a worker whose own upstream is an abstract socket, which it must reach.
    bool scope_abstract_unix = true;
#ifdef PFPROXY_SANITIZE
    bool restrict_files = false;  // the sanitizer runtime reads /proc/self/maps for its reports
#else
    bool restrict_files = true;
#endif
};

// From the handover: a fixed tcp: upstream allows its port; a destination chosen per connection
// allows the ports of the `allow` entries (any, if one allows every port or they span more than
// kMaxPortRules ports); every other upstream allows no TCP connect at all. An abstract Unix
// upstream leaves abstract sockets unscoped.
LandlockRules landlock_rules(const Handover& h);
inline constexpr size_t kMaxPortRules = 4096;

// The kernel's Landlock ABI version; 0 without Landlock (not built in, or disabled at boot).
int landlock_abi();

// Restricts the calling process (it must have NO_NEW_PRIVS set) as far as `abi` allows; returns
// what was applied, for the worker's log line. Throws std::system_error when a call the ABI
// promises fails.
std::string apply_landlock(const LandlockRules& rules, int abi);

}  // namespace pfp::sandbox
