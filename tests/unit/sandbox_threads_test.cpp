// The thread-relay variant of a stream kind's profile (`"relay": "threads"`): a relay thread can
// be started and joined after the real lock-down, and it is as locked down as its creator; a
// fork-style clone, a clone with any other flag, and clone3 are not thread creation and fail (the
// first two killed with SIGSYS naming clone, clone3 with ENOSYS so glibc falls back to clone).
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "sandbox_child.hpp"
#include "workers/sandbox.hpp"

#ifdef PFPROXY_SANITIZE
// As the worker (workers/main.cpp): the runtime would give each new thread an alternate signal
// stack with sigaltstack(), which the filter allows only as a query.
extern "C" const char* __asan_default_options() {
    return "use_sigaltstack=0";
}
#endif

namespace pfp::sandbox {
namespace {

using test::trapped_on;

// In the death-test child: lock down with `kind`'s thread-relay variant, run `body`, leave.
template <typename Body>
[[noreturn]] void locked_with_threads(WorkerKind kind, FilterMode mode, Body body) {
    if (mode == FilterMode::trap) {
        struct sigaction sa {};
        sa.sa_sigaction = test::report_trapped_syscall;
        sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
        if (::sigaction(SIGSYS, &sa, nullptr) != 0) _exit(test::kLockDownFailed);
    }
    try {
        start_thread_runtime();  // as the worker does before its lock-down
        lock_down(with_thread_relay(profile_for(kind)), mode);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lock_down failed: %s\n", e.what());
        _exit(test::kLockDownFailed);
    }
    _exit(body());
}

constexpr WorkerKind kKinds[] = {WorkerKind::tcp_forward, WorkerKind::vsock_to_vsock,
                                 WorkerKind::ip_to_vsock, WorkerKind::vsock_to_ip};

// A relay thread's loop in miniature: read a socket, write the other, until EOF.
struct Echo {
    int from = -1;
    int to = -1;
    long moved = 0;
};
void* echo(void* arg) {
    auto& e = *static_cast<Echo*>(arg);
    char buf[256];
    for (;;) {
        const ssize_t n = ::recv(e.from, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (::send(e.to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        e.moved += n;
    }
    ::shutdown(e.to, SHUT_WR);
    return nullptr;
}

TEST(SandboxThreadRelay, ThreadsStartRelayAndJoinAfterLockDown) {
    for (WorkerKind kind : kKinds) {
        SCOPED_TRACE(kind_name(kind));
        EXPECT_EXIT(
            {
                int a[2];
                int b[2];
                if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) < 0 ||
                    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b) < 0)
                    _exit(5);
                locked_with_threads(kind, FilterMode::trap, [&] {
                    Echo e;
                    e.from = a[1];
                    e.to = b[0];
                    pthread_attr_t attr;
                    ::pthread_attr_init(&attr);
                    ::pthread_attr_setstacksize(&attr, 256 * 1024);
                    pthread_t t;
                    if (::pthread_create(&t, &attr, echo, &e) != 0) return 3;
                    const char msg[] = "through a thread";
                    if (::send(a[0], msg, sizeof msg, 0) != static_cast<ssize_t>(sizeof msg))
                        return 4;
                    ::shutdown(a[0], SHUT_WR);
                    char got[64];
                    ssize_t n = ::recv(b[1], got, sizeof got, MSG_WAITALL);
                    if (::pthread_join(t, nullptr) != 0) return 6;
                    if (n != static_cast<ssize_t>(sizeof msg) || std::memcmp(got, msg, sizeof msg))
                        return 7;
                    return e.moved == static_cast<long>(sizeof msg) ? 0 : 8;
                });
            },
            testing::ExitedWithCode(0), "");
    }
}

TEST(SandboxThreadRelay, ForkStyleCloneIsKilledNamingClone) {
    EXPECT_EXIT(locked_with_threads(WorkerKind::vsock_to_vsock, FilterMode::kill,
                                    [] { return static_cast<int>(::fork()); }),
                testing::KilledBySignal(SIGSYS), "");
    EXPECT_EXIT(locked_with_threads(WorkerKind::vsock_to_vsock, FilterMode::trap,
                                    [] { return static_cast<int>(::fork()); }),
                testing::KilledBySignal(SIGSYS), trapped_on(SYS_clone));
}

TEST(SandboxThreadRelay, CloneWithAnyOtherFlagIsKilled) {
    // The thread flags plus one more each: a new user or network namespace, a vfork, a process
    // (no CLONE_THREAD). Nothing runs: the filter decides on the flags alone.
    const uint64_t thread = thread_clone_flags();
    for (uint64_t flags : {thread | CLONE_NEWUSER, thread | CLONE_NEWNET, thread | CLONE_VFORK,
                           thread & ~uint64_t{CLONE_THREAD}, uint64_t{SIGCHLD}}) {
        SCOPED_TRACE(flags);
        EXPECT_EXIT(locked_with_threads(WorkerKind::tcp_forward, FilterMode::trap,
                                        [flags] {
                                            return static_cast<int>(::syscall(
                                                SYS_clone, flags, nullptr, nullptr, nullptr, 0));
                                        }),
                    testing::KilledBySignal(SIGSYS), trapped_on(SYS_clone));
    }
}

TEST(SandboxThreadRelay, Clone3FailsWithEnosys) {
    EXPECT_EXIT(locked_with_threads(WorkerKind::vsock_to_ip, FilterMode::kill,
                                    [] {
                                        clone_args args{};
                                        args.flags = CLONE_NEWUSER;
                                        args.exit_signal = SIGCHLD;
                                        const long r = ::syscall(SYS_clone3, &args, sizeof args);
                                        return r == -1 && errno == ENOSYS ? 0 : 3;
                                    }),
                testing::ExitedWithCode(0), "");
}

// A thread inherits its creator's filter: what the worker may not do, its threads may not either.
TEST(SandboxThreadRelay, AThreadIsAsLockedDownAsItsCreator) {
    EXPECT_EXIT(locked_with_threads(WorkerKind::vsock_to_vsock, FilterMode::trap,
                                    [] {
                                        pthread_t t;
                                        auto netlink = [](void*) -> void* {
                                            ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
                                            return nullptr;
                                        };
                                        if (::pthread_create(&t, nullptr, netlink, nullptr) != 0)
                                            return 3;
                                        ::pthread_join(t, nullptr);
                                        return 0;
                                    }),
                testing::KilledBySignal(SIGSYS), trapped_on(SYS_socket));
}

// The event engine's profiles stay as they were: no thread creation at all (glibc's clone3, then
// clone, both die; signals are blocked around them, so no trap handler can name the call).
TEST(SandboxThreadRelay, EventProfilesCannotStartThreads) {
    EXPECT_EXIT(
        {
            try {
                start_thread_runtime();  // so that thread creation itself is what the filter meets
                lock_down(profile_for(WorkerKind::vsock_to_vsock), FilterMode::kill);
            } catch (const std::exception&) {
                _exit(test::kLockDownFailed);
            }
            pthread_t t;
            auto nothing = [](void*) -> void* { return nullptr; };
            _exit(::pthread_create(&t, nullptr, nothing, nullptr) == 0 ? 0 : 3);
        },
        testing::KilledBySignal(SIGSYS), "");
}

TEST(SandboxThreadRelay, VariantAddsOnlyTheThreadRules) {
    const Profile& base = profile_for(WorkerKind::ip_to_vsock);
    const Profile threads = with_thread_relay(base);
    ASSERT_EQ(threads.rules.size(), base.rules.size() + thread_relay_rules().size());
    for (size_t i = base.rules.size(); i < threads.rules.size(); ++i)
        EXPECT_EQ(threads.rules[i].scope, "thread-relay");
    for (const auto& r : thread_relay_rules()) {
        EXPECT_FALSE(r.why.empty()) << r.name;
        if (r.name == "clone") {
            ASSERT_EQ(r.arg_index, 0);
            EXPECT_EQ(r.arg_values, std::vector<uint64_t>{thread_clone_flags()});
        }
    }
}

}  // namespace
}  // namespace pfp::sandbox
