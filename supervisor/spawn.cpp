#include "supervisor/spawn.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

#include "common/error.hpp"
#include "common/fd_passing.hpp"
#include "common/pidfd.hpp"

namespace pfp::supervisor {

namespace bp = boost::process;

namespace {

// What a worker inherits of the supervisor's environment, by name: the sanitizers' options (a
// sanitizer build reads them at start) and the hostile-worker test hook's variables (read only by
// a build with that hook compiled in). Nothing else: not systemd's notify and activation
// variables (workers talk only to the supervisor), not a psk_env key (a PSK reaches a worker only
// in its handover) — neither one the current policy names nor one a later reload will name.
constexpr std::array<const char*, 6> kPassedVariables{
    "ASAN_OPTIONS",    "UBSAN_OPTIONS",         "LSAN_OPTIONS",
    "PFPROXY_HOSTILE", "PFPROXY_HOSTILE_PROXY", "PFPROXY_HOSTILE_ARG"};

bp::environment worker_environment() {
    bp::environment env;  // empty
    for (const char* name : kPassedVariables)
        if (const char* value = std::getenv(name)) env[name] = value;
    env["PFPROXY_LOG"] = "supervisor";  // log lines go to the supervisor's pipe (common/log.cpp)
    return env;
}

}  // namespace

SpawnedWorker spawn_worker(const std::string& worker_path, const std::string& title,
                           const std::vector<int>& capabilities) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
        throw_errno("socketpair for worker " + title);
    unique_fd ours(pair[0]), theirs(pair[1]);
    // The worker's stdout and stderr: a pipe only the supervisor reads (worker_log.hpp).
    int log_pipe[2];
    if (::pipe2(log_pipe, O_CLOEXEC) < 0) throw_errno("pipe for worker " + title);
    unique_fd log_read(log_pipe[0]), log_write(log_pipe[1]);
    if (::fcntl(log_read.get(), F_SETFL, O_NONBLOCK) < 0) throw_errno("O_NONBLOCK on a log pipe");
    const int log_end = log_write.get();
    // A worker never passes fds: the kernel refuses them (ipc::receive defuses any that still
    // come).
    refuse_passed_fds(ours.get());
    const int child_end = theirs.get();
    const pid_t parent = ::getpid();
    // The inheritable set the child needs for its ambient capabilities, computed here: between
    // fork and exec only async-signal-safe calls may run (capget/capset, prctl).
    __user_cap_header_struct cap_header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct cap_data[_LINUX_CAPABILITY_U32S_3]{};
    uint32_t ambient_bits[_LINUX_CAPABILITY_U32S_3]{};
    for (int cap : capabilities) ambient_bits[cap / 32] |= 1U << (cap % 32);
    const std::vector<int> ambient = capabilities;

    std::error_code ec;
    // Runs in the child between fork and exec: only async-signal-safe calls.
    auto setup = [child_end, log_end, parent, &cap_header, &cap_data, &ambient_bits,
                  &ambient](auto&) {
        // dup2 clears close-on-exec on the copies; fds 0-2 exist (stdin is /dev/null), so the
        // pipe and the socketpair are both above 2.
        if (::dup2(log_end, 1) < 0 || ::dup2(log_end, 2) < 0) ::_exit(127);
        if (child_end == 3) {
            ::fcntl(3, F_SETFD, 0);
        } else if (::dup2(child_end, 3) < 0) {
            ::_exit(127);
        }
        // Everything above 3 closes at exec; Boost's own error pipe keeps working until then.
        ::syscall(SYS_close_range, 4U, ~0U, CLOSE_RANGE_CLOEXEC);
        ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if (!ambient.empty()) {
            // A capability enters the ambient set only when it is permitted and inheritable. A
            // failure here shows in the worker: it checks it holds exactly its kind's set.
            if (::syscall(SYS_capget, &cap_header, cap_data) == 0) {
                for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i)
                    cap_data[i].inheritable |= ambient_bits[i] & cap_data[i].permitted;
                ::syscall(SYS_capset, &cap_header, cap_data);
            }
            for (int cap : ambient)
                ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, static_cast<unsigned long>(cap), 0,
                        0);
        }
        ::prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);  // a lost supervisor means drain
        if (::getppid() != parent) ::_exit(0);        // it was lost before prctl took effect
    };
    bp::environment env = worker_environment();
    bp::child c(bp::exe = worker_path, bp::args = {title}, bp::std_in < bp::null, env,
                bp::extend::on_exec_setup = setup, ec);
    if (ec) throw std::runtime_error("cannot start worker " + worker_path + ": " + ec.message());
    pid_t pid = c.id();
    c.detach();                        // reaped by the supervisor through the pidfd, never by Boost
    int pidfd = ::pidfd_open(pid, 0);  // always close-on-exec
    if (pidfd < 0) {
        int err = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        throw system_error("pidfd_open(" + std::to_string(pid) + ")", err);
    }
    return SpawnedWorker{pid, unique_fd(pidfd), std::move(ours), std::move(log_read)};
}

}  // namespace pfp::supervisor
