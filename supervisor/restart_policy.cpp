#include "supervisor/restart_policy.hpp"

#include <sys/wait.h>

#include <cstring>

#include "common/exit_codes.hpp"

namespace pfp::supervisor {

ExitInfo classify_exit(int status, bool stop_requested) {
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        std::string text = "exited with status " + std::to_string(code);
        if (code == exit_code::ok)
            return {stop_requested ? ExitClass::stopped : ExitClass::failure,
                    stop_requested ? "exited with status 0 after draining"
                                   : "exited with status 0 unasked"};
        if (code == exit_code::config)
            return {ExitClass::fatal, text + " (configuration unusable)"};
        if (code == exit_code::sandbox) return {ExitClass::fatal, text + " (could not lock down)"};
        if (code == exit_code::handover) return {ExitClass::failure, text + " (handover failed)"};
        if (code == exit_code::resource)
            return {ExitClass::failure, text + " (a resource was short at setup)"};
        return {ExitClass::failure, text};
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char* abbrev = sigabbrev_np(sig);
        std::string text = std::string("killed by signal ") + (abbrev ? "SIG" : "") +
                           (abbrev ? abbrev : std::to_string(sig));
        if (sig == SIGSYS) text += " (seccomp violation)";
        if (WCOREDUMP(status)) text += " (core dumped)";
        if (stop_requested && sig == SIGKILL)
            return {ExitClass::stopped, text + " after drain timeout"};
        return {ExitClass::failure, text};
    }
    return {ExitClass::failure, "ended with wait status " + std::to_string(status)};
}

std::optional<std::chrono::milliseconds> Backoff::failed(std::chrono::milliseconds uptime) {
    if (uptime >= policy_.healthy_after) failures_ = 0;  // it was healthy: a fresh start
    ++failures_;
    if (failures_ > policy_.max_failures) return std::nullopt;
    auto delay = policy_.backoff_initial;
    for (int i = 1; i < failures_ && delay < policy_.backoff_max; ++i) delay *= 2;
    return std::min(delay, policy_.backoff_max);
}

}  // namespace pfp::supervisor
