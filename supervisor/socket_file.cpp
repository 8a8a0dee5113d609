#include "supervisor/socket_file.hpp"

#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include "supervisor/socket_factory.hpp"

namespace pfp::supervisor {
namespace {

struct Failure {
    std::string prefix;  // "control socket /run/pf-proxy/control.sock"
    [[noreturn]] void operator()(const std::string& what, int err = 0) const {
        std::string msg = prefix + ": " + what;
        if (err != 0) msg += std::string(": ") + std::strerror(err);
        throw std::runtime_error(msg);
    }
};

void check_parent(const std::string& path, const Failure& fail) {
    const std::string parent = path.substr(0, std::max<size_t>(path.rfind('/'), 1));
    struct stat st {};
    if (::stat(parent.c_str(), &st) < 0) {
        if (errno == ENOENT)
            fail("directory " + parent +
                 " does not exist (create it, or let systemd's RuntimeDirectory= do so)");
        fail("stat " + parent, errno);
    }
    if (!S_ISDIR(st.st_mode)) fail(parent + " is not a directory");
}

}  // namespace

unique_fd listen_socket_file(const std::string& path, const SocketFileAccess& access,
                             const Privileges* privs, const std::string& what, int backlog) {
    const Failure fail{what + " " + path};
    if (path.empty() || path.front() != '/') fail("expected an absolute path");
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        fail("path longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    check_parent(path, fail);
    SocketRequest req;
    req.endpoint = parse_endpoint("unix:" + path);
    req.backlog = backlog;
    req.file_access = [&](const std::string&) {
        if (::chmod(path.c_str(), access.mode) < 0) fail("chmod", errno);
        const uid_t uid = access.owner.value_or(::geteuid());
        const gid_t gid = access.group.value_or(::getegid());
        if (uid == ::geteuid() && gid == ::getegid()) return;
        int chown_err = 0;  // saved before the guard's capng_apply() can change errno
        if (privs) {
            auto raised = privs->raise(CAP_CHOWN);
            if (::chown(path.c_str(), uid, gid) < 0) chown_err = errno;
        } else if (::chown(path.c_str(), uid, gid) < 0) {
            chown_err = errno;
        }
        if (chown_err != 0)
            fail("chown to " + std::to_string(uid) + ":" + std::to_string(gid), chown_err);
    };
    try {
        return open_socket(req, privs);
    } catch (const socket_error& e) {
        if (e.step == SocketStep::stale_file) {
            if (e.detail == "not a socket") fail("exists and is not a socket");
            if (e.detail == "in use")
                fail("in use by another process (is another pf-proxyd running?)");
            if (e.detail == "remove") fail("remove the stale socket file", e.err);
            fail("stat", e.err);
        }
        if (e.step == SocketStep::file_access) throw std::runtime_error(e.detail);
        fail(e.call, e.err);
    }
}

}  // namespace pfp::supervisor
