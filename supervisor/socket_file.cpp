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

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.data(), path.size());
    return un;
}

socklen_t address_length(const std::string& path) {
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
}

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

// The same rule as the proxies' socket files (listeners.cpp): a file nothing listens on is
// what an earlier run left behind.
void clear_stale(const std::string& path, const Failure& fail) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) < 0) {
        if (errno == ENOENT) return;
        fail("stat", errno);
    }
    if (!S_ISSOCK(st.st_mode)) fail("exists and is not a socket");
    unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un a = unix_address(path);
    if (probe &&
        ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&a), address_length(path)) == 0)
        fail("in use by another process (is another pf-proxyd running?)");
    if (::unlink(path.c_str()) < 0) fail("remove the stale socket file", errno);
}

}  // namespace

unique_fd listen_socket_file(const std::string& path, const SocketFileAccess& access,
                             const Privileges* privs, const std::string& what, int backlog) {
    const Failure fail{what + " " + path};
    if (path.empty() || path.front() != '/') fail("expected an absolute path");
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        fail("path longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    check_parent(path, fail);
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) fail("socket", errno);
    clear_stale(path, fail);
    const sockaddr_un a = unix_address(path);
    // The file appears with no permissions at all; chmod below opens exactly what is asked.
    const mode_t old = ::umask(0777);
    const int r = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), address_length(path));
    const int err = errno;
    ::umask(old);
    if (r < 0) fail("bind", err);
    // From here on a failure must not leave a socket file nobody listens on.
    struct Unlink {
        const std::string& path;
        bool armed = true;
        ~Unlink() {
            if (armed) ::unlink(path.c_str());
        }
    } unlink_on_failure{path};
    if (::chmod(path.c_str(), access.mode) < 0) fail("chmod", errno);
    const uid_t uid = access.owner.value_or(::geteuid());
    const gid_t gid = access.group.value_or(::getegid());
    if (uid != ::geteuid() || gid != ::getegid()) {
        int chown_err = 0;  // saved before the guard's capng_apply() can change errno
        if (privs) {
            auto raised = privs->raise(CAP_CHOWN);
            if (::chown(path.c_str(), uid, gid) < 0) chown_err = errno;
        } else if (::chown(path.c_str(), uid, gid) < 0) {
            chown_err = errno;
        }
        if (chown_err != 0)
            fail("chown to " + std::to_string(uid) + ":" + std::to_string(gid), chown_err);
    }
    if (::listen(fd.get(), backlog) < 0) fail("listen", errno);
    unlink_on_failure.armed = false;
    return fd;
}

}  // namespace pfp::supervisor
