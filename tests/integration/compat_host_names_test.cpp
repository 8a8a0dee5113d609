// vsock-to-ip's -i with a host name: pf-proxyd resolves it (the system's resolver: /etc/hosts
// here, replaced in a mount namespace of the command's own) and the worker gets the address; a
// name that does not resolve ends the command at start, in the tool's error style. No vsock
// connection is made (a test never connects AF_VSOCK): the vsock listener is only bound.
#include <gtest/gtest.h>
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "harness.hpp"
#include "tests/support/require.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

uint32_t free_vsock_port() {
    unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = VMADDR_CID_ANY;
    a.svm_port = VMADDR_PORT_ANY;
    if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        throw std::runtime_error(std::string("vsock bind: ") + std::strerror(errno));
    socklen_t len = sizeof a;
    ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
    return a.svm_port;
}

TEST(CompatHostNames, VsockToIpResolvesItsUpstreamName) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root (a mount namespace with its own /etc/hosts)");
    TempDir dir;
    const std::string hosts = dir.write("hosts", "127.0.0.1 localhost\n127.0.0.1 upstream.test\n");
    // DNS questions (for a name not in hosts) go to loopback port 53, where nothing answers.
    const std::string resolv = dir.write("resolv.conf", "nameserver 127.0.0.1\n");
    const std::string mounts = "mount --bind " + hosts + " /etc/hosts && mount --bind " + resolv +
                               " /etc/resolv.conf && exec ";
    const std::string listen =
        std::to_string(VMADDR_CID_ANY) + ":" + std::to_string(free_vsock_port());
    const std::string tool = bin_dir() + "/vsock-to-ip";
    RunningCommand t({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                      mounts + tool + " -v " + listen + " -i upstream.test:8080"});
    ASSERT_TRUE(t.wait_err("vsock-to-ip worker ready")) << t.err();
    EXPECT_NE(t.err().find("\"upstream.test\" resolves to 127.0.0.1:8080"), std::string::npos)
        << t.err();
    EXPECT_NE(t.out().find("Proxying to: \"upstream.test:8080\"\n"), std::string::npos) << t.out();
    // Run as root without --user: the warning names the option this command has.
    EXPECT_NE(t.err().find("running as root: pass --user NAME to drop to a system user"),
              std::string::npos)
        << t.err();
    EXPECT_EQ(t.terminate(), 0) << t.err();

    // A name that does not resolve: the tool's error, exit 1, before anything listens.
    const CommandResult bad =
        run_command({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                     mounts + tool + " -v " + listen + " -i no-such-host.test:8080"});
    EXPECT_EQ(WEXITSTATUS(bad.status), 1) << bad.output;
    EXPECT_NE(bad.output.find("Error: failed to connect to TCP endpoint\n\nCaused by:\n    cannot "
                              "resolve \"no-such-host.test\": "),
              std::string::npos)
        << bad.output;
    EXPECT_EQ(bad.output.find("worker"), std::string::npos) << bad.output;
}

}  // namespace
