#pragma once
#include <vector>

#include "common/unique_fd.hpp"
#include "common/worker_config.hpp"

namespace pfp::worker {

// The worker's fixed fd contract: the control socket is fd 3, nothing else is inherited.
constexpr int kControlFd = 3;

struct Handover {
    WorkerConfig config;
    std::vector<unique_fd> fds;
};

// Checks fd 3 is a SOCK_SEQPACKET Unix socket and waits (bounded) for the HANDOVER message.
// Throws std::runtime_error with context.
Handover receive_handover(int control_fd);

}  // namespace pfp::worker
