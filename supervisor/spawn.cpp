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

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <stdexcept>
#include <system_error>

#include "common/error.hpp"
#include "common/fd_passing.hpp"
#include "common/pidfd.hpp"

namespace pfp::supervisor {

namespace bp = boost::process;

SpawnedWorker spawn_worker(const std::string& worker_path, const std::string& title,
                           const std::vector<int>& capabilities) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
        throw_errno("socketpair for worker " + title);
    unique_fd ours(pair[0]), theirs(pair[1]);
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
    auto setup = [child_end, parent, &cap_header, &cap_data, &ambient_bits, &ambient](auto&) {
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
    // Workers talk only to the supervisor: systemd's notify socket (and the activation
    // variables, already unset) are not theirs to use.
    bp::environment env = boost::this_process::environment();
    for (const char* name : {"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
                             "WATCHDOG_USEC", "WATCHDOG_PID"}) {
        if (env.find(name) != env.end()) env.erase(name);
    }
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
    return SpawnedWorker{pid, unique_fd(pidfd), std::move(ours)};
}

}  // namespace pfp::supervisor
