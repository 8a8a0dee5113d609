#include "supervisor/socket_file.hpp"

#include <fcntl.h>
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

// fchownat on an O_PATH handle with CAP_CHOWN raised around it; the errno, or 0.
int chown_handle(int handle, uid_t uid, gid_t gid, const Privileges* privs) {
    int err = 0;
    if (privs) {
        auto raised = privs->raise(CAP_CHOWN);
        if (::fchownat(handle, "", uid, gid, AT_EMPTY_PATH) != 0) err = errno;
    } else if (::fchownat(handle, "", uid, gid, AT_EMPTY_PATH) != 0) {
        err = errno;
    }
    return err;
}

}  // namespace

std::string unsafe_socket_directory(const std::string& path) {
    const std::string parent = path.substr(0, std::max<size_t>(path.rfind('/'), 1));
    struct stat st {};
    if (::stat(parent.c_str(), &st) != 0) return "";  // bind reports a missing directory
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
        return "directory " + parent +
               " is writable by others without the sticky bit (anyone could swap the socket "
               "file): use a directory only pf-proxyd's user can write to, or set the sticky bit";
    return "";
}

void secure_socket_file(const std::string& path, mode_t mode, uid_t uid, gid_t gid,
                        const Privileges* privs, bool ours_only) {
    const auto fail = [&](const std::string& what, int err) {
        throw std::runtime_error(what + " " + path +
                                 (err ? ": " + std::string(std::strerror(err)) : ""));
    };
    unique_fd handle(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!handle) fail("open", errno);
    struct stat st {};
    if (::fstat(handle.get(), &st) != 0) fail("stat", errno);
    if (!S_ISSOCK(st.st_mode))
        throw std::runtime_error("refusing to change " + path +
                                 ": it is not a socket any more (something took its place)");
    const bool owner_ok = st.st_uid == ::geteuid() || (!ours_only && st.st_uid == uid);
    if (!owner_ok)
        throw std::runtime_error("refusing to change " + path + ": it belongs to uid " +
                                 std::to_string(st.st_uid) + ", not to pf-proxyd");
    // chmod through the handle's /proc link: the inode opened above, whatever the path is now.
    const std::string via = "/proc/self/fd/" + std::to_string(handle.get());
    if ((st.st_mode & 07777) != mode) {
        if (st.st_uid != ::geteuid()) {  // chmod needs the owner: take it back first
            if (int err = chown_handle(handle.get(), ::geteuid(), static_cast<gid_t>(-1), privs))
                fail("chown", err);
        }
        if (::chmod(via.c_str(), mode) != 0) fail("chmod", errno);
    }
    if (st.st_uid != uid || st.st_gid != gid) {
        if (int err = chown_handle(handle.get(), uid, gid, privs)) fail("chown", err);
    }
}

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
    req.file_mode = access.mode;
    req.file_access = [&](const std::string&) {
        secure_socket_file(path, access.mode, access.owner.value_or(::geteuid()),
                           access.group.value_or(::getegid()), privs, true);
    };
    try {
        return open_socket(req, privs);
    } catch (const socket_error& e) {
        if (e.step == SocketStep::stale_file) {
            if (e.detail == "not a socket") fail("exists and is not a socket");
            if (e.detail == "in use")
                fail("in use by another process (is another pf-proxyd running?)");
            if (e.detail == "remove") fail("remove the stale socket file", e.err);
            if (e.detail == "directory") fail(e.call);
            fail("stat", e.err);
        }
        if (e.step == SocketStep::file_access) throw std::runtime_error(e.detail);
        fail(e.call, e.err);
    }
}

}  // namespace pfp::supervisor
