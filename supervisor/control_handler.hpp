#pragma once
// What the control socket and the metrics endpoint ask of the supervisor. The supervisor
// implements it; the servers (control_server, metrics_server) only parse, check and render.
#include <sys/types.h>

#include <string>
#include <vector>

#include "supervisor/status.hpp"

namespace pfp::supervisor {

struct CommandOutcome {
    bool ok = false;
    std::string message;              // one line: what happened, or why not
    std::vector<std::string> errors;  // e.g. every policy diagnostic of a refused reload
};

class ControlHandler {
  public:
    virtual ~ControlHandler() = default;
    virtual DaemonStatus status() = 0;
    virtual CommandOutcome reload() = 0;
    virtual CommandOutcome restart_proxy(const std::string& name) = 0;
    virtual CommandOutcome stop_proxy(const std::string& name) = 0;
    virtual CommandOutcome start_proxy(const std::string& name) = 0;
    // A live worker process of this supervisor: the control socket and a unix: metrics endpoint
    // refuse it whatever its uid (workers share the daemon's uid, and run code an attacker may
    // control). Workers cannot fork, so a worker's peer pid is its own.
    virtual bool is_worker(pid_t) const { return false; }
};

}  // namespace pfp::supervisor
