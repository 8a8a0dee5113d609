// portfwd's tcpfwd and udpfwd, run for real through their links: forwarding (the seed's example
// command lines on loopback ports), options on either side of the addresses, the pid file
// (exclusive, locked, stale ones replaced, removed at every stop signal), -d, -h and the errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"
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

std::string read_text(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

bool alive(pid_t pid) {
    return ::kill(pid, 0) == 0;
}

bool udp_echoed(uint16_t port, const std::string& payload) {
    unique_fd c = bind_udp(AF_INET);
    if (!send_udp(c.get(), AF_INET, port, payload)) return false;
    const auto back = recv_udp(c.get(), 10s);
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
    EXPECT_TRUE(wait_until([&] { return udp_echoed(in, "to the daemon"); }));
    ASSERT_EQ(::kill(daemon, SIGTERM), 0);
    EXPECT_TRUE(wait_until([&] { return !fs::exists(pid_file) && !alive(daemon); }));
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
        {{"udpfwd", "5353", "example.com:53"},
         "udpfwd: invalid destination address 'example.com:53': host names are not supported "
         "yet (use a numeric address or localhost)\n"},
        {{"udpfwd", "5353", "127.0.0.1:53", "-t", "-1"},
         "udpfwd: invalid -t '-1': expected seconds 0-604800 (0: never time out)\n"},
        {{"udpfwd", "5353", "127.0.0.1:53", "-H", "big"},
         "udpfwd: invalid -H 'big': expected a number 1-1000000\n"},
        {{"tcpfwd", "-6", "[::]:8080", "127.0.0.1:80"},
         "tcpfwd: -6 (IPv6-only wildcard listener) is not supported yet; listen on a specific "
         "IPv6 address instead\n"},
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
