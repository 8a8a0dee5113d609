#pragma once
// Which syscalls and capabilities each worker kind gets, and why (sandbox_profiles.cpp, from the
// kind table), and the fixed lock-down sequence every worker runs (lockdown.cpp).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/worker_kind.hpp"
#include "workers/filesystem_view.hpp"
#include "workers/landlock.hpp"

namespace pfp::sandbox {

// Placeholder in arg_values: install_seccomp() replaces it with the installing process's
// getpid(). Its upper bits are set, so an unreplaced placeholder matches no real pid.
inline constexpr uint64_t kSelfPid = 0x5e1f'0000'0000'0000ULL;
// Placeholder for the fd of the handed-over listener (Profile::listener_fd), which shutdown()
// must never reach: the listener is shared with the supervisor and the worker's siblings.
inline constexpr uint64_t kListenerFd = 0x11f0'0000'0000'0000ULL;

// One allowlisted syscall. When `arg_index` >= 0 the call is allowed only when that argument
// equals one of `arg_values` (e.g. socket() domain); everything else hits the default action.
// Several rules may name the same syscall; the call is allowed when any of them matches.
struct SyscallRule {
    std::string_view name;
    std::string_view why;
    int arg_index = -1;
    std::vector<uint64_t> arg_values{};
    std::string arg_desc{};  // human text for the docs, e.g. "domain AF_INET or AF_INET6"
    // Non-zero: compare (argument & arg_mask) with arg_values instead of the whole argument
    // (mmap prot without PROT_EXEC: mask PROT_EXEC, value 0).
    uint64_t arg_mask = 0;
    // Optional second argument that must also equal one of arg2_values (getsockopt level+name).
    int arg2_index = -1;
    std::vector<uint64_t> arg2_values{};
    std::string_view scope{};  // set by the profile table: "baseline", a kind name, "sanitizer"
    // Allowed when the argument differs from the (single) value instead of equalling one.
    bool arg_not_equal = false;
    // Non-zero: the call is not allowed but fails with this errno instead of killing (clone3
    // with ENOSYS, so that glibc falls back to clone, whose flags seccomp can check).
    int fail_errno = 0;
};

struct Profile {
    WorkerKind kind;
    std::vector<SyscallRule> rules;  // kind-specific plus the shared baseline
    std::vector<int> capabilities;   // capabilities the worker keeps (CAP_* numbers)
    std::string_view capabilities_why;
    int listener_fd = -1;  // replaces kListenerFd; -1 leaves the placeholder (no real fd)
};

// Built from the kind's row (common/worker_kind.hpp) and its family's syscalls.
const Profile& profile_for(WorkerKind kind);

// Capability sets as /proc/PID/status shows them (bit N = capability N).
uint64_t capability_mask(std::span<const int> caps);
uint64_t read_capabilities(std::string_view key);  // "CapEff", "CapPrm", ...; throws
std::string capability_names(uint64_t mask);       // "CAP_NET_ADMIN, CAP_NET_RAW" or "none"

// Markdown table of a profile (syscall, argument restriction, why) for docs/security.md,
// followed by one line naming the capabilities kept.
std::string describe(const Profile& profile);
// The same table for a bare list of rules (sanitizer_runtime_rules() in the docs).
std::string describe_rules(std::span<const SyscallRule> rules);

// Syscalls the ASan/UBSan runtime makes on its own. Part of every profile only in builds with
// PFPROXY_SANITIZE=1; listed here in all builds so docs and tests can show them.
const std::vector<SyscallRule>& sanitizer_runtime_rules();

// What a stream worker with `"relay": "threads"` adds to its kind's profile: thread creation with
// exactly glibc's pthread flags (clone's flags checked), clone3 failing with ENOSYS, and the
// calls a new thread makes (set_robust_list, rseq). Scope "thread-relay".
const std::vector<SyscallRule>& thread_relay_rules();
// `profile` plus thread_relay_rules(): the explicit variant a thread-relay worker installs.
Profile with_thread_relay(const Profile& profile);
// The clone flags glibc's pthread_create passes (nptl's create_thread), the only ones allowed.
uint64_t thread_clone_flags();
// Before lock-down, in a worker that will start threads after it: starts and joins one thread
// that does nothing. glibc installs its internal signal handlers (rt_sigaction for SIGCANCEL and
// SIGSETXID) on a process's first pthread_create only, so after this the filter need not allow
// rt_sigaction. No thread is left running: none keeps the privileges the lock-down drops. Throws.
void start_thread_runtime();

// log: sanitizer/debug runs only, never production. trap: tests only; a forbidden call raises
// SIGSYS with si_syscall set (a handler can name the call) instead of ending the process.
enum class FilterMode { kill, log, trap };

// Installs the profile's seccomp filter: default action KILL_PROCESS (or LOG, TRAP), architecture
// checked, the rules above. Throws std::runtime_error with context on failure.
void install_seccomp(const Profile& profile, FilterMode mode = FilterMode::kill);

// Drops every capability except the profile's (bounding, ambient, inheritable included), then
// reads /proc/self/status back and throws if CapEff/CapPrm/CapAmb hold anything else.
void drop_capabilities(const Profile& profile);

struct LockDownReport {
    std::string landlock;             // what Landlock applied
    std::optional<ViewOutcome> view;  // the filesystem view, when the worker gets one
};

// The fixed order: drop capabilities (verified) -> PR_SET_NO_NEW_PRIVS -> the filesystem view
// (filesystem_view.hpp; a worker whose upstream is a Unix socket) -> PR_SET_DUMPABLE 0 ->
// Landlock (landlock.hpp; as far as the kernel's ABI goes) -> seccomp. Everything the worker's
// loop needs (epoll, timers, pipes) must exist before this. `landlock` and `view`: from the
// worker's handover (the default allows a TCP connect to any port and gives no view). A view
// with a profile that keeps capabilities is an error: the user namespace would void them.
LockDownReport lock_down(const Profile& profile, FilterMode mode = FilterMode::kill,
                         const LandlockRules& landlock = {},
                         const std::optional<FilesystemView>& view = std::nullopt);
inline void lock_down(WorkerKind kind, FilterMode mode = FilterMode::kill) {
    lock_down(profile_for(kind), mode);
}

// The kind's profile narrowed to one worker: socket() only for `upstream_domains` (of those the
// kind allows). A worker whose upstream is vsock:... gets no AF_UNIX, so it cannot reach the
// control socket or any other Unix socket; one whose upstream is unix: or fc-vsock: gets no
// AF_VSOCK; a TCP upstream gets only its own address family.
Profile narrowed(const Profile& profile, const std::vector<int>& upstream_domains);

}  // namespace pfp::sandbox
