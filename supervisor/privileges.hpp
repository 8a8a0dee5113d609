#pragma once
// The supervisor's capabilities (libcap-ng): permitted holds only what the policy needs, the
// effective set is empty except around the one call that needs a capability.
#include <sys/types.h>

#include <optional>
#include <set>
#include <string>

namespace pfp::supervisor {

struct Identity {
    uid_t uid;
    gid_t gid;
    std::string user;
};

// Looks up the policy's user (and group, default: the user's primary group). Throws.
Identity resolve_identity(const std::string& user, const std::optional<std::string>& group);

gid_t resolve_group(const std::string& group);  // throws if it does not exist

std::string cap_name(int cap);

class Privileges {
  public:
    // Keeps in the permitted set only `needed` (what opening the policy's sockets needs) plus
    // CAP_SETUID/CAP_SETGID when `identity` asks for a switch; clears effective and ambient, and
    // the bounding set to the same when allowed. Throws.
    Privileges(std::set<int> needed, std::optional<Identity> identity);

    bool have(int cap) const;  // in the permitted set

    // Raises `cap` into the effective set for the lifetime of the guard (no-op without it).
    class Raised {
      public:
        Raised(const Raised&) = delete;
        Raised& operator=(const Raised&) = delete;
        ~Raised();

      private:
        friend class Privileges;
        explicit Raised(int cap);
        int cap_;  // -1: nothing was raised
    };
    Raised raise(int cap) const;

    // After the sockets are open: switch to the policy's identity (if any) and keep only `keep`
    // (permitted, not effective) for later hand-off. Throws.
    void settle(const std::set<int>& keep);

  private:
    std::set<int> needed_;
    std::optional<Identity> identity_;
};

}  // namespace pfp::supervisor
