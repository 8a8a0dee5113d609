// The fixed lock-down sequence every worker runs once its event loop, timers and pipes exist.
#include <cap-ng.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

#include "common/error.hpp"
#include "workers/sandbox.hpp"

namespace pfp::sandbox {
namespace {

struct SeccompRelease {
    void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using SeccompCtx = std::unique_ptr<void, SeccompRelease>;

// libseccomp returns -errno; every failure names the call and the syscall it was about.
void check(int rc, std::string_view call, std::string_view syscall) {
    if (rc >= 0) return;
    throw std::runtime_error("seccomp: " + std::string(call) + "(" + std::string(syscall) +
                             ") failed: " + std::strerror(-rc));
}

std::vector<uint64_t> resolve_values(const std::vector<uint64_t>& values, uint64_t self_pid) {
    std::vector<uint64_t> out = values;
    for (auto& v : out) {
        if (v == kSelfPid) v = self_pid;
    }
    return out;
}

void add_rule(scmp_filter_ctx ctx, const SyscallRule& rule, uint64_t self_pid) {
    const std::string name(rule.name);
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
        throw std::runtime_error("seccomp: seccomp_syscall_resolve_name(" + name +
                                 ") failed: unknown syscall");
    }
    // Negative: libseccomp knows the name but the native arch has no such syscall (epoll_wait on
    // aarch64). Nothing can call it, so leaving it out narrows nothing we rely on.
    if (nr < 0) return;

    const bool has1 = rule.arg_index >= 0;
    const bool has2 = rule.arg2_index >= 0;
    if ((has1 && (rule.arg_index > 5 || rule.arg_values.empty())) ||
        (has2 && (!has1 || rule.arg2_index > 5 || rule.arg2_values.empty()))) {
        throw std::runtime_error("seccomp: rule for " + name + " has a malformed argument check");
    }
    if (!has1) {
        check(seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 0), "seccomp_rule_add_exact", name);
        return;
    }
    // One BPF rule per allowed combination; libseccomp ORs rules of the same syscall. _exact:
    // fail instead of letting libseccomp rewrite (and possibly widen) a rule it cannot express.
    // SCMP_CMP_EQ ignores datum_b; it is written out (0) because clang warns about the field
    // SCMP_CMP's compound literal leaves out.
    const auto values1 = resolve_values(rule.arg_values, self_pid);
    const auto values2 =
        has2 ? resolve_values(rule.arg2_values, self_pid) : std::vector<uint64_t>{0};
    for (uint64_t v1 : values1) {
        const scmp_arg_cmp c1 =
            rule.arg_mask ? SCMP_CMP(static_cast<unsigned>(rule.arg_index), SCMP_CMP_MASKED_EQ,
                                     rule.arg_mask, v1)
                          : SCMP_CMP(static_cast<unsigned>(rule.arg_index), SCMP_CMP_EQ, v1, 0);
        for (uint64_t v2 : values2) {
            int rc;
            if (has2) {
                const scmp_arg_cmp c2 =
                    SCMP_CMP(static_cast<unsigned>(rule.arg2_index), SCMP_CMP_EQ, v2, 0);
                rc = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 2, c1, c2);
            } else {
                rc = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 1, c1);
            }
            check(rc, "seccomp_rule_add_exact", name);
        }
    }
}

// Bit mask of the capabilities a profile keeps.
uint64_t kept_mask(const Profile& profile) {
    uint64_t mask = 0;
    for (int cap : profile.capabilities) mask |= uint64_t{1} << cap;
    return mask;
}

std::string hex16(uint64_t v) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

// Reads the Cap* lines of /proc/self/status and throws if one holds a bit outside `allowed`.
void verify_caps(uint64_t allowed, bool bounding_dropped) {
    std::ifstream status("/proc/self/status");
    if (!status) throw_errno("drop_capabilities: open /proc/self/status");
    int seen = 0;
    for (std::string line; std::getline(status, line);) {
        const auto colon = line.find(':');
        if (colon == std::string::npos || line.compare(0, 3, "Cap") != 0) continue;
        const std::string key = line.substr(0, colon);
        uint64_t limit;
        if (key == "CapEff" || key == "CapPrm") {
            limit = allowed;
        } else if (key == "CapInh" || key == "CapAmb") {
            limit = 0;  // only matter across execve, which no worker may call
        } else if (key == "CapBnd") {
            if (!bounding_dropped) continue;
            limit = 0;  // cleared completely: the bounding set never limits a running process
        } else {
            continue;
        }
        const uint64_t value = std::stoull(line.substr(colon + 1), nullptr, 16);
        if (value & ~limit) {
            throw std::runtime_error("drop_capabilities: " + key + " is " + hex16(value) +
                                     " after the drop (allowed " + hex16(limit) + ")");
        }
        ++seen;
    }
    const int expected = bounding_dropped ? 5 : 4;
    if (seen != expected) {
        throw std::runtime_error("drop_capabilities: /proc/self/status lacks Cap* lines");
    }
}

}  // namespace

void install_seccomp(const Profile& profile, FilterMode mode) {
    const uint32_t default_action = mode == FilterMode::log ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
    // seccomp_init adds only the native architecture; calls from any other ABI hit BADARCH.
    SeccompCtx ctx(seccomp_init(default_action));
    if (!ctx) {
        // libseccomp only offers KILL_PROCESS/LOG when it can probe them with seccomp(2); an
        // outer filter returning EPERM for seccomp(2) (systemd SystemCallFilter=) hides them.
        throw std::runtime_error(
            std::string("seccomp: seccomp_init(") +
            (mode == FilterMode::log ? "SCMP_ACT_LOG" : "SCMP_ACT_KILL_PROCESS") +
            ") failed: action unsupported at libseccomp API level " +
            std::to_string(seccomp_api_get()) + " (is seccomp(2) blocked by an outer filter?)");
    }
    check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
          "seccomp_attr_set", "SCMP_FLTATR_ACT_BADARCH");
    const auto self_pid = static_cast<uint64_t>(::getpid());
    for (const auto& rule : profile.rules) add_rule(ctx.get(), rule, self_pid);
    check(seccomp_load(ctx.get()), "seccomp_load", kind_name(profile.kind));
}

void drop_capabilities(const Profile& profile) {
    if (capng_get_caps_process() != 0) throw_errno("drop_capabilities: capng_get_caps_process");
    // The bounding set can only be lowered with CAP_SETPCAP (root has it; an unprivileged
    // worker's bounding set only limits execve, which seccomp forbids anyway).
    const bool can_drop_bounding = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) == 1;

    capng_clear(CAPNG_SELECT_ALL);  // effective, permitted, inheritable, bounding, ambient
    for (int cap : profile.capabilities) {
        const auto type = static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED);
        if (capng_update(CAPNG_ADD, type, static_cast<unsigned>(cap)) != 0) {
            throw std::runtime_error("drop_capabilities: capng_update(" + std::to_string(cap) +
                                     ") failed");
        }
    }
    // Bounding first (needs CAP_SETPCAP, still held), then capset, then ambient.
    const auto set = can_drop_bounding
                         ? CAPNG_SELECT_ALL
                         : static_cast<capng_select_t>(CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT);
    if (int rc = capng_apply(set); rc != 0) {
        throw system_error(
            "drop_capabilities: capng_apply(" +
                std::string(can_drop_bounding ? "CAPNG_SELECT_ALL" : "CAPNG_SELECT_CAPS|AMBIENT") +
                ") returned " + std::to_string(rc),
            errno);
    }
    verify_caps(kept_mask(profile), can_drop_bounding);
}

void lock_down(WorkerKind kind, FilterMode mode) {
    const Profile& profile = profile_for(kind);
    // Caps first: afterwards the filter need not allow capset/prctl, and NNP cannot be undone.
    drop_capabilities(profile);
    // Required for an unprivileged seccomp filter; no execve could gain privileges anyway.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("prctl(PR_SET_NO_NEW_PRIVS)");
    // No core dumps of relayed data, no ptrace attach by same-uid processes.
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) throw_errno("prctl(PR_SET_DUMPABLE, 0)");
    install_seccomp(profile, mode);
}

}  // namespace pfp::sandbox
