#pragma once
// Starting a worker process with a fixed fd contract: 0 is /dev/null, 1 and 2 are one pipe the
// supervisor reads (its lines are relayed under the supervisor's prefix: worker_log.hpp), 3 is the
// worker's end of its control socketpair, nothing else survives exec.
#include <sys/types.h>

#include <string>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp::supervisor {

struct SpawnedWorker {
    pid_t pid = -1;
    unique_fd pidfd;    // readable when the process ends; reaped with waitid(P_PIDFD)
    unique_fd control;  // the supervisor's end of the control socketpair
    unique_fd log;      // the read end of the worker's stdout/stderr pipe, non-blocking
};

// `capabilities`: what the worker's kind keeps (its row in the kind table). They go into the
// worker's ambient set for this one exec, so a worker that is not root starts with exactly those;
// the supervisor must hold them in its permitted set. The worker's environment is PFPROXY_LOG and
// an allowlist of names (spawn.cpp), never the supervisor's whole environment. Throws
// std::runtime_error with context.
SpawnedWorker spawn_worker(const std::string& worker_path, const std::string& title,
                           const std::vector<int>& capabilities = {});

}  // namespace pfp::supervisor
