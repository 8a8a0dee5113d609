// Socket files are never changed by path: a directory others may write to without the sticky bit
// is refused (anyone could swap the file between bind and chown), and in a sticky directory a
// racing user who keeps putting a symlink where the socket goes never gets any other file's owner
// or mode changed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "harness.hpp"
#include "tests/support/require.hpp"

using namespace pfp::test;

namespace {

std::string unix_policy(const std::string& socket_path, uint16_t up) {
    return R"({"user": "nobody", "proxies": [{"name": "u", "listen": "unix:)" + socket_path +
           R"(", "upstream": "tcp:127.0.0.1:)" + std::to_string(up) +
           R"(", "socket_mode": "0660"}]})";
}

TEST(SocketFile, DirectoryWritableByOthersWithoutStickyBitIsRefused) {
    TempDir dir;
    ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
    Daemon d(unix_policy(dir.path() + "/s.sock", free_port()));
    const int status = d.wait_exit(20s);
    ASSERT_TRUE(WIFEXITED(status)) << d.log();
    EXPECT_EQ(WEXITSTATUS(status), 1) << d.log();
    EXPECT_NE(d.log().find("cannot listen on unix:" + dir.path() + "/s.sock: directory " +
                           dir.path() + " is writable by others without the sticky bit"),
              std::string::npos)
        << d.log();
    struct stat st {};
    EXPECT_NE(::lstat((dir.path() + "/s.sock").c_str(), &st), 0) << "no socket file was made";
}

TEST(SocketFile, RacingSymlinksNeverRedirectOwnerOrModeChanges) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root, to race as another user");
    TempDir dir, outside;
    ASSERT_EQ(::chmod(dir.path().c_str(), 01777), 0);
    const std::string target = outside.write("secret", "root only");
    ASSERT_EQ(::chmod(target.c_str(), 0600), 0);
    const std::string sock = dir.path() + "/s.sock";
    // The racer: another user, putting a symlink to the secret where the socket goes, over and
    // over (at most 50 million times, minutes) while pf-proxyd starts 20 times; then it is killed.
    const pid_t racer = ::fork();
    ASSERT_GE(racer, 0);
    if (racer == 0) {
        if (::setresgid(12345, 12345, 12345) != 0 || ::setresuid(12345, 12345, 12345) != 0)
            _exit(2);
        for (int i = 0; i < 50'000'000; ++i) {
            ::symlink(target.c_str(), sock.c_str());
            ::unlink(sock.c_str());
        }
        _exit(0);
    }
    const uint16_t up = free_port();
    int started = 0, refused = 0;
    for (int i = 0; i < 20; ++i) {
        Daemon d(unix_policy(sock, up));
        if (d.wait_ready(20s))  // returns at once when a start is refused (the daemon exits)
            ++started;
        else
            ++refused;
    }
    int rs = 0;
    if (::waitpid(racer, &rs, WNOHANG) == 0) {
        ::kill(racer, SIGKILL);
        ::waitpid(racer, &rs, 0);
    }
    EXPECT_FALSE(WIFEXITED(rs) && WEXITSTATUS(rs) != 0) << "the racer could not run";
    EXPECT_TRUE(WIFSIGNALED(rs)) << "the racer ended before the 20 starts did: they did not race";
    struct stat st {};
    ASSERT_EQ(::stat(target.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    RecordProperty("started", started);
    RecordProperty("refused", refused);
}

}  // namespace
