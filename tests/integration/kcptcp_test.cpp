// kcptcp-client and kcptcp-server run for real through their links, on loopback: the same key on
// both ends carries an echo exchange (also through a lossy link), a different key or none carries
// nothing (the upstream never sees a connection), the key never shows in ps, a log line or a
// worker's environment, --psk-file/--psk-env, the pid file, -d, and a bind failure.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "tests/support/lossy_udp_relay.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using pfp::unique_fd;
namespace fs = std::filesystem;

namespace {

const std::string kKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const std::string kOtherKey = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
constexpr const char* kClientReady = "kcp-client worker ready";
constexpr const char* kServerReady = "kcp-server worker ready";

std::string tool(const std::string& name) {
    return bin_dir() + "/" + name;
}

std::string at(uint16_t port) {
    return "127.0.0.1:" + std::to_string(port);
}

// A connection through the client's port carries `bytes` of a pattern to the echo server and
// back, checksummed both ways.
bool echoes(uint16_t client_port, size_t bytes) {
    unique_fd c = connect_tcp(client_port, 10s);
    if (!c) return false;
    set_timeouts(c.get(), 60s);
    const Transfer t = send_and_receive(c.get(), bytes, 7);
    return t.ok && t.received == bytes && t.sent_hash == t.received_hash;
}

// Whether a connection waits in `listener`'s accept queue (the kernel completes the handshake
// before anyone accepts, so "the upstream saw a connection" is observable without accepting).
bool has_pending_connection(int listener) {
    pollfd p{listener, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

// Every process of the command (supervisor and workers) by /proc: their environ must not hold
// `secret`.
bool environment_holds(pid_t pid, const std::string& secret) {
    std::vector<pid_t> all = {pid};
    for (pid_t c : children_of(pid)) all.push_back(c);
    for (pid_t p : all)
        if (read_text("/proc/" + std::to_string(p) + "/environ").find(secret) != std::string::npos)
            return true;
    return false;
}

TEST(Kcptcp, TheSameKeyCarriesAnEchoAndTheKeyStaysHidden) {
    const uint16_t up = free_port(), udp = free_udp_port(), in = free_port();
    EchoServer echo(up);
    RunningCommand server({tool("kcptcp-server"), "-K", kKey, at(udp), at(up)});
    RunningCommand client({tool("kcptcp-client"), at(in), at(udp), "-K" + kKey});
    ASSERT_TRUE(server.wait_err(kServerReady)) << server.err();
    ASSERT_TRUE(client.wait_err(kClientReady)) << client.err();
    EXPECT_TRUE(echoes(in, 1 << 20));
    EXPECT_TRUE(echoes(in, 1));  // one byte (the deployed tool took 0xF1 alone for FIN)

    for (RunningCommand* c : {&server, &client}) {
        // Warned, in one line, before anything else.
        EXPECT_EQ(c->err().find("warning: a key given with -K is visible to other users in ps"),
                  c->err().find("warning"))
            << c->err();
        EXPECT_NE(c->err().find("use --psk-file PATH"), std::string::npos) << c->err();
        // Gone from the command line (ps), never in a log line, not in any process's environment.
        EXPECT_EQ(cmdline_of(c->pid()).find(kKey), std::string::npos) << cmdline_of(c->pid());
        EXPECT_NE(cmdline_of(c->pid()).find(std::string(64, 'x')), std::string::npos);
        EXPECT_EQ(c->err().find(kKey), std::string::npos);
        EXPECT_EQ(c->out().find(kKey), std::string::npos);
        EXPECT_FALSE(environment_holds(c->pid(), kKey));
        EXPECT_EQ(c->err().find("unauthenticated"), std::string::npos) << c->err();
    }
    EXPECT_EQ(client.terminate(), 0) << client.err();
    EXPECT_EQ(server.terminate(), 0) << server.err();
}

TEST(Kcptcp, ADifferentKeyOrNoneCarriesNothing) {
    const uint16_t up = free_port(), udp = free_udp_port();
    unique_fd upstream = listen_tcp(up);  // never accepted from: a connection would wait here
    RunningCommand server({tool("kcptcp-server"), "-K", kKey, at(udp), at(up)});
    ASSERT_TRUE(server.wait_err(kServerReady)) << server.err();
    // A client with another key and one with none, at once (each waits out its handshake).
    const uint16_t in_other = free_port(), in_plain = free_port();
    RunningCommand other({tool("kcptcp-client"), at(in_other), at(udp), "-K", kOtherKey});
    RunningCommand plain({tool("kcptcp-client"), at(in_plain), at(udp)});
    ASSERT_TRUE(other.wait_err(kClientReady)) << other.err();
    ASSERT_TRUE(plain.wait_err(kClientReady)) << plain.err();
    EXPECT_NE(plain.err().find("KCP tunnel is unauthenticated (no psk_file or psk_env)"),
              std::string::npos)
        << plain.err();
    std::vector<unique_fd> conns;
    for (uint16_t in : {in_other, in_plain}) {
        conns.push_back(connect_tcp(in, 10s));
        ASSERT_TRUE(conns.back());
        ASSERT_TRUE(write_all(conns.back().get(), "hello", 5));
        set_timeouts(conns.back().get(), 60s);
    }
    // Each client gives up on a handshake nobody answers and ends its connection.
    for (const unique_fd& c : conns) {
        std::string got;
        const std::string end = read_until_end(c.get(), got);
        EXPECT_TRUE(end == "eof" || end == "reset") << end;
        EXPECT_EQ(got, "");
    }
    EXPECT_EQ(other.terminate(), 0) << other.err();
    EXPECT_EQ(plain.terminate(), 0) << plain.err();
    EXPECT_FALSE(has_pending_connection(upstream.get()));
    EXPECT_EQ(server.terminate(), 0) << server.err();
}

TEST(Kcptcp, KeyFromAFileAndFromTheEnvironmentThroughALossyLink) {
    TempDir dir;
    const std::string key_file = dir.write("kcp.key", "  " + kKey + "\n");
    ASSERT_EQ(::chmod(key_file.c_str(), 0600), 0);
    const uint16_t up = free_port(), udp = free_udp_port(), in = free_port();
    EchoServer echo(up);
    RunningCommand server({"/usr/bin/env", "KCPTCP_TEST_KEY=" + kKey, tool("kcptcp-server"),
                           "--psk-env", "KCPTCP_TEST_KEY", at(udp), at(up)});
    ASSERT_TRUE(server.wait_err(kServerReady)) << server.err();
    // 5 % of the datagrams dropped each way, some duplicated and reordered.
    lossy::Options impair;
    impair.target = at(udp);
    impair.drop = 0.05;
    impair.duplicate = 0.02;
    impair.reorder = 0.02;
    impair.seed = 13;
    lossy::Relay relay(impair);
    RunningCommand client(
        {tool("kcptcp-client"), "--psk-file=" + key_file, at(in), at(relay.port())});
    ASSERT_TRUE(client.wait_err(kClientReady)) << client.err();
    EXPECT_TRUE(echoes(in, 4 << 20));
    EXPECT_GT(relay.counters().dropped, 0u);
    EXPECT_EQ(client.err().find("-K"), std::string::npos) << client.err();  // no warning
    // pf-proxyd's variable is its own: no worker inherits it.
    const auto workers = children_of(server.pid());
    EXPECT_FALSE(workers.empty());
    for (pid_t w : workers)
        EXPECT_EQ(read_text("/proc/" + std::to_string(w) + "/environ").find(kKey),
                  std::string::npos)
            << "worker " << w << " inherited KCPTCP_TEST_KEY";
    EXPECT_EQ(client.terminate(), 0) << client.err();
    EXPECT_EQ(server.terminate(), 0) << server.err();

    // A key file others may read is refused at start, in one line, before anything runs.
    ASSERT_EQ(::chmod(key_file.c_str(), 0640), 0);
    const CommandResult r =
        run_command({tool("kcptcp-client"), "--psk-file", key_file, at(in), at(udp)});
    EXPECT_EQ(WEXITSTATUS(r.status), 1) << r.output;
    EXPECT_TRUE(r.output.starts_with("kcptcp-client: ")) << r.output;
    EXPECT_NE(r.output.find(key_file), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
    // So is a variable that is not set.
    const CommandResult e =
        run_command({tool("kcptcp-server"), "--psk-env", "KCPTCP_TEST_UNSET_KEY", at(udp), at(up)});
    EXPECT_EQ(WEXITSTATUS(e.status), 1) << e.output;
    EXPECT_TRUE(e.output.starts_with("kcptcp-server: ")) << e.output;
    EXPECT_NE(e.output.find("KCPTCP_TEST_UNSET_KEY"), std::string::npos) << e.output;
    EXPECT_EQ(e.output.find('\n'), e.output.size() - 1) << e.output;
}

TEST(Kcptcp, PidFileDaemonAndStopSignals) {
    TempDir dir;
    const std::string pid_file = dir.path() + "/k.pid";
    const uint16_t up = free_port(), udp = free_udp_port(), in = free_port();
    EchoServer echo(up);
    // A mistake is reported on the terminal; nothing is left running or written.
    CommandResult bad =
        run_command({tool("kcptcp-server"), "-d", "-p", pid_file, at(udp), at(up), "-M", "100"});
    EXPECT_EQ(WEXITSTATUS(bad.status), 1);
    EXPECT_EQ(bad.output, "kcptcp-server: invalid -M '100': expected an MTU 576-1500\n");
    EXPECT_FALSE(fs::exists(pid_file));
    // -d: the parent returns 0 at once; the daemon serves and owns the pid file.
    CommandResult r = run_command({tool("kcptcp-server"), "-dp", pid_file, at(udp), at(up)});
    ASSERT_EQ(WEXITSTATUS(r.status), 0) << r.output;
    EXPECT_EQ(r.output, "");
    ASSERT_TRUE(wait_until([&] { return !read_text(pid_file).empty(); }));
    const pid_t daemon = std::stoi(read_text(pid_file));
    ASSERT_GT(daemon, 1);
    // A second instance with the same pid file is refused in one line.
    const CommandResult second =
        run_command({tool("kcptcp-server"), "-p", pid_file, at(free_udp_port()), at(up)});
    EXPECT_EQ(WEXITSTATUS(second.status), 1);
    EXPECT_EQ(second.output, "kcptcp-server: pid file " + pid_file + " is in use by pid " +
                                 std::to_string(daemon) + " (another instance is running)\n");
    {
        RunningCommand client({tool("kcptcp-client"), at(in), at(udp)});
        ASSERT_TRUE(client.wait_err(kClientReady)) << client.err();
        EXPECT_TRUE(echoes(in, 100000));
        // SIGHUP stops the client as SIGTERM does (there is no policy file to reload): it drains,
        // so the conversation ends cleanly at the server too.
        ASSERT_EQ(::kill(client.pid(), SIGHUP), 0);
        ASSERT_TRUE(client.wait_err("all workers stopped; exiting")) << client.err();
        EXPECT_EQ(client.terminate(), 0) << client.err();  // reaps it: exited by itself, status 0
    }
    ASSERT_EQ(::kill(daemon, SIGQUIT), 0);
    EXPECT_TRUE(wait_until([&] { return !fs::exists(pid_file) && ::kill(daemon, 0) != 0; }));
}

TEST(Kcptcp, ABindFailureIsOneLine) {
    unique_fd taken = bind_udp(AF_INET);
    const uint16_t port = local_port(taken.get());
    const CommandResult r = run_command({tool("kcptcp-server"), at(port), at(free_port())});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_EQ(r.output, "kcptcp-server: cannot bind udp:127.0.0.1:" + std::to_string(port) +
                            ": Address already in use\n");
    unique_fd listener = listen_tcp(free_port());
    const uint16_t tcp = local_port(listener.get());
    const CommandResult c = run_command({tool("kcptcp-client"), at(tcp), at(port)});
    EXPECT_EQ(WEXITSTATUS(c.status), 1);
    EXPECT_EQ(c.output, "kcptcp-client: cannot bind tcp:127.0.0.1:" + std::to_string(tcp) +
                            ": Address already in use\n");
}

}  // namespace
