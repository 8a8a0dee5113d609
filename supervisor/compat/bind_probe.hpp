#pragma once
// Before the supervisor starts, a seed command binds (and closes) a socket like its listener, so
// that a listener that cannot be opened is reported in the seed's words rather than the
// supervisor's.
#include <optional>

#include "common/endpoint.hpp"
#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

struct ProbeFailure {
    BindStage stage;
    int err;  // errno
};

// nullopt when the listener can be bound, or when the probe cannot tell: unix and fc-vsock
// listeners are left to the supervisor, and so is EACCES when the supervisor can raise
// CAP_NET_BIND_SERVICE for its own bind.
std::optional<ProbeFailure> probe_listener(const Endpoint& e);

}  // namespace pfp::compat
