// A compromised worker, played by the test-only pf-proxy-worker-hostile (the real worker with a
// hook that runs after the real lock-down and READY), started by the real pf-proxyd as nobody.
// For each attack: the attempt is refused (SIGSYS, EPERM, or the supervisor kills the worker),
// the supervisor keeps answering the control socket, the other proxy keeps relaying (observed at
// its echo server), and the log names the violation.
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <sstream>

#include "harness.hpp"
#include "tests/support/require.hpp"
#include "workers/landlock.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

// The attack every worker of proxy "a" runs once it is locked down.
class Attack {
  public:
    Attack(const std::string& name, const std::string& arg = "") {
        ::setenv("PFPROXY_HOSTILE_PROXY", "a", 1);
        ::setenv("PFPROXY_HOSTILE", name.c_str(), 1);
        ::setenv("PFPROXY_HOSTILE_ARG", arg.c_str(), 1);
    }
    ~Attack() {
        ::unsetenv("PFPROXY_HOSTILE_PROXY");
        ::unsetenv("PFPROXY_HOSTILE");
        ::unsetenv("PFPROXY_HOSTILE_ARG");
    }
};

// Proxy "a" (the hostile one, `a_entry`, restarted only after 60 s so each attack runs once while
// the test watches) beside proxy "b", a plain tcp-forward to an echo server.
std::string policy(const std::string& a_entry, uint16_t b_listen, uint16_t b_up) {
    return R"({"user": "nobody", "proxies": [)" + a_entry +
           R"(, "restart": {"backoff_initial": "60s", "backoff_max": "60s"}}, )" +
           tcp_proxy_json("b", b_listen, b_up) + "]}";
}

std::string tcp_entry(uint16_t listen, uint16_t up) {
    return R"({"name": "a", "listen": "tcp:127.0.0.1:)" + std::to_string(listen) +
           R"(", "upstream": "tcp:127.0.0.1:)" + std::to_string(up) + "\"";
}

std::vector<std::string> hostile_worker() {
    return {"--worker", bin_dir() + "/pf-proxy-worker-hostile"};
}

// One status request on the control socket; its reply, or "" when none came within `limit`
// (generous: it only has to catch a supervisor that is stuck).
std::string control_status(const std::string& path, std::chrono::milliseconds limit = 1000ms) {
    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&un), sizeof un) != 0) return "";
    const std::string req = "{\"command\": \"status\"}\n";
    if (!write_all(s.get(), req.data(), req.size())) return "";
    std::string reply;
    const auto end = std::chrono::steady_clock::now() + limit;
    while (reply.find('\n') == std::string::npos) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        pollfd p{s.get(), POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) return "";
        char buf[4096];
        const ssize_t n = ::read(s.get(), buf, sizeof buf);
        if (n <= 0) break;
        reply.append(buf, static_cast<size_t>(n));
    }
    return reply;
}

// The proxy listening on `port` echoes through its upstream.
void expect_relays(uint16_t port) {
    unique_fd c = connect_tcp(port);
    ASSERT_TRUE(c);
    ASSERT_TRUE(write_all(c.get(), "ping", 4));
    char buf[4];
    ASSERT_TRUE(read_exact(c.get(), buf, 4));
    EXPECT_EQ(std::string(buf, 4), "ping");
}

size_t count(const std::string& haystack, const std::string& needle) {
    size_t n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1))
        ++n;
    return n;
}

// The supervisor is fine: it answers at once, proxy "b" serves, proxy "b" is still running.
void expect_supervisor_unharmed(const Daemon& d, uint16_t b_listen,
                                const std::string& control = "") {
    const std::string reply = control_status(control.empty() ? d.control_path() : control);
    EXPECT_NE(reply.find("\"ok\":true"), std::string::npos) << "status: " << reply << d.log();
    expect_relays(b_listen);
}

struct Ports {
    uint16_t a_listen = free_port(), a_up = free_port(), b_listen = free_port(), b_up = free_port();
};

TEST(HostileWorker, FdsSentToTheSupervisorAreRefusedAndNeverBlockIt) {
    Ports s;
    EchoServer echo(s.b_up);
    // The passed socket's peer: accepts nothing, reads nothing, so its send queue stays full.
    unique_fd sink = listen_tcp(s.a_up);
    Attack attack("send-fd", std::to_string(s.a_up));
    Daemon d(policy(tcp_entry(s.a_listen, s.a_up), s.b_listen, s.b_up), hostile_worker());
    ASSERT_TRUE(d.wait_log("hostile: send-fd: socket ready")) << d.log();
    ASSERT_TRUE(d.wait_log("hostile: send-fd: sendmsg ")) << d.log();
    // The kernel refuses the fd (SO_PASSRIGHTS); a kernel without it delivers it, and the
    // supervisor kills the worker after closing the fd without waiting for a linger. (The worker
    // cannot set SO_LINGER itself any more: its filter allows only SO_KEEPALIVE at that level.)
    const bool refused =
        d.log().find("hostile: send-fd: sendmsg refused: Operation not permitted") !=
        std::string::npos;
    if (!refused) {
        EXPECT_TRUE(d.wait_log("protocol violation: received 1 fds, at most 0 allowed")) << d.log();
    }
    expect_supervisor_unharmed(d, s.b_listen);
}

TEST(HostileWorker, ImplausibleStatsGetTheWorkerKilledOnce) {
    Ports s;
    EchoServer echo(s.b_up);
    Attack attack("stats-decrease");
    Daemon d(policy(tcp_entry(s.a_listen, s.a_up), s.b_listen, s.b_up), hostile_worker());
    ASSERT_TRUE(
        d.wait_log("protocol violation: STATS accepted went down from 1000 to 3; killing it"))
        << d.log();
    ASSERT_TRUE(d.wait_log("killed by signal SIGKILL")) << d.log();
    expect_supervisor_unharmed(d, s.b_listen);
    EXPECT_EQ(count(d.log(), "protocol violation"), 1u) << d.log();
}

// "addresses": the supervisor-to-worker ADDRESSES message, sent by a worker.
TEST(HostileWorker, OversizedAndMistypedMessagesGetTheWorkerKilled) {
    for (const std::string name : {"oversized", "mistyped", "addresses"}) {
        Ports s;
        EchoServer echo(s.b_up);
        Attack attack(name);
        Daemon d(policy(tcp_entry(s.a_listen, s.a_up), s.b_listen, s.b_up), hostile_worker());
        ASSERT_TRUE(d.wait_log("protocol violation: ")) << name << d.log();
        ASSERT_TRUE(d.wait_log("killed by signal SIGKILL")) << name << d.log();
        expect_supervisor_unharmed(d, s.b_listen);
        EXPECT_EQ(count(d.log(), "protocol violation"), 1u) << d.log();
    }
}

// Calls the sandbox forbids end the worker with SIGSYS, whatever they aim at.
TEST(HostileWorker, ForbiddenCallsEndTheWorkerWithSigsys) {
    for (const std::string name : {"signal-supervisor", "open-file", "linger-option",
                                   "tcp-congestion", "shutdown-listener"}) {
        Ports s;
        EchoServer echo(s.b_up);
        Attack attack(name);
        Daemon d(policy(tcp_entry(s.a_listen, s.a_up), s.b_listen, s.b_up), hostile_worker());
        ASSERT_TRUE(d.wait_log("hostile: " + name + ": starting")) << d.log();
        ASSERT_TRUE(d.wait_log("killed by signal SIGSYS (seccomp violation)")) << name << d.log();
        EXPECT_EQ(d.log().find("hostile: " + name + ": survived"), std::string::npos) << d.log();
        expect_supervisor_unharmed(d, s.b_listen);
    }
}

// A worker with the thread relay gains thread creation and nothing more: a thread's fork and a
// clone with a namespace flag are killed, clone3 fails (ENOSYS) and the worker lives on.
TEST(HostileWorker, ThreadRelayWorkerCannotForkOrUnshare) {
    const std::string threads = R"(, "relay": "threads")";
    for (const std::string name : {"thread-fork", "clone-newuser"}) {
        Ports s;
        EchoServer echo(s.b_up);
        Attack attack(name);
        Daemon d(policy(tcp_entry(s.a_listen, s.a_up) + threads, s.b_listen, s.b_up),
                 hostile_worker());
        ASSERT_TRUE(d.wait_log("hostile: " + name + ": starting")) << d.log();
        ASSERT_TRUE(d.wait_log("killed by signal SIGSYS (seccomp violation)")) << name << d.log();
        EXPECT_EQ(d.log().find("hostile: " + name + ": survived"), std::string::npos) << d.log();
        if (name == "thread-fork") {
            EXPECT_NE(d.log().find("hostile: thread-fork: thread running, forking"),
                      std::string::npos)
                << d.log();
        }
        expect_supervisor_unharmed(d, s.b_listen);
    }
    Ports s;
    EchoServer echo(s.b_up);
    EchoServer a_echo(s.a_up);
    Attack attack("clone3");
    Daemon d(policy(tcp_entry(s.a_listen, s.a_up) + threads, s.b_listen, s.b_up), hostile_worker());
    ASSERT_TRUE(d.wait_log("hostile: clone3: refused: Function not implemented")) << d.log();
    ASSERT_TRUE(d.wait_log("hostile: clone3: survived")) << d.log();
    EXPECT_EQ(d.log().find("SIGSYS"), std::string::npos) << d.log();
}

// What a worker writes reaches the log only as the supervisor's line about that worker: under its
// prefix, at most at error priority, control bytes escaped; a flood is cut to the relay's rate
// and reported, and the supervisor keeps answering meanwhile.
TEST(HostileWorker, LogLinesCannotBeForgedOrFloodTheSupervisor) {
    Ports s;
    EchoServer echo(s.b_up);
    Attack attack("forge-log");
    Daemon d(policy(tcp_entry(s.a_listen, s.a_up), s.b_listen, s.b_up), hostile_worker());
    ASSERT_TRUE(d.wait_log("FORGED-ESC")) << d.log();
    // Reported a second after the loss began, though the worker wrote nothing more since.
    ASSERT_TRUE(d.wait_log("log lines suppressed (over 1000 lines/s)")) << d.log().substr(0, 4096);
    expect_supervisor_unharmed(d, s.b_listen);
    const std::string log = d.log();
    EXPECT_EQ(log.find('\x1b'), std::string::npos);
    EXPECT_EQ(log.find('\r'), std::string::npos);
    size_t forged = 0, flood = 0;
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
        if (line.find("flood line ") != std::string::npos) ++flood;
        const size_t at = line.find("FORGED-");
        if (at == std::string::npos) continue;
        ++forged;
        // The supervisor's own prefix, then the worker's label, then what the worker wrote.
        EXPECT_EQ(line.find(" pf-proxyd["), 24u) << line;
        const size_t label = line.find(": proxy \"a\" worker 0 (pid ");
        EXPECT_LT(label, at) << line;
        EXPECT_EQ(line.rfind("2026-01-01", 0), std::string::npos) << line;
        if (line.find("FORGED-PRIO") != std::string::npos) {
            EXPECT_NE(line.find(" error: proxy \"a\""), std::string::npos) << line;
        }
        if (line.find("FORGED-ESC") != std::string::npos) {
            EXPECT_NE(line.find("\\x1b[2KFORGED-ESC\\x0d"), std::string::npos) << line;
        }
    }
    EXPECT_EQ(forged, 3u) << log.substr(0, 4096);
    // The burst went through, the rest of the 20,000 did not.
    EXPECT_GE(flood, 4000u);
    EXPECT_LT(flood, 20000u);
}

// A worker whose upstream is vsock cannot even make a Unix socket; one whose upstream is a Unix
// socket can reach the control socket's file, and the control socket refuses it: proxy "b" keeps
// running.
TEST(HostileWorker, ControlSocketIsOutOfAWorkersReach) {
    {
        Ports s;
        EchoServer echo(s.b_up);
        const std::string entry = R"({"name": "a", "listen": "tcp:127.0.0.1:)" +
                                  std::to_string(s.a_listen) + R"(", "upstream": "vsock:3:5000")";
        Attack attack("control-socket", "/nonexistent");
        Daemon d(policy(entry, s.b_listen, s.b_up), hostile_worker());
        ASSERT_TRUE(d.wait_log("hostile: control-socket: starting")) << d.log();
        ASSERT_TRUE(d.wait_log("killed by signal SIGSYS (seccomp violation)")) << d.log();
        EXPECT_EQ(d.log().find("hostile: control-socket: socket"), std::string::npos) << d.log();
        expect_supervisor_unharmed(d, s.b_listen);
    }
    {
        Ports s;
        EchoServer echo(s.b_up);
        TempDir dir;
        // The attack needs the control socket's path before pf-proxyd starts: fixed here.
        const std::string control = dir.path() + "/control.sock";
        const std::string entry = R"({"name": "a", "listen": "tcp:127.0.0.1:)" +
                                  std::to_string(s.a_listen) + R"(", "upstream": "unix:)" +
                                  dir.path() + "/up.sock\"";
        Attack attack("control-socket", control);
        std::vector<std::string> args = hostile_worker();
        args.insert(args.end(), {"--control", control});
        Daemon d(policy(entry, s.b_listen, s.b_up), args);
        ASSERT_TRUE(d.wait_log("hostile: control-socket: reply ")) << d.log();
        EXPECT_NE(d.log().find("permission denied: a worker may not use the control socket"),
                  std::string::npos)
            << d.log();
        EXPECT_NE(d.log().find("control socket: refused worker process"), std::string::npos)
            << d.log();
        EXPECT_EQ(d.log().find("stop of proxy \"b\" requested"), std::string::npos) << d.log();
        expect_supervisor_unharmed(d, s.b_listen, control);
    }
}

// A listening socket nobody accepts from (non-blocking): a connection that arrived waits in its
// backlog.
struct Listening {
    unique_fd fd;
    bool connected_to() const {
        unique_fd c(::accept4(fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        return static_cast<bool>(c);
    }
};

Listening tcp_listening(uint16_t port) {
    unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd.get(), 16) != 0)
        return {};
    return {std::move(fd)};
}

Listening abstract_listening(const std::string& name) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path + 1, name.data(), name.size());
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&un), len) != 0 || ::listen(fd.get(), 16) != 0)
        return {};
    return {std::move(fd)};
}

// Landlock, under the seccomp filter, bounds what seccomp cannot see: a tcp-forward worker may
// connect to its upstream's port only, and no worker reaches an abstract Unix socket outside its
// domain. Each attempt is refused and the listener the worker aimed at saw nothing.
TEST(HostileWorker, LandlockKeepsConnectsToTheUpstreamsPortAndOutOfAbstractSockets) {
    PFP_REQUIRE(pfp::sandbox::landlock_abi() >= 6
                    ? ""
                    : "Landlock ABI 6 (ports and scopes, Linux 6.12) for the worker's layer under "
                      "seccomp");
    {
        Ports s;
        EchoServer echo(s.b_up);
        const uint16_t elsewhere = free_port();
        Listening target = tcp_listening(elsewhere);
        ASSERT_TRUE(target.fd);
        Attack attack("tcp-connect", std::to_string(elsewhere));
        Daemon d(policy(tcp_entry(s.a_listen, s.a_up), s.b_listen, s.b_up), hostile_worker());
        ASSERT_TRUE(d.wait_log("hostile: tcp-connect: connect ")) << d.log();
        EXPECT_NE(d.log().find("hostile: tcp-connect: connect refused: Permission denied"),
                  std::string::npos)
            << d.log();
        EXPECT_FALSE(target.connected_to());
        EXPECT_NE(d.log().find("landlock ABI "), std::string::npos) << d.log();
        EXPECT_NE(d.log().find("TCP connect to " + std::to_string(s.a_up)), std::string::npos)
            << d.log();
        expect_supervisor_unharmed(d, s.b_listen);
    }
    {
        Ports s;
        EchoServer echo(s.b_up);
        TempDir dir;
        const std::string name = "pfp-hostile-" + std::to_string(::getpid());
        Listening target = abstract_listening(name);
        ASSERT_TRUE(target.fd);
        // A Unix upstream: the one kind of worker that may create AF_UNIX sockets.
        const std::string entry = R"({"name": "a", "listen": "tcp:127.0.0.1:)" +
                                  std::to_string(s.a_listen) + R"(", "upstream": "unix:)" +
                                  dir.path() + "/up.sock\"";
        Attack attack("abstract-unix", name);
        Daemon d(policy(entry, s.b_listen, s.b_up), hostile_worker());
        ASSERT_TRUE(d.wait_log("hostile: abstract-unix: connect ")) << d.log();
        EXPECT_NE(d.log().find("hostile: abstract-unix: socket succeeded"), std::string::npos);
        EXPECT_NE(d.log().find("hostile: abstract-unix: connect refused: Operation not permitted"),
                  std::string::npos)
            << d.log();
        EXPECT_FALSE(target.connected_to());
        expect_supervisor_unharmed(d, s.b_listen);
    }
}

// A listening pathname Unix socket anyone may connect to (mode 0777).
Listening unix_listening(const std::string& path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&un), sizeof un) != 0 ||
        ::chmod(path.c_str(), 0777) != 0 || ::listen(fd.get(), 16) != 0)
        return {};
    return {std::move(fd)};
}

// Whether uid nobody, outside any worker's view, can connect to `path`: the attack's target is
// in its reach but for the view.
bool nobody_can_connect(const std::string& path) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
        const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
        ::_exit(::connect(s, reinterpret_cast<sockaddr*>(&un), sizeof un) == 0 ? 0 : 1);
    }
    int status = 0;
    return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

// A worker whose upstream is a Unix socket may create AF_UNIX sockets, and neither seccomp nor
// Landlock can bound which path it connects to: its filesystem is its upstream's directory only
// (a pathname upstream) or nothing (an abstract one). A socket uid nobody could reach elsewhere
// is not there for it, and its listener saw nothing; the upstream itself still relays.
TEST(HostileWorker, UnixSocketsOutsideItsUpstreamsDirectoryAreOutOfSight) {
    TempDir elsewhere;
    const std::string target_path = elsewhere.path() + "/other.sock";
    Listening target = unix_listening(target_path);
    ASSERT_TRUE(target.fd);
    ASSERT_TRUE(nobody_can_connect(target_path)) << "the negative control: nobody reaches it";
    target.connected_to();  // the control's own connection
    // `upstream`: a listening socket for `up_listener`; `view`: how the worker's log line says it.
    const auto attack_from = [&](const std::string& upstream, Listening up_listener,
                                 const std::string& view) {
        Ports s;
        EchoServer echo(s.b_up);
        ASSERT_TRUE(up_listener.fd) << upstream;
        EchoServer upstream_echo(std::move(up_listener.fd));
        const std::string entry = R"({"name": "a", "listen": "tcp:127.0.0.1:)" +
                                  std::to_string(s.a_listen) + R"(", "upstream": ")" + upstream +
                                  "\"";
        Attack attack("unix-connect", target_path);
        Daemon d(policy(entry, s.b_listen, s.b_up), hostile_worker());
        ASSERT_TRUE(d.wait_log("hostile: unix-connect: connect ")) << d.log();
        EXPECT_NE(d.log().find("a/0: filesystem view: " + view), std::string::npos) << d.log();
        EXPECT_NE(d.log().find("hostile: unix-connect: connect refused: No such file or directory"),
                  std::string::npos)
            << d.log();
        EXPECT_FALSE(target.connected_to());
        expect_relays(s.a_listen);  // its upstream stays in reach
        expect_supervisor_unharmed(d, s.b_listen);
    };
    TempDir dir;
    attack_from("unix:" + dir.path() + "/up.sock", unix_listening(dir.path() + "/up.sock"),
                "only " + dir.path() + " under a read-only");
    const std::string name = "pfp-view-" + std::to_string(::getpid());
    attack_from("unix:@" + name, abstract_listening(name), "an empty read-only root");
}

}  // namespace

namespace {

// One proxy "a" of each family: its worker is the attacker. (A unique port or path per entry.)
struct FamilyEntry {
    std::string family;
    std::string entry;
};

std::vector<FamilyEntry> one_proxy_per_family(const Ports& s, const std::string& dir) {
    return {
        {"stream (tcp-forward)", tcp_entry(s.a_listen, s.a_up)},
        {"datagram (udp-forward)",
         R"({"name": "a", "listen": "udp:127.0.0.1:)" + std::to_string(s.a_listen) +
             R"(", "upstream": "udp:127.0.0.1:)" + std::to_string(s.a_up) + "\""},
        {"packet (stream-to-raw)",
         R"({"name": "a", "listen": "unix:)" + dir + R"(/raw.sock", "upstream": "raw:lo")"},
        {"tunnel (kcp-server)", R"({"name": "a", "tunnel": "kcp", "listen": "udp:127.0.0.1:)" +
                                    std::to_string(s.a_listen) +
                                    R"(", "upstream": "tcp:127.0.0.1:)" + std::to_string(s.a_up) +
                                    "\""},
        {"tunnel (kcp-client)", R"({"name": "a", "tunnel": "kcp", "listen": "tcp:127.0.0.1:)" +
                                    std::to_string(s.a_listen) +
                                    R"(", "upstream": "udp:127.0.0.1:)" + std::to_string(s.a_up) +
                                    "\""},
    };
}

}  // namespace

// The same attacks against a worker of each family (stream, datagram, packet, tunnel: both of its
// kinds, whose sandboxes differ: kcp-server's TCP connects out, kcp-client's UDP): a forbidden
// call ends it with SIGSYS, a message outside its permit table gets it killed once, and meanwhile
// the supervisor answers and proxy "b" relays. (Every kind's own filter is proven call by call in
// sandbox_kinds_test; this is the supervisor's side of it, per family.)
TEST(HostileWorker, EveryFamilyIsHeldToTheSameRules) {
    const size_t families = one_proxy_per_family(Ports{}, "/").size();
    for (size_t i = 0; i < families; ++i) {
        for (const std::string name :
             {"signal-supervisor", "open-file", "linger-option", "shutdown-listener"}) {
            Ports s;
            TempDir dir;
            EchoServer echo(s.b_up);
            const FamilyEntry f = one_proxy_per_family(s, dir.path())[i];
            Attack attack(name);
            Daemon d(policy(f.entry, s.b_listen, s.b_up), hostile_worker());
            ASSERT_TRUE(d.wait_log("hostile: " + name + ": starting")) << f.family << d.log();
            ASSERT_TRUE(d.wait_log("killed by signal SIGSYS (seccomp violation)"))
                << f.family << " " << name << d.log();
            EXPECT_EQ(d.log().find("hostile: " + name + ": survived"), std::string::npos)
                << f.family << d.log();
            expect_supervisor_unharmed(d, s.b_listen);
        }
        for (const std::string name : {"oversized", "mistyped", "addresses"}) {
            Ports s;
            TempDir dir;
            EchoServer echo(s.b_up);
            const FamilyEntry f = one_proxy_per_family(s, dir.path())[i];
            Attack attack(name);
            Daemon d(policy(f.entry, s.b_listen, s.b_up), hostile_worker());
            ASSERT_TRUE(d.wait_log("protocol violation: ")) << f.family << " " << name << d.log();
            ASSERT_TRUE(d.wait_log("killed by signal SIGKILL")) << f.family << d.log();
            expect_supervisor_unharmed(d, s.b_listen);
            EXPECT_EQ(count(d.log(), "protocol violation"), 1u) << f.family << d.log();
        }
    }
}

namespace {

// GET /metrics from a metrics endpoint on loopback: the whole reply ("" when none came).
std::string metrics_at(uint16_t port) {
    unique_fd c = connect_tcp(port);
    if (!c) return "";
    const std::string req = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    std::string out;
    if (!write_all(c.get(), req.data(), req.size()) || !read_to_eof(c.get(), out)) return "";
    return out;
}

}  // namespace

// A packet worker (stream-to-raw) reporting counters it cannot have: one that went down, one that
// grew beyond any worker's rate, more packets out than in, more verdicts than packets, more packets
// cut than sent. Each time
// the supervisor names the violation, kills the worker once, and neither status nor the metrics
// ever show the impossible value (777777, or 2^40).
TEST(HostileWorker, ImplausiblePacketStatsAreRefusedAndTheWorkerKilled) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"decrease", "STATS packets_in went down from 888888 to 777777; killing it"},
        {"growth", "STATS packets_in grew by 1099511627776 in "},
        {"out-exceeds-in", "STATS more packets or bytes out (777777, 0) than in (5, 0)"},
        {"verdicts", "STATS more verdicts than packets read"},
        {"cut-exceeds-out", "STATS more packets cut (777777) than sent (0)"},
    };
    for (const auto& [which, violation] : cases) {
        Ports s;
        TempDir dir;
        EchoServer echo(s.b_up);
        const uint16_t metrics = free_port();
        const FamilyEntry f = one_proxy_per_family(s, dir.path())[2];
        ASSERT_EQ(f.family, "packet (stream-to-raw)");
        std::string text = policy(f.entry, s.b_listen, s.b_up);
        text.insert(text.find("\"proxies\""),
                    "\"metrics\": \"tcp:127.0.0.1:" + std::to_string(metrics) + "\", ");
        Attack attack("packet-stats", which);
        Daemon d(text, hostile_worker());
        ASSERT_TRUE(d.wait_log("protocol violation: " + violation)) << which << d.log();
        ASSERT_TRUE(d.wait_log("killed by signal SIGKILL")) << which << d.log();
        expect_supervisor_unharmed(d, s.b_listen);
        EXPECT_EQ(count(d.log(), "protocol violation"), 1u) << d.log();
        const std::string status = control_status(d.control_path());
        ASSERT_NE(status.find("\"name\":\"a\""), std::string::npos) << status;
        const std::string scraped = metrics_at(metrics);
        ASSERT_NE(scraped.find("proxy=\"a\""), std::string::npos) << scraped;
        for (const std::string fake : {"777777", "1099511627776"}) {
            EXPECT_EQ(status.find(fake), std::string::npos) << which << ": " << status;
            EXPECT_EQ(scraped.find(fake), std::string::npos) << which << ": " << scraped;
        }
    }
}
