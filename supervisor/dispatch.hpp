#pragma once
// What a worker may say, and when (OpenSSH mon_table style). Worker messages are hostile input:
// anything not in this table gets the worker killed.
#include <string>

#include "common/ipc.hpp"
#include "supervisor/supervisor.hpp"

namespace pfp::supervisor {

struct Verdict {
    bool allowed;
    std::string reason;  // why not, for the log line
};

Verdict permit(WorkerProcess::State state, const ipc::Message& m);

}  // namespace pfp::supervisor
