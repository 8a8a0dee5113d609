#pragma once
// Opening the policy's listening sockets, raising a capability only around the call that
// needs it.
#include <set>
#include <string>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "policy/model.hpp"
#include "supervisor/privileges.hpp"

namespace pfp::supervisor {

// Capabilities needed to open the policy's sockets (CAP_NET_BIND_SERVICE for a port below
// net.ipv4.ip_unprivileged_port_start) and those a running worker of the policy needs.
std::set<int> caps_to_open(const policy::Policy& p);
std::set<int> caps_to_keep(const policy::Policy& p);

// A non-blocking, close-on-exec listening socket. Throws std::runtime_error naming the proxy,
// the endpoint and, on EACCES, the capability that was missing.
unique_fd open_listener(const policy::Proxy& proxy, const Privileges& privs);

}  // namespace pfp::supervisor
