// Which workers get a filesystem view, from their handover; and the view entered for real in a
// forked child running as nobody, which then finds only its upstream's directory.
#include "workers/filesystem_view.hpp"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/unique_fd.hpp"
#include "workers/landlock.hpp"

namespace pfp::sandbox {
namespace {

Handover stream(UpstreamMode mode, std::string upstream) {
    Handover h;
    StreamOptions o;
    o.upstream_mode = mode;
    o.upstream = std::move(upstream);
    h.options = o;
    return h;
}

Handover packet(std::string upstream) {
    Handover h;
    PacketOptions o;
    o.upstream = std::move(upstream);
    h.options = o;
    return h;
}

TEST(FilesystemView, OnlyAUnixUpstreamGetsOne) {
    auto dir = [](const Handover& h) -> std::string {
        const auto v = filesystem_view(h);
        return v ? "[" + v->directory + "]" : "none";
    };
    EXPECT_EQ(dir(stream(UpstreamMode::fixed, "unix:/run/fc/vm1/api.sock")), "[/run/fc/vm1]");
    EXPECT_EQ(dir(stream(UpstreamMode::fixed, "fc-vsock:/srv/vm/v.sock:5000")), "[/srv/vm]");
    EXPECT_EQ(dir(stream(UpstreamMode::fixed, "unix:@pf-up")), "[]");  // empty: nothing to bind
    EXPECT_EQ(dir(stream(UpstreamMode::fixed, "unix:/up.sock")), "[/]");
    EXPECT_EQ(dir(packet("unix:/run/q/stream.sock")), "[/run/q]");
    // No AF_UNIX socket() for these workers at all: nothing to hide.
    EXPECT_EQ(dir(stream(UpstreamMode::fixed, "vsock:3:5000")), "none");
    EXPECT_EQ(dir(stream(UpstreamMode::fixed, "tcp:127.0.0.1:80")), "none");
    EXPECT_EQ(dir(stream(UpstreamMode::destination_header, "")), "none");
    EXPECT_EQ(dir(packet("raw:route")), "none");
}

TEST(LandlockRules, AnAbstractUpstreamLeavesAbstractSocketsUnscoped) {
    EXPECT_FALSE(landlock_rules(stream(UpstreamMode::fixed, "unix:@pf-up")).scope_abstract_unix);
    EXPECT_TRUE(
        landlock_rules(stream(UpstreamMode::fixed, "unix:/run/up.sock")).scope_abstract_unix);
    EXPECT_TRUE(landlock_rules(stream(UpstreamMode::fixed, "vsock:3:5000")).scope_abstract_unix);
    EXPECT_TRUE(landlock_rules(packet("unix:/run/q.sock")).scope_abstract_unix);
}

struct Dir {
    std::string path;
    Dir() {
        char tmpl[] = "/tmp/pfp-view-XXXXXX";
        path = ::mkdtemp(tmpl);
        ::chmod(path.c_str(), 0755);
    }
    ~Dir() { std::filesystem::remove_all(path); }
};

unique_fd listening_unix(const std::string& path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&un), sizeof un) != 0 ||
        ::chmod(path.c_str(), 0777) != 0 || ::listen(fd.get(), 4) != 0)
        return {};
    return fd;
}

int connect_unix(const std::string& path) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
    return ::connect(s, reinterpret_cast<sockaddr*>(&un), sizeof un) == 0 ? 0 : errno;
}

// As a worker runs it: uid nobody, no capabilities, no-new-privs, then the view. The upstream's
// directory is there at its real path; another directory, /etc and /proc are not; the root is
// read-only; no capability is left from the user namespace.
TEST(FilesystemViewEnter, AChildAsNobodySeesOnlyItsUpstreamsDirectory) {
    ASSERT_EQ(::geteuid(), 0u) << "the test switches to nobody";
    Dir up, other;
    unique_fd up_listener = listening_unix(up.path + "/up.sock");
    unique_fd other_listener = listening_unix(other.path + "/other.sock");
    ASSERT_TRUE(up_listener && other_listener);
    const pid_t child = ::fork();
    if (child == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0)
            ::_exit(10);
        // The uid change made it non-dumpable; a worker, exec'd as nobody, is dumpable.
        if (::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 ||
            ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            ::_exit(11);
        // Before: both sockets are in reach (the control of this test).
        if (connect_unix(other.path + "/other.sock") != 0) ::_exit(12);
        try {
            if (!enter_filesystem_view(FilesystemView{up.path}).entered) ::_exit(13);
        } catch (...) {
            ::_exit(14);
        }
        if (connect_unix(up.path + "/up.sock") != 0) ::_exit(15);
        if (connect_unix(other.path + "/other.sock") != ENOENT) ::_exit(16);
        struct stat st;
        if (::stat("/etc/hostname", &st) == 0 || ::stat("/proc/self/status", &st) == 0) ::_exit(17);
        if (::mkdir("/new", 0755) == 0 || errno != EROFS) ::_exit(18);
        __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
        if (::syscall(SYS_capget, &header, data) != 0) ::_exit(19);
        for (const auto& d : data)
            if (d.effective || d.permitted || d.inheritable) ::_exit(20);
        if (::getuid() != 65534) ::_exit(21);  // mapped to itself
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "10: setuid, 11: dumpable or NNP, 12: control connect failed, 13: no user namespace, "
           "14: view "
           "threw, 15: upstream out of reach, 16: other socket in reach, 17: files in sight, "
           "18: root writable, 19/20: capabilities left, 21: uid not mapped to itself";
    // The far end: the other listener saw the control's connection only.
    EXPECT_TRUE(unique_fd(::accept4(other_listener.get(), nullptr, nullptr, SOCK_CLOEXEC)));
    EXPECT_FALSE(unique_fd(::accept4(other_listener.get(), nullptr, nullptr, SOCK_CLOEXEC)));
    EXPECT_TRUE(unique_fd(::accept4(up_listener.get(), nullptr, nullptr, SOCK_CLOEXEC)));
}

}  // namespace
}  // namespace pfp::sandbox
