#pragma once
// Runs pf-proxyd on an already validated policy: the path every entry point takes, the policy
// file of pf-proxyd and the in-memory one-proxy policy of each seed-compatible command alike.
#include <optional>
#include <string>

#include "policy/model.hpp"

namespace pfp::supervisor {

struct DaemonOptions {
    std::optional<std::string> worker_path;  // default: beside the running binary, else libexec
    std::string source = "policy";           // where the policy came from, for log lines
    // How to stop running as root, for the warning when the policy has no "user" and pf-proxyd
    // runs as root; empty: set "user" in `source`.
    std::string root_hint;
    // The control socket: empty for none (the seed commands); `control_required` makes a failure
    // to open it fatal (an explicit --control), otherwise it is a warning.
    std::string control_path;
    bool control_required = false;
    // SIGHUP and SIGQUIT stop it like SIGTERM (a command line has no policy file to reload).
    bool hangup_stops = false;
};

// Takes the sockets systemd passed, opens the rest, drops privileges, spawns and supervises
// workers until SIGTERM/SIGINT.
// Returns the exit status (0 after a clean stop, 1 after a start-up failure, which is logged).
int run_daemon(policy::Policy pol, const DaemonOptions& options);

}  // namespace pfp::supervisor
