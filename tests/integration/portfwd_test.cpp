// portfwd's tcpfwd and udpfwd, run for real through their links: forwarding (the seed's example
// command lines on loopback ports), options on either side of the addresses, the pid file
// (exclusive, locked, stale ones replaced, removed at every stop signal), -d, -h and the errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"
#include "tests/support/require.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using pfp::unique_fd;
namespace fs = std::filesystem;

namespace {

std::string tool(const std::string& name) {
    return bin_dir() + "/" + name;
}

std::string port_text(uint16_t p) {
    return std::to_string(p);
}

bool alive(pid_t pid) {
    return ::kill(pid, 0) == 0;
}

bool udp_echoed(uint16_t port, const std::string& payload,
                std::chrono::milliseconds timeout = 10s) {
    unique_fd c = bind_udp(AF_INET);
    if (!send_udp(c.get(), AF_INET, port, payload)) return false;
    const auto back = recv_udp(c.get(), timeout);
    return back && *back == payload;
}

bool tcp_echoed(uint16_t port, const std::string& payload) {
    unique_fd c = connect_tcp(port, 10s);
    if (!c || !write_all(c.get(), payload.data(), payload.size())) return false;
    ::shutdown(c.get(), SHUT_WR);
    std::string back;
    return read_to_eof(c.get(), back) && back == payload;
}

TEST(Portfwd, UdpfwdForwardsWithOptionsAfterTheAddresses) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    RunningCommand u({tool("udpfwd"), "127.0.0.1:" + port_text(in), "localhost:" + port_text(up),
                      "-t", "5", "-H", "4093", "-r"});
    ASSERT_TRUE(u.wait_err("udp-forward worker ready")) << u.err();
    EXPECT_TRUE(udp_echoed(in, "hello through udpfwd"));
    EXPECT_TRUE(udp_echoed(in, ""));
    EXPECT_EQ(server.received(), 2u);
    EXPECT_EQ(u.terminate(), 0) << u.err();
}

TEST(Portfwd, TcpfwdForwardsFromABarePort) {
    const uint16_t up = free_port(), in = free_port();
    EchoServer server(up);
    RunningCommand t({tool("tcpfwd"), "-r", port_text(in), "127.0.0.1:" + port_text(up)});
    ASSERT_TRUE(t.wait_err("tcp-forward worker ready")) << t.err();
    EXPECT_TRUE(tcp_echoed(in, std::string(100000, 'z')));
    // As root the warning names a way out that tcpfwd has: it has no --user, so no option is
    // suggested.
    if (::geteuid() == 0) {
        EXPECT_NE(t.err().find("running as root: start tcpfwd as an unprivileged user, or run "
                               "pf-proxyd with a policy file that sets \"user\""),
                  std::string::npos)
            << t.err();
        EXPECT_EQ(t.err().find("set \"user\" in"), std::string::npos) << t.err();
    }
    EXPECT_EQ(t.terminate(), 0) << t.err();
}

TEST(Portfwd, PidFileIsExclusiveAndRemovedAtEveryStopSignal) {
    TempDir dir;
    const std::string pid_file = dir.path() + "/u.pid";
    for (const int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) {
        SCOPED_TRACE(sigabbrev_np(sig));
        const uint16_t up = free_udp_port(), in = free_udp_port();
        RunningCommand u({tool("udpfwd"), "-p", pid_file, "127.0.0.1:" + port_text(in),
                          "127.0.0.1:" + port_text(up)});
        ASSERT_TRUE(u.wait_err("udp-forward worker ready")) << u.err();
        EXPECT_EQ(read_text(pid_file), std::to_string(u.pid()) + "\n");
        // A second instance with the same file is refused, in one line, and leaves it alone.
        const CommandResult second = run_command({tool("udpfwd"), "127.0.0.1:" + port_text(in + 1),
                                                  "127.0.0.1:" + port_text(up), "-p", pid_file});
        EXPECT_EQ(WEXITSTATUS(second.status), 1);
        EXPECT_EQ(second.output, "udpfwd: pid file " + pid_file + " is in use by pid " +
                                     std::to_string(u.pid()) + " (another instance is running)\n");
        EXPECT_EQ(read_text(pid_file), std::to_string(u.pid()) + "\n");
        ASSERT_EQ(::kill(u.pid(), sig), 0);
        EXPECT_TRUE(wait_until([&] { return !fs::exists(pid_file); })) << u.err();
        EXPECT_EQ(u.terminate(), 0) << u.err();
    }
}

// A hang-up stops tcpfwd as SIGTERM does, draining. The SIGTERM a service manager may send after
// it is a first request, not "SIGTERM again": an open connection keeps flowing through the drain.
// Only the second SIGTERM kills the worker, and with it the connection.
TEST(Portfwd, ASigtermAfterAHangupLetsTheDrainGoOn) {
    const uint16_t up = free_port(), in = free_port();
    EchoServer server(up);
    RunningCommand t({tool("tcpfwd"), port_text(in), "127.0.0.1:" + port_text(up)});
    ASSERT_TRUE(t.wait_err("tcp-forward worker ready")) << t.err();
    unique_fd c = connect_tcp(in, 10s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 10s);
    auto echoes = [&](const std::string& text) {
        std::string back(text.size(), '\0');
        return write_all(c.get(), text.data(), text.size()) &&
               read_exact(c.get(), back.data(), back.size()) && back == text;
    };
    ASSERT_TRUE(echoes("before"));
    ASSERT_EQ(::kill(t.pid(), SIGHUP), 0);
    ASSERT_TRUE(t.wait_err("SIGHUP: stopping")) << t.err();
    ASSERT_EQ(::kill(t.pid(), SIGHUP), 0);  // a terminal may hang up twice
    ASSERT_EQ(::kill(t.pid(), SIGTERM), 0);
    ASSERT_TRUE(wait_until([&] {
        return t.err().find("SIGTERM after a hang-up") != std::string::npos ||
               t.err().find("SIGTERM again") != std::string::npos;
    })) << t.err();
    EXPECT_TRUE(echoes("still draining"));
    EXPECT_NE(t.err().find("SIGTERM after a hang-up: still draining"), std::string::npos)
        << t.err();
    EXPECT_EQ(t.err().find("again: killing"), std::string::npos) << t.err();
    ASSERT_EQ(::kill(t.pid(), SIGTERM), 0);
    ASSERT_TRUE(t.wait_err("SIGTERM again: killing the remaining workers now")) << t.err();
    std::string rest;
    EXPECT_NE(read_until_end(c.get(), rest), "timeout");  // the killed worker's socket is gone
    EXPECT_EQ(rest, "");
    EXPECT_EQ(t.terminate(), 0) << t.err();
}

TEST(Portfwd, AStalePidFileIsReplaced) {
    TempDir dir;
    const std::string pid_file = dir.write("t.pid", "999999\n");  // nobody holds its lock
    const uint16_t up = free_port(), in = free_port();
    RunningCommand t({tool("tcpfwd"), "-p", pid_file, "127.0.0.1:" + port_text(in),
                      "127.0.0.1:" + port_text(up)});
    ASSERT_TRUE(t.wait_err("tcp-forward worker ready")) << t.err();
    EXPECT_EQ(read_text(pid_file), std::to_string(t.pid()) + "\n");
    EXPECT_EQ(t.terminate(), 0);
    EXPECT_FALSE(fs::exists(pid_file));
}

TEST(Portfwd, DaemonizesAfterEveryCheck) {
    TempDir dir;
    const std::string pid_file = dir.path() + "/d.pid";
    const uint16_t up = free_udp_port(), in = free_udp_port();
    // A mistake is reported on the terminal, and nothing is left running or written.
    CommandResult bad = run_command(
        {tool("udpfwd"), "-d", "-p", pid_file, "127.0.0.1:" + port_text(in), "127.0.0.1:0"});
    EXPECT_EQ(WEXITSTATUS(bad.status), 1);
    EXPECT_EQ(bad.output,
              "udpfwd: invalid destination address '127.0.0.1:0': invalid endpoint "
              "\"udp:127.0.0.1:0\": port must be 1-65535\n");
    EXPECT_FALSE(fs::exists(pid_file));
    // A good command line: the parent returns 0, the daemon serves and owns the pid file.
    UdpEchoServer server(AF_INET, up);
    CommandResult r = run_command({tool("udpfwd"), "-d", "-p", pid_file,
                                   "127.0.0.1:" + port_text(in), "127.0.0.1:" + port_text(up)});
    ASSERT_EQ(WEXITSTATUS(r.status), 0) << r.output;
    EXPECT_EQ(r.output, "");  // stdout and stderr went to /dev/null with the daemon
    ASSERT_TRUE(wait_until([&] { return !read_text(pid_file).empty(); }));
    const pid_t daemon = std::stoi(read_text(pid_file));
    EXPECT_TRUE(alive(daemon));
    // A datagram sent before the daemon's worker is ready is lost: try again, briefly each time.
    EXPECT_TRUE(wait_until([&] { return udp_echoed(in, "to the daemon", 250ms); }));
    ASSERT_EQ(::kill(daemon, SIGTERM), 0);
    EXPECT_TRUE(wait_until([&] { return !fs::exists(pid_file) && !alive(daemon); }));
}

std::string ipv6_missing() {
    if (!std::ifstream("/proc/net/if_inet6").good()) return "IPv6";
    return read_text("/proc/sys/net/ipv6/bindv6only").starts_with("0")
               ? ""
               : "net.ipv6.bindv6only=0 (dual-stack sockets by default)";
}

unique_fd connect_tcp6(uint16_t port) {
    unique_fd s(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    set_timeouts(s.get(), 10s);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
    return s;
}

// -6 (tcpfwd) and -o (udpfwd): "[::]:PORT" takes IPv6 only, so an IPv4 socket can have the same
// port; without the flag the wildcard is dual-stack and holds the IPv4 port too.
TEST(Portfwd, V6OnlyFlagsLeaveIpv4ToAnotherSocket) {
    PFP_REQUIRE(ipv6_missing());
    const uint16_t up = free_port();
    EchoServer server(up);
    {
        const uint16_t in = free_port();
        RunningCommand t(
            {tool("tcpfwd"), "-6", "[::]:" + port_text(in), "127.0.0.1:" + port_text(up)});
        ASSERT_TRUE(t.wait_err("tcp-forward worker ready")) << t.err();
        unique_fd v6 = connect_tcp6(in);
        ASSERT_TRUE(v6);
        ASSERT_TRUE(write_all(v6.get(), "six", 3));
        char back[3];
        ASSERT_TRUE(read_exact(v6.get(), back, 3));
        EXPECT_EQ(std::string(back, 3), "six");
        v6.reset();  // nothing left to drain at the stop
        EXPECT_NO_THROW(listen_tcp(in)) << "127.0.0.1:" << in << " is still taken";
        EXPECT_EQ(t.terminate(), 0) << t.err();
    }
    {
        const uint16_t in = free_port();
        RunningCommand t({tool("tcpfwd"), "[::]:" + port_text(in), "127.0.0.1:" + port_text(up)});
        ASSERT_TRUE(t.wait_err("tcp-forward worker ready")) << t.err();
        EXPECT_THROW(listen_tcp(in), std::runtime_error) << "a dual-stack [::] holds IPv4 too";
        EXPECT_TRUE(tcp_echoed(in, "four")) << "IPv4 reaches the dual-stack listener";
        EXPECT_EQ(t.terminate(), 0) << t.err();
    }
    const uint16_t uup = free_udp_port(), uin = free_udp_port(AF_INET6);
    UdpEchoServer userver(AF_INET, uup);
    RunningCommand u(
        {tool("udpfwd"), "[::]:" + port_text(uin), "127.0.0.1:" + port_text(uup), "-o"});
    ASSERT_TRUE(u.wait_err("udp-forward worker ready")) << u.err();
    unique_fd c6 = bind_udp(AF_INET6);
    ASSERT_TRUE(send_udp(c6.get(), AF_INET6, uin, "six"));
    const auto back = recv_udp(c6.get(), 10s);
    ASSERT_TRUE(back) << u.err();
    EXPECT_EQ(*back, "six");
    unique_fd v4 = bind_udp(AF_INET, uin);
    EXPECT_TRUE(v4) << "udp 127.0.0.1:" << uin << " is still taken";
    EXPECT_EQ(u.terminate(), 0) << u.err();
}

// A destination host name goes to pf-proxyd's resolver (the system's: /etc/hosts here, replaced
// in a mount namespace of the command's own).
TEST(Portfwd, DestinationHostNamesAreResolved) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root (a mount namespace with its own /etc/hosts)");
    TempDir dir;
    const std::string hosts =
        dir.write("hosts", "127.0.0.1 localhost\n127.0.0.1 portfwd-upstream.test\n");
    // DNS questions (for a name not in hosts) go to loopback port 53, where nothing answers.
    const std::string resolv = dir.write("resolv.conf", "nameserver 127.0.0.1\n");
    const std::string mounts = "mount --bind " + hosts + " /etc/hosts && mount --bind " + resolv +
                               " /etc/resolv.conf && exec ";
    const uint16_t up = free_port(), in = free_port();
    EchoServer server(up);
    RunningCommand t({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                      mounts + tool("tcpfwd") + " 127.0.0.1:" + port_text(in) +
                          " portfwd-upstream.test:" + port_text(up)});
    ASSERT_TRUE(t.wait_err("tcp-forward worker ready")) << t.err();
    EXPECT_NE(t.err().find("\"portfwd-upstream.test\" resolves to 127.0.0.1:" + port_text(up)),
              std::string::npos)
        << t.err();
    EXPECT_TRUE(tcp_echoed(in, "by name"));
    EXPECT_EQ(t.terminate(), 0) << t.err();

    // A name that does not resolve: one line, exit 1, before anything forwards.
    const CommandResult bad = run_command({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                                           mounts + tool("tcpfwd") + " 127.0.0.1:" + port_text(in) +
                                               " no-such-host.test:" + port_text(up)});
    EXPECT_EQ(WEXITSTATUS(bad.status), 1) << bad.output;
    EXPECT_TRUE(bad.output.starts_with("tcpfwd: cannot resolve \"no-such-host.test\": "))
        << bad.output;
    EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;
}

TEST(Portfwd, HelpAndOneLineErrors) {
    CommandResult h = run_command({tool("udpfwd"), "-h"});
    EXPECT_EQ(WEXITSTATUS(h.status), 0);
    EXPECT_TRUE(h.output.starts_with(
        "Usage:\n  udpfwd <local_addr:local_port> <dest_addr:dest_port> [options]\n\nOptions:\n"))
        << h.output;
    h = run_command({tool("tcpfwd"), "-h"});
    EXPECT_EQ(WEXITSTATUS(h.status), 0);
    EXPECT_NE(h.output.find("  -b                 base-addr mode"), std::string::npos) << h.output;
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"tcpfwd", "-x", "1", "2"}, "tcpfwd: invalid option -- 'x'\n"},
        {{"udpfwd", "1"},
         "udpfwd: expected <local_addr:local_port> <dest_addr:dest_port>, got 1 address(es) "
         "(usage: udpfwd <local_addr:local_port> <dest_addr:dest_port> [options])\n"},
        {{"udpfwd", "1", "2", "-p"}, "udpfwd: option requires an argument -- 'p'\n"},
        {{"udpfwd", "example.com:5353", "127.0.0.1:53"},
         "udpfwd: invalid local address 'example.com:5353': expected a numeric address (or "
         "localhost) to listen on\n"},
        {{"udpfwd", "5353", "bad_name:53"},
         "udpfwd: invalid destination address 'bad_name:53': expected HOST:PORT with a host name "
         "and a port 1-65535\n"},
        {{"udpfwd", "5353", "127.0.0.1:53", "-t", "-1"},
         "udpfwd: invalid -t '-1': expected seconds 0-604800 (0: never time out)\n"},
        {{"udpfwd", "5353", "127.0.0.1:53", "-H", "big"},
         "udpfwd: invalid -H 'big': expected a number 1-1000000\n"},
    };
    for (const auto& [args, message] : cases) {
        std::vector<std::string> argv = args;
        argv[0] = tool(argv[0]);
        const CommandResult r = run_command(argv);
        EXPECT_EQ(WEXITSTATUS(r.status), 1) << args[0] << " " << args[1];
        EXPECT_EQ(r.output, message);
    }
    // A port in use: the bind fails in one line before anything runs.
    unique_fd taken = bind_udp(AF_INET);
    const CommandResult r = run_command(
        {tool("udpfwd"), "127.0.0.1:" + port_text(local_port(taken.get())), "127.0.0.1:53"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_EQ(r.output, "udpfwd: cannot bind udp:127.0.0.1:" + port_text(local_port(taken.get())) +
                            ": Address already in use\n");
}

}  // namespace
