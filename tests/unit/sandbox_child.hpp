#pragma once
// The child side of the sandbox death tests: lock down as a worker kind with the real lock_down()
// and run one body. In FilterMode::trap a SIGSYS handler installed first writes the number of the
// call the filter refused to stderr ("seccomp trap: syscall=N.") and then dies of SIGSYS, so a
// test can match the call it names: a child that dies on an earlier, unrelated call fails the
// match. The rules are the same in every mode; only the default action differs.
// Children leave with _exit() so no atexit handler (LeakSanitizer's ptrace included) runs under
// the filter.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>

#include "workers/sandbox.hpp"

namespace pfp::sandbox::test {

inline constexpr int kLockDownFailed = 99;
// si_code of a SIGSYS raised by seccomp (SYS_SECCOMP in the kernel's asm-generic/siginfo.h).
inline constexpr int kSysSeccomp = 1;

// Async-signal-safe: formats with no libc beyond write(2), getpid(2) and kill(2), which every
// profile allows (kill only of the process itself).
inline void report_trapped_syscall(int, siginfo_t* si, void*) {
    char buf[64];
    const char* head = si->si_code == kSysSeccomp ? "seccomp trap: syscall=" : "SIGSYS code=";
    long v = si->si_code == kSysSeccomp ? si->si_syscall : si->si_code;
    size_t n = 0;
    for (const char* p = head; *p != '\0'; ++p) buf[n++] = *p;
    if (v < 0) buf[n++] = '-', v = -v;
    char digits[24];
    size_t d = 0;
    do digits[d++] = static_cast<char>('0' + v % 10);
    while ((v /= 10) != 0);
    while (d > 0) buf[n++] = digits[--d];
    buf[n++] = '.';
    buf[n++] = '\n';
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, buf, n);
    // SA_RESETHAND restored the default action; SIGSYS stays blocked until the handler returns,
    // then it ends the process.
    ::kill(::getpid(), SIGSYS);
}

// The death-test regex for a child trapped on syscall `nr`.
inline std::string trapped_on(long nr) {
    return "seccomp trap: syscall=" + std::to_string(nr) + "\\.";
}

// In the death-test child: lock down as `kind`, run `body`, leave with its result.
template <typename Body>
[[noreturn]] void locked_as(WorkerKind kind, FilterMode mode, Body body) {
    if (mode == FilterMode::trap) {
        struct sigaction sa {};
        sa.sa_sigaction = report_trapped_syscall;
        sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
        if (::sigaction(SIGSYS, &sa, nullptr) != 0) _exit(kLockDownFailed);
    }
    try {
        lock_down(kind, mode);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lock_down failed: %s\n", e.what());
        _exit(kLockDownFailed);
    }
    _exit(body());
}

}  // namespace pfp::sandbox::test
