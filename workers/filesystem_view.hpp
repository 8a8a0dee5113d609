#pragma once
// The filesystem a worker that may create Unix sockets sees: its upstream's directory and nothing
// else. Neither seccomp (a connect()'s path is behind a pointer) nor Landlock (no right covers
// connect() to a pathname socket) can bound which Unix socket such a worker reaches, so the
// others are taken out of its sight instead, as bubblewrap does, without privileges: a user
// namespace of its own (its uid and gid mapped to themselves), a private mount namespace, an
// empty read-only tmpfs holding a bind mount of the upstream's directory at its real path, and a
// chroot into it. The worker then drops every capability the user namespace gave it; its seccomp
// filter allows neither unshare, mount nor chroot, so the view cannot be left.
#include <optional>
#include <string>

#include "common/endpoint.hpp"
#include "common/handover.hpp"

namespace pfp::sandbox {

// The endpoint the worker connects to on its own (a fixed stream upstream, a datagram upstream,
// the packet readers' stream, a tunnel's upstream); nullopt when it has none.
std::optional<Endpoint> own_upstream(const Handover& h);

struct FilesystemView {
    // Absolute directory bound into the view; empty for an abstract upstream (nothing to see).
    std::string directory;
};

// The view a worker gets: only one whose upstream is a Unix socket (unix:, fc-vsock:) needs one,
// the others cannot create AF_UNIX sockets at all. Throws for a relative path (the policy makes
// them absolute).
std::optional<FilesystemView> filesystem_view(const Handover& h);

struct ViewOutcome {
    bool entered = false;
    std::string text;  // what was applied, or why not, for the worker's log line
};

// Enters `view` (see above) and drops the capabilities the new user namespace gave. The caller
// holds no capability it needs to keep (they would not count in the host's namespaces any more)
// and has not yet made itself non-dumpable (writing its own uid_map needs that). When the kernel
// refuses an unprivileged user namespace the worker runs without the view (as on a kernel
// without Landlock) and the outcome says why; throws std::system_error when a later step fails.
ViewOutcome enter_filesystem_view(const FilesystemView& view);

}  // namespace pfp::sandbox
