#include "supervisor/privileges.hpp"

#include <cap-ng.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

#include "common/error.hpp"

namespace pfp::supervisor {

namespace {

void apply_or_throw(capng_select_t what, const std::string& context) {
    if (capng_apply(what) != 0) throw std::runtime_error("cannot apply capabilities: " + context);
}

}  // namespace

std::string cap_name(int cap) {
    const char* n = capng_capability_to_name(static_cast<unsigned>(cap));
    std::string s = n ? n : std::to_string(cap);
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return "CAP_" + s;
}

Identity resolve_identity(const std::string& user, const std::optional<std::string>& group) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* res = nullptr;
    if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr)
        throw std::runtime_error("user \"" + user + "\" does not exist");
    Identity id{pw.pw_uid, pw.pw_gid, user};
    if (group) id.gid = resolve_group(*group);
    return id;
}

gid_t resolve_group(const std::string& group) {
    std::vector<char> buf(16384);
    ::group gr{};
    ::group* gres = nullptr;
    if (getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &gres) != 0 || gres == nullptr)
        throw std::runtime_error("group \"" + group + "\" does not exist");
    return gr.gr_gid;
}

Privileges::Privileges(std::set<int> needed, std::optional<Identity> identity)
    : needed_(std::move(needed)), identity_(std::move(identity)) {
    if (identity_ && identity_->uid == ::geteuid() && identity_->gid == ::getegid())
        identity_.reset();  // already that user: nothing to switch
    capng_get_caps_process();
    std::set<int> permitted = needed_;
    if (identity_) {
        permitted.insert(CAP_SETUID);
        permitted.insert(CAP_SETGID);
    }
    const bool can_bound = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) != 0;
    std::set<int> available;
    for (int c : permitted)
        if (capng_have_capability(CAPNG_PERMITTED, static_cast<unsigned>(c))) available.insert(c);
    if (identity_ && (!available.contains(CAP_SETUID) || !available.contains(CAP_SETGID)))
        throw std::runtime_error("switching to user \"" + identity_->user +
                                 "\" needs CAP_SETUID and CAP_SETGID (run pf-proxyd as root or "
                                 "as that user)");
    capng_clear(can_bound ? CAPNG_SELECT_ALL : CAPNG_SELECT_CAPS);
    for (int c : available) {
        capng_update(CAPNG_ADD, CAPNG_PERMITTED, static_cast<unsigned>(c));
        if (can_bound) capng_update(CAPNG_ADD, CAPNG_BOUNDING_SET, static_cast<unsigned>(c));
    }
    apply_or_throw(can_bound ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS,
                   "reduce to what the policy needs");
    // Ambient capabilities would pass into every child across execve.
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        throw_errno("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
}

bool Privileges::have(int cap) const {
    capng_get_caps_process();
    return capng_have_capability(CAPNG_PERMITTED, static_cast<unsigned>(cap)) != 0;
}

Privileges::Raised Privileges::raise(int cap) const {
    if (cap < 0 || !have(cap)) return Raised(-1);
    return Raised(cap);
}

Privileges::Raised::Raised(int cap) : cap_(cap) {
    if (cap_ < 0) return;
    capng_get_caps_process();
    capng_update(CAPNG_ADD, CAPNG_EFFECTIVE, static_cast<unsigned>(cap_));
    apply_or_throw(CAPNG_SELECT_CAPS, "raise " + cap_name(cap_));
}

Privileges::Raised::~Raised() {
    if (cap_ < 0) return;
    capng_get_caps_process();
    capng_update(CAPNG_DROP, CAPNG_EFFECTIVE, static_cast<unsigned>(cap_));
    if (capng_apply(CAPNG_SELECT_CAPS) != 0) std::terminate();  // never run with it raised
}

void Privileges::settle(const std::set<int>& keep) {
    if (identity_) {
        // Keep the permitted set across the uid change, then trim it below.
        if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) throw_errno("prctl(PR_SET_KEEPCAPS)");
        {
            capng_get_caps_process();
            capng_update(CAPNG_ADD, CAPNG_EFFECTIVE, CAP_SETUID);
            capng_update(CAPNG_ADD, CAPNG_EFFECTIVE, CAP_SETGID);
            apply_or_throw(CAPNG_SELECT_CAPS, "raise CAP_SETUID/CAP_SETGID");
        }
        gid_t gid = identity_->gid;
        if (::setgroups(1, &gid) < 0) throw_errno("setgroups");
        if (::setresgid(gid, gid, gid) < 0) throw_errno("setresgid");
        if (::setresuid(identity_->uid, identity_->uid, identity_->uid) < 0)
            throw_errno("setresuid(" + std::to_string(identity_->uid) + ")");
        if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) throw_errno("prctl(PR_SET_KEEPCAPS, 0)");
    }
    capng_get_caps_process();
    std::set<int> held;
    for (int c : keep)
        if (capng_have_capability(CAPNG_PERMITTED, static_cast<unsigned>(c))) held.insert(c);
    capng_clear(CAPNG_SELECT_CAPS);
    for (int c : held) capng_update(CAPNG_ADD, CAPNG_PERMITTED, static_cast<unsigned>(c));
    apply_or_throw(CAPNG_SELECT_CAPS, "drop capabilities the running policy does not need");
    // Workers run under the same uid: they must not be able to ptrace or read our memory.
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) throw_errno("prctl(PR_SET_DUMPABLE)");
    needed_ = keep;
}

}  // namespace pfp::supervisor
