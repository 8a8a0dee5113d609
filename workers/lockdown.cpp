// The fixed lock-down sequence every worker runs once its event loop, timers and pipes exist.
#include <cap-ng.h>
#include <linux/capability.h>
#include <pthread.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cctype>
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

struct Placeholders {
    uint64_t self_pid;
    int listener_fd;
};

std::vector<uint64_t> resolve_values(const std::vector<uint64_t>& values, const Placeholders& p) {
    std::vector<uint64_t> out = values;
    for (auto& v : out) {
        if (v == kSelfPid) v = p.self_pid;
        if (v == kListenerFd && p.listener_fd >= 0) v = static_cast<uint64_t>(p.listener_fd);
    }
    return out;
}

void add_rule(scmp_filter_ctx ctx, const SyscallRule& rule, const Placeholders& self_pid) {
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
        (has2 && (!has1 || rule.arg2_index > 5 || rule.arg2_values.empty())) ||
        (rule.arg_not_equal && (!has1 || has2 || rule.arg_values.size() != 1 || rule.arg_mask))) {
        throw std::runtime_error("seccomp: rule for " + name + " has a malformed argument check");
    }
    const uint32_t action =
        rule.fail_errno ? SCMP_ACT_ERRNO(static_cast<uint32_t>(rule.fail_errno)) : SCMP_ACT_ALLOW;
    if (!has1) {
        check(seccomp_rule_add_exact(ctx, action, nr, 0), "seccomp_rule_add_exact", name);
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
        const auto index = static_cast<unsigned>(rule.arg_index);
        const scmp_arg_cmp c1 = rule.arg_mask
                                    ? SCMP_CMP(index, SCMP_CMP_MASKED_EQ, rule.arg_mask, v1)
                                : rule.arg_not_equal ? SCMP_CMP(index, SCMP_CMP_NE, v1, 0)
                                                     : SCMP_CMP(index, SCMP_CMP_EQ, v1, 0);
        for (uint64_t v2 : values2) {
            int rc;
            if (has2) {
                const scmp_arg_cmp c2 =
                    SCMP_CMP(static_cast<unsigned>(rule.arg2_index), SCMP_CMP_EQ, v2, 0);
                rc = seccomp_rule_add_exact(ctx, action, nr, 2, c1, c2);
            } else {
                rc = seccomp_rule_add_exact(ctx, action, nr, 1, c1);
            }
            check(rc, "seccomp_rule_add_exact", name);
        }
    }
}

std::string hex16(uint64_t v) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

// After the drop: the effective and permitted sets are exactly the profile's (a capability the
// kind needs that did not survive is as wrong as one too many), inheritable and ambient empty,
// and the bounding set empty when it could be cleared.
void verify_caps(uint64_t kept, bool bounding_dropped) {
    for (const char* key : {"CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"}) {
        const std::string_view k(key);
        if (k == "CapBnd" && !bounding_dropped) continue;
        const uint64_t expected = k == "CapEff" || k == "CapPrm" ? kept : 0;
        const uint64_t value = read_capabilities(k);
        if (value != expected) {
            throw std::runtime_error("drop_capabilities: " + std::string(k) + " is " +
                                     hex16(value) + " after the drop (expected " + hex16(expected) +
                                     ")");
        }
    }
}

}  // namespace

void install_seccomp(const Profile& profile, FilterMode mode) {
    const uint32_t default_action = mode == FilterMode::log    ? SCMP_ACT_LOG
                                    : mode == FilterMode::trap ? SCMP_ACT_TRAP
                                                               : SCMP_ACT_KILL_PROCESS;
    const char* action_name = mode == FilterMode::log    ? "SCMP_ACT_LOG"
                              : mode == FilterMode::trap ? "SCMP_ACT_TRAP"
                                                         : "SCMP_ACT_KILL_PROCESS";
    // seccomp_init adds only the native architecture; calls from any other ABI hit BADARCH.
    SeccompCtx ctx(seccomp_init(default_action));
    if (!ctx) {
        // libseccomp only offers KILL_PROCESS/LOG when it can probe them with seccomp(2); an
        // outer filter returning EPERM for seccomp(2) (systemd SystemCallFilter=) hides them.
        throw std::runtime_error(std::string("seccomp: seccomp_init(") + action_name +
                                 ") failed: action unsupported at libseccomp API level " +
                                 std::to_string(seccomp_api_get()) +
                                 " (is seccomp(2) blocked by an outer filter?)");
    }
    check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
          "seccomp_attr_set", "SCMP_FLTATR_ACT_BADARCH");
    const Placeholders placeholders{static_cast<uint64_t>(::getpid()), profile.listener_fd};
    for (const auto& rule : profile.rules) add_rule(ctx.get(), rule, placeholders);
    check(seccomp_load(ctx.get()), "seccomp_load", kind_name(profile.kind));
}

uint64_t capability_mask(std::span<const int> caps) {
    uint64_t mask = 0;
    for (int cap : caps) mask |= uint64_t{1} << cap;
    return mask;
}

uint64_t read_capabilities(std::string_view key) {
    std::ifstream status("/proc/self/status");
    if (!status) throw_errno("open /proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 &&
            line[key.size()] == ':')
            return std::stoull(line.substr(key.size() + 1), nullptr, 16);
    }
    throw std::runtime_error("/proc/self/status has no " + std::string(key) + " line");
}

std::string capability_names(uint64_t mask) {
    std::string out;
    for (unsigned cap = 0; cap < 64; ++cap) {
        if (!(mask & (uint64_t{1} << cap))) continue;
        const char* name = capng_capability_to_name(cap);
        std::string upper = name ? name : "#" + std::to_string(cap);
        for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        out += (out.empty() ? "CAP_" : ", CAP_") + upper;
    }
    return out.empty() ? "none" : out;
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
    verify_caps(capability_mask(profile.capabilities), can_drop_bounding);
}

Profile narrowed(const Profile& profile, const std::vector<int>& upstream_domains) {
    Profile out = profile;
    const std::string_view kind = kind_name(profile.kind);
    for (auto& rule : out.rules) {
        if (rule.name != "socket" || rule.scope != kind) continue;
        std::vector<uint64_t> kept;
        for (uint64_t d : rule.arg_values)
            for (int want : upstream_domains)
                if (d == static_cast<uint64_t>(want)) kept.push_back(d);
        rule.arg_values = std::move(kept);
    }
    // A rule left with no value would allow nothing but is malformed for libseccomp: drop it.
    std::erase_if(out.rules,
                  [&](const SyscallRule& r) { return r.arg_index >= 0 && r.arg_values.empty(); });
    return out;
}

void start_thread_runtime() {
    pthread_t t;
    auto nothing = [](void*) -> void* { return nullptr; };
    if (int err = ::pthread_create(&t, nullptr, nothing, nullptr); err != 0)
        throw system_error("pthread_create (thread runtime warm-up)", err);
    ::pthread_join(t, nullptr);
}

LockDownReport lock_down(const Profile& profile, FilterMode mode, const LandlockRules& landlock,
                         const std::optional<FilesystemView>& view) {
    if (view && !profile.capabilities.empty())
        throw std::runtime_error("a filesystem view would void the capabilities " +
                                 capability_names(capability_mask(profile.capabilities)) +
                                 " (they count only in the worker's own user namespace)");
    LockDownReport report;
    // Caps first: afterwards the filter need not allow capset/prctl, and NNP cannot be undone.
    drop_capabilities(profile);
    // Required for an unprivileged seccomp filter; no execve could gain privileges anyway.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("prctl(PR_SET_NO_NEW_PRIVS)");
    // While still dumpable: a non-dumpable process's /proc/self/uid_map belongs to root.
    if (view) report.view = enter_filesystem_view(*view);
    // No core dumps of relayed data, no ptrace attach by same-uid processes.
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) throw_errno("prctl(PR_SET_DUMPABLE, 0)");
    // Before seccomp, whose filter does not allow the Landlock calls.
    report.landlock = apply_landlock(landlock, landlock_abi());
    install_seccomp(profile, mode);
    return report;
}

}  // namespace pfp::sandbox
