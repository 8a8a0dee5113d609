#pragma once
// What the control socket and the metrics endpoint ask of the supervisor. The supervisor
// implements it; the servers (control_server, metrics_server) only parse, check and render.
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
};

}  // namespace pfp::supervisor
