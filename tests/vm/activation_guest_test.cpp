// systemd-style socket activation of a vsock listener, in the QEMU guest (tests/vm): the test
// does what systemd does for a .socket unit with ListenStream=vsock::PORT and
// FileDescriptorName=NAME (docs/testing.md: systemd is not PID 1 here, and systemd-socket-activate
// would start the command only at the first connection): it binds and listens, puts the socket at
// fd 3, sets LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES and execs pf-proxyd, whose policy names the
// socket "systemd:NAME" with "listen_family": "vsock".
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "guest_support.hpp"

using namespace pfp::test;
using namespace pfp::test::vm;
using pfp::unique_fd;

namespace {

// Runs in the forked child just before exec: only the passed socket at fd 3 and the variables.
std::function<void()> pass_socket(int fd, const std::string& name) {
    return [fd, name] {
        if (fd == 3) {
            ::fcntl(3, F_SETFD, 0);
        } else if (::dup2(fd, 3) < 0) {
            ::_exit(126);
        }
        ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
        ::setenv("LISTEN_FDS", "1", 1);
        ::setenv("LISTEN_FDNAMES", name.c_str(), 1);
    };
}

TEST(SocketActivationGuest, PassedVsockListenerIsServed) {
    REQUIRE_VSOCK_LOOPBACK();
    const uint16_t server = free_port();
    EchoServer echo(server);
    unique_fd passed = listen_vsock(7000);  // bound VMADDR_CID_ANY:7000, as systemd would
    Daemon d(policy({proxy("activated", "systemd:guest-vsock", tcp(server),
                           "\"listen_family\": \"vsock\", \"workers\": 2")}),
             {}, 0, pass_socket(passed.get(), "guest-vsock"));
    passed.reset();  // from now on only pf-proxyd holds the listener: whatever answers is it
    ASSERT_TRUE(d.wait_ready()) << d.log();
    for (int i = 0; i < 5; ++i) {
        unique_fd s = connect_vsock(7000);
        ASSERT_TRUE(s) << std::strerror(errno) << d.log();
        EXPECT_TRUE(echoes(s.get(), "activated " + std::to_string(i))) << d.log();
    }
}

}  // namespace
