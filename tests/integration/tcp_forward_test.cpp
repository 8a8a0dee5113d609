// The real pf-proxyd and pf-proxy-worker relaying TCP on loopback.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <cstring>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "tests/support/require.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

std::string policy(uint16_t listen, uint16_t upstream, const std::string& extra = "",
                   const std::string& top = "\"user\": \"nobody\", ") {
    return "{" + top + "\"drain_timeout\": \"10s\", \"proxies\": [{\"name\": \"web\", " +
           "\"listen\": \"tcp:127.0.0.1:" + std::to_string(listen) +
           "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream) + "\"" + extra + "}]}";
}

// Accepts connections forever (until stopped) and runs `handle` on each in its own thread.
class Server {
  public:
    template <class F>
    Server(uint16_t port, F handle) : listener_(listen_tcp(port)) {
        thread_ = std::thread([this, handle] {
            for (;;) {
                pollfd p{listener_.get(), POLLIN, 0};
                if (::poll(&p, 1, 50) <= 0) {
                    if (stop_) return;
                    continue;
                }
                int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) continue;
                ++accepted_;
                workers_.emplace_back([handle, fd] {
                    unique_fd c(fd);
                    set_timeouts(c.get(), 30s);
                    handle(c.get());
                });
            }
        });
    }
    ~Server() {
        stop_ = true;
        thread_.join();
        for (auto& t : workers_) t.join();
    }
    int accepted() const { return accepted_; }

  private:
    unique_fd listener_;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::thread thread_;
    std::vector<std::thread> workers_;
};

void echo(int fd) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        if (!write_all(fd, buf, static_cast<size_t>(n))) return;
    }
}

// One exchange through the proxy: send a line, expect it back.
bool ping(uint16_t port, const std::string& msg = "ping\n") {
    unique_fd c = connect_tcp(port);
    if (!c) return false;
    if (!write_all(c.get(), msg.data(), msg.size())) return false;
    std::string back(msg.size(), '\0');
    return read_exact(c.get(), back.data(), back.size()) && back == msg;
}

class TcpForward : public ::testing::Test {
  protected:
    void SetUp() override {
        raise_nofile(16384);
        listen_port = free_port();
        upstream_port = free_port();
    }
    uint16_t listen_port = 0, upstream_port = 0;
};

// The relay behaviours, under each engine (docs/architecture.md): the event loop, and thread
// pairs (`"relay": "threads"`). The policy text the engine adds comes from the parameter.
class TcpForwardRelay : public TcpForward, public ::testing::WithParamInterface<const char*> {
  protected:
    static std::string engine() { return GetParam(); }
};

// After converse() on one connection: the engine under test serves it. With threads the worker
// runs its loop thread and the connection's pair; with events its loop thread only.
void expect_engine(const Daemon& d, const std::string& extra) {
    const auto w = d.workers();
    ASSERT_EQ(w.size(), 1u);
    const size_t want = extra.find("threads") != std::string::npos ? 3 : 1;
    EXPECT_TRUE(wait_thread_count(w[0], want)) << thread_count(w[0]) << " threads, not " << want;
}

INSTANTIATE_TEST_SUITE_P(Engine, TcpForwardRelay,
                         testing::Values("", R"(, "relay": "threads", "relay_threads": 64)"),
                         [](const testing::TestParamInfo<const char*>& p) {
                             return std::string(p.param).empty() ? "events" : "threads";
                         });

void bulk_both_ways(uint16_t listen_port, uint16_t upstream_port, size_t total,
                    const std::string& extra) {
    std::atomic<uint64_t> server_sent{0}, server_received{0};
    std::atomic<size_t> server_count{0};
    Server server(upstream_port, [&](int fd) {
        if (!answer_converse(fd)) return;
        Transfer t = send_and_receive(fd, total, 1000);
        server_sent = t.sent_hash;
        server_received = t.received_hash;
        server_count = t.received;
    });
    Daemon d(policy(listen_port, upstream_port, extra));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(listen_port, 60s);
    ASSERT_TRUE(c);
    ASSERT_TRUE(converse(c.get()));
    expect_engine(d, extra);
    Transfer t = send_and_receive(c.get(), total, 7);
    c.reset();
    ASSERT_TRUE(t.ok);
    EXPECT_EQ(t.received, total);
    for (int i = 0; i < 500 && server_count != total; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(server_count.load(), total);
    EXPECT_EQ(server_received.load(), t.sent_hash) << "client -> upstream corrupted";
    EXPECT_EQ(t.received_hash, server_sent.load()) << "upstream -> client corrupted";
}

TEST_P(TcpForwardRelay, Moves256MiBEachWayIntactWithSplice) {
    bulk_both_ways(listen_port, upstream_port, 256u << 20, engine());
}

TEST_F(TcpForward, Moves64MiBEachWayIntactInCopyMode) {
    bulk_both_ways(listen_port, upstream_port, 64u << 20, ", \"splice\": false");
}

TEST_P(TcpForwardRelay, HalfCloseReachesUpstreamAndReplyStillFlows) {
    // The server answers only after it has seen EOF: a relay that closes both directions on
    // the first FIN loses the reply.
    Server server(upstream_port, [](int fd) {
        std::string got;
        if (!answer_converse(fd) || !read_to_eof(fd, got)) return;
        std::string reply = "got " + std::to_string(got.size()) + " bytes: " + got;
        reply += std::string(3 << 20, 'r');  // big enough to need several rounds
        write_all(fd, reply.data(), reply.size());
    });
    Daemon d(policy(listen_port, upstream_port, engine()));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(converse(c.get()));
    expect_engine(d, engine());
    ASSERT_TRUE(write_all(c.get(), "hello", 5));
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    std::string reply;
    ASSERT_TRUE(read_to_eof(c.get(), reply));
    EXPECT_EQ(reply.substr(0, 20), "got 5 bytes: hellorr");
    EXPECT_EQ(reply.size(), 18u + (3u << 20));
}

TEST_P(TcpForwardRelay, Serves1000ConcurrentConnections) {
    constexpr int kConns = 1000;
    // One poll()-driven echo server: 1000 threads would measure the test, not the proxy.
    unique_fd ls = listen_tcp(upstream_port, 4096);
    ASSERT_EQ(::fcntl(ls.get(), F_SETFL, O_NONBLOCK), 0);  // the accept loop drains to EAGAIN
    std::atomic<bool> stop{false};
    std::thread server([&] {
        std::vector<pollfd> fds{{ls.get(), POLLIN, 0}};
        std::vector<unique_fd> owned;
        while (!stop) {
            if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
            for (size_t i = 1; i < fds.size(); ++i) {
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                char buf[256];
                ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0)
                    write_all(fds[i].fd, buf, static_cast<size_t>(n));
                else if (n == 0 || errno != EAGAIN)
                    fds[i].fd = -1;  // ignored by poll from now on
            }
            if (fds[0].revents & POLLIN) {
                int fd;
                while ((fd = ::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >=
                       0) {
                    owned.emplace_back(fd);
                    fds.push_back({fd, POLLIN, 0});
                }
            }
        }
    });
    Daemon d(policy(listen_port, upstream_port, engine()));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::vector<unique_fd> clients;
    for (int i = 0; i < kConns; ++i) {
        unique_fd c = connect_tcp(listen_port, 30s);
        ASSERT_TRUE(c) << "connection " << i;
        clients.push_back(std::move(c));
    }
    // All 1000 are open at once; each now exchanges a message unique to it, twice: with threads
    // the second makes the first 64 (the bound) conversations, which move to thread pairs.
    for (int round = 0; round < 2; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        int ok = 0;
        for (int i = 0; i < kConns; ++i) {
            std::string msg = "conn-" + std::to_string(i) + "." + std::to_string(round) + "\n";
            if (!write_all(clients[i].get(), msg.data(), msg.size())) continue;
        }
        for (int i = 0; i < kConns; ++i) {
            std::string msg = "conn-" + std::to_string(i) + "." + std::to_string(round) + "\n";
            std::string back(msg.size(), '\0');
            if (read_exact(clients[i].get(), back.data(), back.size()) && back == msg) ++ok;
        }
        EXPECT_EQ(ok, kConns);
    }
    if (!engine().empty()) {
        const auto w = d.workers();
        ASSERT_EQ(w.size(), 1u);
        EXPECT_EQ(thread_count(w[0]), 1u + 2 * 64) << "the loop thread and 64 pairs";
        EXPECT_TRUE(d.wait_log("relay_threads bound (64 connections) reached")) << d.log();
    }
    clients.clear();
    stop = true;
    server.join();
}

TEST_F(TcpForward, WorkerIsSandboxedAndHoldsOnlyItsFds) {
    Server server(upstream_port, echo);
    Daemon d(policy(listen_port, upstream_port));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_TRUE(ping(listen_port));
    auto workers = d.workers();
    ASSERT_EQ(workers.size(), 1u);
    pid_t w = workers[0];
    EXPECT_EQ(status_field(w, "CapEff"), "0000000000000000");
    EXPECT_EQ(status_field(w, "CapPrm"), "0000000000000000");
    EXPECT_EQ(status_field(w, "CapAmb"), "0000000000000000");
    EXPECT_EQ(status_field(w, "NoNewPrivs"), "1");
    EXPECT_EQ(status_field(w, "Seccomp"), "2");
    EXPECT_EQ(status_field(w, "Uid").substr(0, 5), "65534");
    // The supervisor dropped to the policy user and holds no capability at all.
    EXPECT_EQ(status_field(d.pid(), "Uid").substr(0, 5), "65534");
    EXPECT_EQ(status_field(d.pid(), "CapEff"), "0000000000000000");
    EXPECT_EQ(status_field(d.pid(), "CapPrm"), "0000000000000000");
    // fds: stdio, control socket (3), the listener, epoll, signalfd; nothing inherited. The
    // worker may still be closing the finished ping connection: give it a moment.
    std::vector<std::string> fds;
    for (int i = 0; i < 100; ++i) {
        fds = fd_targets(w);
        auto n = std::count_if(fds.begin(), fds.end(), [](const std::string& f) {
            return f.find("socket:") != std::string::npos;
        });
        if (n <= 2) break;
        std::this_thread::sleep_for(20ms);
    }
    int sockets = 0, others = 0, pipes = 0;
    for (const auto& f : fds) {
        if (f.rfind("0 ", 0) == 0 || f.rfind("1 ", 0) == 0 || f.rfind("2 ", 0) == 0) continue;
        if (f.find("socket:") != std::string::npos)
            ++sockets;
        else if (f.find("anon_inode:[eventpoll]") != std::string::npos ||
                 f.find("anon_inode:[signalfd]") != std::string::npos)
            ++others;
        else if (f.find("pipe:") != std::string::npos)
            ++pipes;  // the splice pipe pool: made by the worker itself, kept for reuse
        else
            ADD_FAILURE() << "unexpected fd in worker: " << f;
    }
    EXPECT_EQ(sockets, 2) << "control socket + listener";
    EXPECT_EQ(others, 2) << "epoll + signalfd";
    EXPECT_EQ(pipes % 2, 0);
    EXPECT_LE(pipes, 4) << "one finished connection leaves at most one pipe per direction";
}

TEST_P(TcpForwardRelay, RestartedWorkerServesConnectionsMadeDuringTheRestart) {
    Server server(upstream_port, echo);
    Daemon d(policy(listen_port, upstream_port, engine()));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto before = d.wait_workers(1);
    ASSERT_EQ(before.size(), 1u);

    // A client keeps connecting the whole time.
    std::atomic<bool> stop{false};
    std::atomic<int> refused{0}, done{0};
    std::thread client([&] {
        while (!stop) {
            unique_fd c;
            int err = try_connect_tcp(listen_port, c);
            if (err == ECONNREFUSED) ++refused;
            if (err != 0) continue;
            set_timeouts(c.get(), 20s);
            write_all(c.get(), "x", 1);
            char b;
            if (read_exact(c.get(), &b, 1)) ++done;
        }
    });
    ASSERT_TRUE(wait_until([&] { return done > 0; })) << "the client loop never got an answer";
    ASSERT_EQ(::kill(before[0], SIGKILL), 0);
    // Connections made while no worker exists wait in the listener's backlog.
    std::vector<unique_fd> during;
    for (int i = 0; i < 20; ++i) {
        unique_fd c;
        ASSERT_EQ(try_connect_tcp(listen_port, c), 0) << "connect " << i << " during restart";
        during.push_back(std::move(c));
    }
    auto after = d.wait_workers(1, before);
    ASSERT_EQ(after.size(), 1u);
    EXPECT_NE(after[0], before[0]);
    for (auto& c : during) {
        set_timeouts(c.get(), 20s);
        ASSERT_TRUE(write_all(c.get(), "y", 1));
        char b = 0;
        ASSERT_TRUE(read_exact(c.get(), &b, 1));
        EXPECT_EQ(b, 'y');
    }
    const int done_at_restart = done;
    EXPECT_TRUE(wait_until([&] { return done > done_at_restart; }))
        << "the loop kept working after the restart";
    stop = true;
    client.join();
    EXPECT_EQ(refused.load(), 0);
    EXPECT_TRUE(d.wait_log("killed by signal SIGKILL")) << d.log();
    EXPECT_TRUE(d.wait_log("restarting in 100 ms")) << d.log();
}

TEST_F(TcpForward, WorkerKilledBySigsysIsNamedAsSeccompViolation) {
    Server server(upstream_port, echo);
    Daemon d(policy(listen_port, upstream_port));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto w = d.wait_workers(1);
    ASSERT_EQ(w.size(), 1u);
    ::kill(w[0], SIGSYS);
    EXPECT_TRUE(d.wait_log("killed by signal SIGSYS (seccomp violation)")) << d.log();
    auto again = d.wait_workers(1, w);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_TRUE(ping(listen_port));
}

TEST_F(TcpForward, CrashLoopMarksOnlyThatProxyFailed) {
    Server server(upstream_port, echo);
    uint16_t other_port = free_port();
    std::string pol =
        "{\"user\": \"nobody\", \"proxies\": ["
        "{\"name\": \"flaky\", \"listen\": \"tcp:127.0.0.1:" +
        std::to_string(listen_port) +
        "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream_port) +
        "\", \"restart\": {\"backoff_initial\": \"10ms\", \"max_failures\": 3}},"
        "{\"name\": \"steady\", \"listen\": \"tcp:127.0.0.1:" +
        std::to_string(other_port) +
        "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream_port) + "\"}]}";
    Daemon d(pol);
    ASSERT_TRUE(d.wait_ready()) << d.log();
    // Kill the flaky proxy's worker every time it comes back: four consecutive failures.
    for (int i = 0; i < 4; ++i) {
        pid_t victim = -1;
        for (int t = 0; t < 500 && victim < 0; ++t) {
            std::istringstream log(d.log());
            const std::string prefix = "proxy \"flaky\" worker 0 (pid ";
            pid_t p = -1;
            for (std::string line; std::getline(log, line);) {
                auto pos = line.find(prefix);
                if (pos != std::string::npos && line.find(") started") != std::string::npos)
                    p = std::stoi(line.substr(pos + prefix.size()));
            }
            // Kill it only once it is sandboxed and serving, so each kill is a real failure.
            if (p > 0 && ::kill(p, 0) == 0 && status_field(p, "Seccomp") == "2") victim = p;
            if (victim < 0) std::this_thread::sleep_for(10ms);
        }
        ASSERT_GT(victim, 0) << d.log();
        ::kill(victim, SIGKILL);
        ASSERT_TRUE(d.wait_log("killed by signal SIGKILL", 10s, i + 1)) << d.log();
    }
    ASSERT_TRUE(d.wait_log("proxy \"flaky\" failed: crash loop: 4 consecutive failures"))
        << d.log();
    unique_fd c;
    EXPECT_EQ(try_connect_tcp(listen_port, c), ECONNREFUSED) << "failed proxy must refuse";
    EXPECT_TRUE(ping(other_port)) << "the other proxy keeps running";
}

TEST_P(TcpForwardRelay, SigtermDrainsOpenConnectionsThenExitsZero) {
    Server server(upstream_port, echo);
    Daemon d(policy(listen_port, upstream_port, engine()));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(converse(c.get()));
    expect_engine(d, engine());
    char b;
    d.signal(SIGTERM);
    ASSERT_TRUE(d.wait_log("draining")) << d.log();
    // New clients are refused once every copy of the listener is closed...
    EXPECT_TRUE(wait_refused(listen_port));
    // ...while the open connection keeps working until the client ends it.
    ASSERT_TRUE(write_all(c.get(), "b", 1));
    ASSERT_TRUE(read_exact(c.get(), &b, 1));
    EXPECT_EQ(b, 'b');
    EXPECT_EQ(d.wait_exit(1s), -1) << "must wait for the open connection";
    c.reset();
    int status = d.wait_exit(20s);
    ASSERT_TRUE(WIFEXITED(status)) << d.log();
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Ctrl-C in a terminal signals pf-proxyd and its workers together: the workers drain on their
// own signal, possibly before reading the supervisor's DRAIN, and that is a clean stop, not a
// channel fault to kill anyone for.
TEST_F(TcpForward, SignalToTheWholeProcessGroupIsACleanStop) {
    Server server(upstream_port, echo);
    Daemon d(policy(listen_port, upstream_port, ", \"workers\": 2"), {}, 0,
             [] { ::setpgid(0, 0); });
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_EQ(d.wait_workers(2).size(), 2u);
    ASSERT_EQ(::killpg(d.pid(), SIGINT), 0);
    const int status = d.wait_exit(20s);
    ASSERT_TRUE(WIFEXITED(status)) << d.log();
    EXPECT_EQ(WEXITSTATUS(status), 0) << d.log();
    EXPECT_EQ(d.log().find("killing it"), std::string::npos) << d.log();
    EXPECT_EQ(d.log().find(" error: "), std::string::npos) << d.log();
}

TEST_F(TcpForward, TwoWorkersShareTheListener) {
    Server server(upstream_port, echo);
    Daemon d(policy(listen_port, upstream_port, ", \"workers\": 2"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto w = d.wait_workers(2);
    ASSERT_EQ(w.size(), 2u);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(ping(listen_port)) << i;
    // Either worker alone serves every client: stop one (it accepts nothing while stopped, and
    // the supervisor sees no exit to restart), then the other.
    auto stopped = [](pid_t pid) { return status_field(pid, "State").starts_with("T"); };
    for (size_t alone = 0; alone < 2; ++alone) {
        const pid_t idle = w[1 - alone];
        SCOPED_TRACE("only worker " + std::to_string(w[alone]) + " running");
        ASSERT_EQ(::kill(idle, SIGSTOP), 0);
        ASSERT_TRUE(wait_until([&] { return stopped(idle); })) << status_field(idle, "State");
        for (int i = 0; i < 20; ++i) ASSERT_TRUE(ping(listen_port)) << i << "\n" << d.log();
        EXPECT_TRUE(stopped(idle)) << "the stopped worker cannot have served them";
        ASSERT_EQ(::kill(idle, SIGCONT), 0);
        ASSERT_TRUE(wait_until([&] { return !stopped(idle); }));
    }
    EXPECT_EQ(d.workers(), w) << "no worker was restarted";
}

TEST_F(TcpForward, SurvivesEmfileAndServesQueuedClientsAfterwards) {
    Server server(upstream_port, echo);
    // pf-proxyd and its worker start with at most 40 fds: about 15 relayed connections.
    Daemon d(policy(listen_port, upstream_port), {}, 40);
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto w = d.wait_workers(1);
    ASSERT_EQ(w.size(), 1u);
    std::vector<unique_fd> clients;
    for (int i = 0; i < 40; ++i) {
        unique_fd c = connect_tcp(listen_port, 20s);
        ASSERT_TRUE(c) << i;
        ASSERT_TRUE(write_all(c.get(), "q", 1));
        clients.push_back(std::move(c));
    }
    ASSERT_TRUE(d.wait_log("Too many open files; pausing accept")) << d.log();
    EXPECT_EQ(::kill(w[0], 0), 0) << "worker must survive EMFILE" << d.log();
    // Each answered client hangs up, freeing fds; the worker resumes accepting the rest.
    int answered = 0;
    for (auto& c : clients) {
        char b = 0;
        if (read_exact(c.get(), &b, 1) && b == 'q') ++answered;
        c.reset();
    }
    EXPECT_EQ(answered, 40) << d.log();
    EXPECT_EQ(d.workers(), w) << "the same worker served them all";
}

TEST_F(TcpForward, PrivilegedPortOpenedThenEveryCapabilityDropped) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root (to bind a port below 1024)");
    Server server(upstream_port, echo);
    uint16_t low = 0;
    for (uint16_t p = 1000; p > 900 && low == 0; --p) {
        unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(p);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) low = p;
    }
    ASSERT_NE(low, 0);
    Daemon d(policy(low, upstream_port));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_TRUE(ping(low));
    EXPECT_EQ(status_field(d.pid(), "CapPrm"), "0000000000000000");
    EXPECT_EQ(status_field(d.pid(), "CapEff"), "0000000000000000");
    EXPECT_EQ(status_field(d.pid(), "Uid").substr(0, 5), "65534");
}

TEST_F(TcpForward, UnreachableUpstreamClosesTheClientAndIsLogged) {
    Daemon d(policy(listen_port, upstream_port));  // nothing listens on upstream_port
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(listen_port, 10s);
    ASSERT_TRUE(c);
    std::string got;
    // Closed (FIN or RST) by the proxy, not left hanging until our 10 s SO_RCVTIMEO.
    const std::string end = read_until_end(c.get(), got);
    EXPECT_TRUE(end == "eof" || end == "reset") << end;
    EXPECT_TRUE(got.empty());
    EXPECT_TRUE(d.wait_log("connect failed to tcp:127.0.0.1:" + std::to_string(upstream_port) +
                           ": Connection refused"))
        << d.log();
    EXPECT_EQ(d.workers().size(), 1u);
}

TEST_P(TcpForwardRelay, IdleTimeoutClosesSilentConnections) {
    Server server(upstream_port, echo);
    Daemon d(policy(listen_port, upstream_port, engine() + ", \"idle_timeout\": \"300ms\""));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(converse(c.get()));
    expect_engine(d, engine());
    std::string rest;
    EXPECT_TRUE(read_to_eof(c.get(), rest)) << "closed by the proxy, before our 20 s timeout";
    EXPECT_TRUE(rest.empty());
}

TEST(PfProxydCli, InvalidPolicyStartsNothingAndNamesLineAndColumn) {
    TempDir dir;
    std::string path =
        dir.write("bad.json",
                  "{\n  \"proxies\": [\n    {\"name\": \"web\", \"listen\": "
                  "\"tcp:127.0.0.1:8080\", \"upstrem\": \"tcp:127.0.0.1:9\"}\n  ]\n}\n");
    auto r = run_command({bin_dir() + "/pf-proxyd", "--policy", path});
    ASSERT_TRUE(WIFEXITED(r.status));
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_NE(r.output.find(path + ":3:"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("did you mean \"upstream\"?"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("started"), std::string::npos) << "nothing may start";
    auto check = run_command({bin_dir() + "/pf-proxyd", "--check", "--policy", path});
    EXPECT_EQ(WEXITSTATUS(check.status), 1);
    EXPECT_EQ(check.output, r.output);
}

TEST(PfProxydCli, CheckAcceptsTheShippedExamplePolicy) {
    auto r = run_command({bin_dir() + "/pf-proxyd", "--check", "--policy",
                          std::string(PFPROXY_SOURCE_DIR) + "/examples/loopback.json"});
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output, "");
}

TEST(PfProxydCli, BadOptionIsOneLineAndExitOne) {
    auto r = run_command({bin_dir() + "/pf-proxyd", "--frobnicate"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

}  // namespace

namespace {

TEST_F(TcpForward, Ipv6ListenerRelaysToIpv4Upstream) {
    Server server(upstream_port, echo);
    std::string pol =
        "{\"user\": \"nobody\", \"proxies\": [{\"name\": \"v6\", \"listen\": "
        "\"tcp:[::1]:" +
        std::to_string(listen_port) +
        "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream_port) + "\"}]}";
    Daemon d(pol);
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(listen_port);
    a.sin6_addr = in6addr_loopback;
    set_timeouts(c.get(), 10s);
    ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_TRUE(write_all(c.get(), "six", 3));
    char back[3];
    ASSERT_TRUE(read_exact(c.get(), back, 3));
    EXPECT_EQ(std::string(back, 3), "six");
}

}  // namespace
