#pragma once
// Receiving and checking the HANDOVER: the worker trusts its supervisor, but a handover that does
// not match the kind's row (a wrong, missing or extra fd, a capability the kind does not name)
// means something between them is wrong, and the worker refuses to run on it.
#include <vector>

#include "common/handover.hpp"
#include "common/unique_fd.hpp"

namespace pfp::worker {

// The worker's fixed fd contract: the control socket is fd 3, nothing else is inherited.
constexpr int kControlFd = 3;

struct Received {
    Handover handover;
    std::vector<unique_fd> fds;
};

// Checks fd 3 is a SOCK_SEQPACKET Unix socket and waits (bounded) for the HANDOVER message.
// Throws std::runtime_error with context.
Received receive_handover(int control_fd);

// The fds against the kind's row and the handover's fd table: count, order, role, and each socket
// as its role requires (domain, type, protocol, listening). Throws handover_refused with one line
// naming the fd, its role and what was wrong.
void verify_fds(const Handover& h, const std::vector<unique_fd>& fds);

// A worker that is not root holds exactly the capabilities its kind's row names (spawn puts them
// in its ambient set); any other means it was started with more, or less, than its kind needs.
// Root workers hold everything until lock-down drops it. Throws handover_refused.
void verify_capabilities(const Handover& h);

class handover_refused : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

}  // namespace pfp::worker
