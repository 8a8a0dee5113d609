// Live reload (SIGHUP) and graceful stop of the real pf-proxyd: unchanged proxies keep their
// workers, changed ones get a new generation that takes over the listener before the old one
// drains, added ones serve, removed ones refuse new clients and drain, an invalid policy
// changes nothing. Open connections survive every one of these.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>

#include "harness.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

std::string policy(const std::vector<std::string>& proxies,
                   const std::string& drain_timeout = "30s") {
    std::string s = "{\"drain_timeout\": \"" + drain_timeout + "\", \"proxies\": [";
    for (size_t i = 0; i < proxies.size(); ++i) s += (i ? ",\n" : "\n") + proxies[i];
    return s + "\n]}\n";
}

// Live workers of one proxy, from their process titles ("pf-proxy-worker: NAME/INDEX").
std::vector<pid_t> workers_of(const Daemon& d, const std::string& name) {
    std::vector<pid_t> out;
    for (pid_t w : d.workers())
        if (cmdline_of(w).find("pf-proxy-worker: " + name + "/") != std::string::npos)
            out.push_back(w);
    return out;
}

bool alive(pid_t pid) {
    return ::kill(pid, 0) == 0 && status_field(pid, "State").find('Z') == std::string::npos;
}

// Sends `n` pattern bytes and reads the echo back; true if it matches.
bool exchange(int fd, size_t n, uint64_t seed) {
    std::vector<char> out(n), in(n);
    fill_pattern(out, seed);
    return write_all(fd, out.data(), n) && read_exact(fd, in.data(), n) && in == out;
}

class Reload : public ::testing::Test {
  protected:
    uint16_t echo_port = free_port();
    EchoServer echo{echo_port};
};

// Drain and reload under each relay engine: a connection served by a thread pair keeps its
// draining worker alive exactly like one on the event loop.
class ReloadRelay : public Reload, public ::testing::WithParamInterface<const char*> {
  protected:
    static std::string engine() { return GetParam(); }
    // A conversation on `fd` (through `worker`) puts it on the engine under test: with threads
    // the worker then runs its loop thread and the connection's pair.
    static void converse_on(int fd, pid_t worker) {
        ASSERT_TRUE(converse(fd));
        const size_t want = engine().empty() ? 1 : 3;
        EXPECT_TRUE(wait_thread_count(worker, want))
            << thread_count(worker) << " threads, not " << want;
    }
};

INSTANTIATE_TEST_SUITE_P(Engine, ReloadRelay,
                         testing::Values("", R"(, "relay": "threads", "relay_threads": 4)"),
                         [](const testing::TestParamInfo<const char*>& p) {
                             return std::string(p.param).empty() ? "events" : "threads";
                         });

TEST_P(ReloadRelay, UnchangedAndChangedProxiesKeepTheirConnectionsAddedServesRemovedRefuses) {
    const uint16_t pa = free_port(), pb = free_port(), pc = free_port(), pd = free_port();
    Daemon d(
        policy({tcp_proxy_json("a", pa, echo_port, engine()),
                tcp_proxy_json("b", pb, echo_port, engine()), tcp_proxy_json("d", pd, echo_port)}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto a_before = workers_of(d, "a");
    const auto b_before = workers_of(d, "b");
    ASSERT_EQ(a_before.size(), 1u);
    ASSERT_EQ(b_before.size(), 1u);

    unique_fd ca = connect_tcp(pa, 20s), cb = connect_tcp(pb, 20s);
    ASSERT_TRUE(ca && cb);
    set_timeouts(ca.get(), 20s);
    set_timeouts(cb.get(), 20s);
    converse_on(ca.get(), a_before[0]);
    converse_on(cb.get(), b_before[0]);
    ASSERT_TRUE(exchange(ca.get(), 1 << 20, 1));
    ASSERT_TRUE(exchange(cb.get(), 1 << 20, 2));

    // b changes (a new idle timeout), c is added, d is removed.
    ASSERT_TRUE(d.rewrite_policy(
        policy({tcp_proxy_json("a", pa, echo_port, engine()),
                tcp_proxy_json("b", pb, echo_port, engine() + ", \"idle_timeout\": \"10m\""),
                tcp_proxy_json("c", pc, echo_port)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("1 unchanged, 1 changed, 1 added, 1 removed")) << d.log();
    ASSERT_TRUE(d.wait_log("all 3 proxies ready (policy generation 2)")) << d.log();

    EXPECT_EQ(workers_of(d, "a"), a_before) << "an unchanged proxy keeps its workers";
    // b: generation 2 serves new clients while generation 1 drains the open connection.
    std::vector<pid_t> b_now;
    for (int i = 0; i < 200 && b_now.size() < 2; ++i) {
        b_now = workers_of(d, "b");
        if (b_now.size() < 2) std::this_thread::sleep_for(10ms);
    }
    ASSERT_EQ(b_now.size(), 2u) << d.log();
    ASSERT_TRUE(d.wait_log("proxy \"b\" worker 0 (pid " + std::to_string(b_before[0]) +
                           ") (generation 1) hands over to generation 2"))
        << d.log();
    {
        unique_fd fresh = connect_tcp(pb, 20s);
        ASSERT_TRUE(fresh);
        set_timeouts(fresh.get(), 20s);
        EXPECT_TRUE(exchange(fresh.get(), 4096, 3));
        unique_fd added = connect_tcp(pc, 20s);
        ASSERT_TRUE(added);
        set_timeouts(added.get(), 20s);
        EXPECT_TRUE(exchange(added.get(), 4096, 4)) << "an added proxy serves";
    }
    EXPECT_TRUE(wait_refused(pd)) << "a removed proxy refuses new clients";

    EXPECT_TRUE(alive(b_before[0])) << "generation 1 of b lives while its connection is open";
    // Both long-lived connections finish their transfers after the reload.
    Transfer ta = send_and_receive(ca.get(), 8 << 20, 10);
    Transfer tb = send_and_receive(cb.get(), 8 << 20, 20);
    EXPECT_TRUE(ta.ok && ta.received == (8u << 20) && ta.sent_hash == ta.received_hash);
    EXPECT_TRUE(tb.ok && tb.received == (8u << 20) && tb.sent_hash == tb.received_hash);
    cb.reset();
    for (int i = 0; i < 500 && alive(b_before[0]); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(alive(b_before[0])) << "generation 1 of b exits once drained\n" << d.log();
    EXPECT_EQ(workers_of(d, "a"), a_before);
}

TEST_P(ReloadRelay, RemovedProxyDrainsItsOpenConnectionThenGoes) {
    const uint16_t pa = free_port(), pd = free_port();
    Daemon d(
        policy({tcp_proxy_json("a", pa, echo_port), tcp_proxy_json("d", pd, echo_port, engine())}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto d_workers = workers_of(d, "d");
    ASSERT_EQ(d_workers.size(), 1u);
    unique_fd c = connect_tcp(pd, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    converse_on(c.get(), d_workers[0]);
    ASSERT_TRUE(exchange(c.get(), 1000, 5));

    ASSERT_TRUE(d.rewrite_policy(policy({tcp_proxy_json("a", pa, echo_port)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("proxy \"d\" removed: refusing new connections")) << d.log();
    EXPECT_TRUE(wait_refused(pd));
    EXPECT_TRUE(exchange(c.get(), 100000, 6)) << "the open connection keeps working";
    EXPECT_TRUE(alive(d_workers[0]));
    c.reset();
    ASSERT_TRUE(d.wait_log("proxy \"d\" removed: its last connection is gone")) << d.log();
    EXPECT_FALSE(alive(d_workers[0]));
}

TEST_F(Reload, InvalidPolicyChangesNothingAndNamesLineAndColumn) {
    const uint16_t pa = free_port();
    Daemon d(policy({tcp_proxy_json("a", pa, echo_port)}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto before = workers_of(d, "a");
    unique_fd c = connect_tcp(pa, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(exchange(c.get(), 1000, 7));

    // Line 3, column 2: the unknown key.
    ASSERT_TRUE(
        d.rewrite_policy("{\"proxies\": [\n" + tcp_proxy_json("a", pa, echo_port) +
                         ",\n {\"nmae\": \"x\", \"listen\": \"tcp:127.0.0.1:1\", \"upstream\": "
                         "\"tcp:127.0.0.1:2\"}\n]}\n"));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("reload of " + d.policy_path() + " refused")) << d.log();
    EXPECT_TRUE(d.wait_log(d.policy_path() + ":3:3: /proxies/1/nmae: unknown key")) << d.log();
    EXPECT_TRUE(d.wait_log("still running policy generation 1")) << d.log();
    EXPECT_EQ(workers_of(d, "a"), before);
    EXPECT_TRUE(exchange(c.get(), 1000, 8));
    unique_fd c2 = connect_tcp(pa, 20s);
    ASSERT_TRUE(c2);
    set_timeouts(c2.get(), 20s);
    EXPECT_TRUE(exchange(c2.get(), 1000, 9));
}

TEST_F(Reload, AddedProxyOnAPrivilegedPortNamesTheMissingCapability) {
    const uint16_t pa = free_port();
    Daemon d(policy({tcp_proxy_json("a", pa, echo_port)}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto before = workers_of(d, "a");
    // Nothing listens on port 1 here; binding it needs CAP_NET_BIND_SERVICE, dropped at start.
    ASSERT_TRUE(d.rewrite_policy(
        policy({tcp_proxy_json("a", pa, echo_port), tcp_proxy_json("low", 1, echo_port)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("reload of " + d.policy_path() + " refused")) << d.log();
    EXPECT_TRUE(
        d.wait_log("proxy \"low\": cannot listen on tcp:127.0.0.1:1: bind: Permission "
                   "denied (a port below 1024 needs CAP_NET_BIND_SERVICE, which "
                   "pf-proxyd does not hold"))
        << d.log();
    EXPECT_EQ(workers_of(d, "a"), before);
}

TEST_F(Reload, RenamedProxyKeepsItsListener) {
    const uint16_t pa = free_port();
    Daemon d(policy({tcp_proxy_json("old", pa, echo_port)}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_TRUE(d.rewrite_policy(policy({tcp_proxy_json("new", pa, echo_port)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("0 unchanged, 0 changed, 1 added, 1 removed")) << d.log();
    ASSERT_TRUE(d.wait_log("all 1 proxies ready (policy generation 2)")) << d.log();
    for (int i = 0; i < 3; ++i) {
        unique_fd c = connect_tcp(pa, 20s);
        ASSERT_TRUE(c) << d.log();
        set_timeouts(c.get(), 20s);
        EXPECT_TRUE(exchange(c.get(), 1000, 11));
    }
}

TEST_P(ReloadRelay, SigtermClosesWhatRemainsAfterTheDrainTimeoutAndExitsZero) {
    const uint16_t pa = free_port();
    Daemon d(policy({tcp_proxy_json("a", pa, echo_port, engine())}, "500ms"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto w = workers_of(d, "a");
    ASSERT_EQ(w.size(), 1u);
    unique_fd c = connect_tcp(pa, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    converse_on(c.get(), w[0]);
    ASSERT_TRUE(exchange(c.get(), 1000, 12));
    d.signal(SIGTERM);
    int status = d.wait_exit(20s);
    ASSERT_TRUE(WIFEXITED(status)) << d.log();
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_TRUE(d.wait_log("drain timeout, closing 1 connection(s)")) << d.log();
    char b;
    EXPECT_EQ(::recv(c.get(), &b, 1, 0), 0) << "the client sees the connection end";
}

TEST_F(Reload, ReloadsInQuickSuccessionEndOnTheLastPolicyWithoutProtocolErrors) {
    const uint16_t pa = free_port();
    Daemon d(policy({tcp_proxy_json("a", pa, echo_port, ", \"workers\": 2")}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(pa, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(exchange(c.get(), 1000, 13));
    // Each reload changes the proxy; the next one comes before its workers can be READY.
    for (int i = 1; i <= 5; ++i) {
        ASSERT_TRUE(d.rewrite_policy(policy({tcp_proxy_json(
            "a", pa, echo_port,
            ", \"workers\": 2, \"idle_timeout\": \"" + std::to_string(i) + "m\"")})));
        d.signal(SIGHUP);
        ASSERT_TRUE(d.wait_log("(policy generation " + std::to_string(i + 1) + "):")) << d.log();
    }
    ASSERT_TRUE(d.wait_log("all 1 proxies ready (policy generation 6)")) << d.log();
    EXPECT_EQ(d.log().find("protocol violation"), std::string::npos) << d.log();
    // Generations 1-5 drain away; generation 6 serves, and the first connection still works.
    std::vector<pid_t> now;
    for (int i = 0; i < 500; ++i) {
        now = workers_of(d, "a");
        if (now.size() <= 3) break;  // generation 6 (2) + generation 1 holding the connection
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_LE(now.size(), 3u) << d.log();
    EXPECT_TRUE(exchange(c.get(), 1000, 14));
    unique_fd c2 = connect_tcp(pa, 20s);
    ASSERT_TRUE(c2);
    set_timeouts(c2.get(), 20s);
    EXPECT_TRUE(exchange(c2.get(), 1000, 15));
}

// Sends one control request per connection, all before reading any reply, so the supervisor
// handles them back to back (faster than a worker can start).
std::vector<std::string> control_burst(const Daemon& d, const std::vector<std::string>& requests) {
    std::vector<unique_fd> conns;
    for (const auto& r : requests) {
        unique_fd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", d.control_path().c_str());
        if (::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
        set_timeouts(c.get(), 20s);
        const std::string line = r + "\n";
        if (!write_all(c.get(), line.data(), line.size())) return {};
        conns.push_back(std::move(c));
    }
    std::vector<std::string> replies;
    for (auto& c : conns) {
        std::string out;
        read_to_eof(c.get(), out);
        replies.push_back(out);
    }
    return replies;
}

TEST_F(Reload, WorkersDrainedBeforeTheyWereReadyAreNotProtocolViolations) {
    const uint16_t pa = free_port();
    Daemon d(policy({tcp_proxy_json("a", pa, echo_port, ", \"workers\": 2")}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    // restart starts generation 2, stop drains it at once, start brings generation 3.
    auto replies = control_burst(
        d, {R"({"command":"restart","proxy":"a"})", R"({"command":"stop","proxy":"a"})",
            R"({"command":"start","proxy":"a"})"});
    ASSERT_EQ(replies.size(), 3u);
    for (const auto& r : replies) EXPECT_NE(r.find("\"ok\":true"), std::string::npos) << r;
    ASSERT_TRUE(d.wait_log("generation 3") && d.wait_log("proxy \"a\" started")) << d.log();
    std::vector<pid_t> now;
    for (int i = 0; i < 500; ++i) {
        now = workers_of(d, "a");
        if (now.size() == 2) break;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(now.size(), 2u) << d.log();
    EXPECT_EQ(d.log().find("protocol violation"), std::string::npos) << d.log();
    unique_fd c = connect_tcp(pa, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    EXPECT_TRUE(exchange(c.get(), 1000, 16));
}

}  // namespace
