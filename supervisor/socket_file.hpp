#pragma once
// Unix socket files pf-proxyd creates for itself (the control socket, a unix: metrics endpoint):
// bound with no permissions, then given exactly the mode and owner asked for.
#include <sys/types.h>

#include <optional>
#include <string>

#include "common/unique_fd.hpp"
#include "supervisor/privileges.hpp"

namespace pfp::supervisor {

struct SocketFileAccess {
    mode_t mode = 0660;
    std::optional<uid_t> owner;  // default: the effective uid
    std::optional<gid_t> group;  // default: the effective gid
};

// Gives the socket file at `path` mode `mode` and owner `uid`:`gid` without ever following a
// symlink: the path is opened O_PATH|O_NOFOLLOW, must then be a socket, and owned by us
// (`ours_only`, right after our bind) or by us or the target owner (a file kept from an earlier
// run); chmod and chown then act on that handle, never on the path again. CAP_CHOWN is raised
// (when `privs` has it) only around fchownat. Throws std::runtime_error: "chown PATH: ...".
void secure_socket_file(const std::string& path, mode_t mode, uid_t uid, gid_t gid,
                        const Privileges* privs, bool ours_only);

// "" when a socket file may be made in the directory of `path`; else why not: a directory others
// can write to without the sticky bit lets anyone swap the file between bind and chown (as
// sshd's StrictModes refuses such directories).
std::string unsafe_socket_directory(const std::string& path);

// A non-blocking, close-on-exec AF_UNIX stream listener bound at the absolute `path`. A socket
// file left by an earlier run is replaced; one something still listens on, or any other kind of
// file, is an error. `privs` (may be null) raises CAP_CHOWN around chown when the owner or group
// is not the caller's. Throws std::runtime_error starting with `what` and the path, e.g.
// "control socket /run/pf-proxy/control.sock: directory /run/pf-proxy does not exist ...".
unique_fd listen_socket_file(const std::string& path, const SocketFileAccess& access,
                             const Privileges* privs, const std::string& what, int backlog);

}  // namespace pfp::supervisor
