#pragma once
// How the supervisor reads a worker's end and decides what happens next (exit classes, backoff and
// crash loops: docs/architecture.md "Supervision").
#include <chrono>
#include <string>

#include "policy/model.hpp"

namespace pfp::supervisor {

enum class ExitClass {
    stopped,  // exited 0 after a drain we asked for
    failure,  // crashed or exited non-zero: restart with backoff
    fatal,    // config or sandbox failure: restarting cannot help
};

struct ExitInfo {
    ExitClass cls;
    std::string text;  // "exited with status 1", "killed by signal SIGSYS (seccomp violation)"
};

// `wait_status` as from waitpid/waitid (WIFEXITED etc.).
ExitInfo classify_exit(int wait_status, bool stop_requested);

// Consecutive-failure bookkeeping for one worker slot.
class Backoff {
  public:
    explicit Backoff(const policy::RestartPolicy& p) : policy_(p) {}
    // Records a failure of a worker that ran for `uptime`. Returns the delay before the next
    // start, or nullopt when the slot is in a crash loop (max_failures exceeded).
    std::optional<std::chrono::milliseconds> failed(std::chrono::milliseconds uptime);
    int consecutive_failures() const { return failures_; }

  private:
    policy::RestartPolicy policy_;
    int failures_ = 0;
};

}  // namespace pfp::supervisor
