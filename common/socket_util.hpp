#pragma once
// Small socket helpers shared by the supervisor (creating listeners) and the workers (checking
// what they were handed).
#include <string>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "common/worker_kind.hpp"

namespace pfp {

struct SocketInfo {
    int domain = 0;
    int type = 0;
    int protocol = 0;
    bool listening = false;
};

// SO_DOMAIN / SO_TYPE / SO_PROTOCOL / SO_ACCEPTCONN. Throws system_error (e.g. not a socket).
SocketInfo inspect_socket(int fd);

// Throws std::runtime_error unless `fd` is a listening stream socket of `family`.
void require_stream_listener(int fd, int family, const std::string& what);

// Whether `fd` is what a socket of `role` for endpoint `e` must be (the same checks the
// supervisor's socket factory promises and the worker makes on receipt): "" when it is, else what
// is wrong, in a few words ("expected a listening AF_INET stream socket, got AF_UNIX SOCK_DGRAM").
std::string socket_role_mismatch(int fd, FdRole role, const Endpoint& e);

std::string family_name(int family);

// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the new soft limit.
long raise_fd_limit();

}  // namespace pfp
