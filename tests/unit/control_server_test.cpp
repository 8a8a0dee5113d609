// The control socket and the metrics endpoint, for real: sockets in a temporary directory and on
// loopback, an EventLoop on its own thread, the kernel's peer credentials (clients that must be
// refused are forked and switch to uid 65534). Only the supervisor behind them is a test double.
#include "supervisor/control_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/control_protocol.hpp"
#include "common/endpoint.hpp"
#include "common/event_loop.hpp"
#include "supervisor/metrics_server.hpp"
#include "supervisor/status.hpp"
#include "tests/support/require.hpp"

namespace pfp::supervisor {
namespace {

using namespace std::chrono_literals;
using control::Response;

constexpr uid_t kNobody = 65534;

// ---- Test doubles and helpers -------------------------------------------------------------------

class FakeHandler : public ControlHandler {
  public:
    DaemonStatus status() override {
        record("status");
        std::lock_guard lock(mutex_);
        return status_;
    }
    CommandOutcome reload() override {
        record("reload");
        std::lock_guard lock(mutex_);
        return reload_outcome_;
    }
    CommandOutcome restart_proxy(const std::string& name) override {
        return named("restart", name);
    }
    CommandOutcome stop_proxy(const std::string& name) override { return named("stop", name); }
    CommandOutcome start_proxy(const std::string& name) override { return named("start", name); }

    void set_status(DaemonStatus s) {
        std::lock_guard lock(mutex_);
        status_ = std::move(s);
    }
    void set_reload_outcome(CommandOutcome o) {
        std::lock_guard lock(mutex_);
        reload_outcome_ = std::move(o);
    }
    std::vector<std::string> calls() {
        std::lock_guard lock(mutex_);
        return calls_;
    }

  private:
    void record(std::string call) {
        std::lock_guard lock(mutex_);
        calls_.push_back(std::move(call));
    }
    CommandOutcome named(const std::string& what, const std::string& name) {
        record(what + " " + name);
        if (name == "missing") return {false, "no proxy named \"missing\"", {}};
        return {true, what + " of proxy \"" + name + "\" done", {}};
    }

    std::mutex mutex_;
    DaemonStatus status_;
    CommandOutcome reload_outcome_{true, "policy reloaded (generation 2)", {}};
    std::vector<std::string> calls_;
};

DaemonStatus small_status() {
    DaemonStatus s;
    s.version = "0.1.0";
    s.pid = 77;
    s.policy = "/etc/pf-proxy/policy.json";
    s.state = "running";
    s.uptime_seconds = 12.5;
    ProxyStatus p;
    p.name = "web";
    p.kind = "tcp-forward";
    p.listen = "tcp:127.0.0.1:8080";
    p.upstream = "tcp:127.0.0.1:9000";
    p.state = "running";
    p.workers = {{1234, 0, 1, "running"}};
    p.counters.accepted = 5;
    s.proxies = {p};
    return s;
}

// A status whose JSON (2 MB) is far larger than a socket buffer, so that its reply needs many
// writes; few and long strings keep it cheap to build, also under the sanitizers.
DaemonStatus big_status() {
    DaemonStatus s = small_status();
    ProxyStatus p = s.proxies[0];
    p.last_exit = std::string(100'000, 'x');
    s.proxies.assign(20, p);
    return s;
}

// The loop on its own thread, ticking the servers as the supervisor does.
class LoopThread {
  public:
    using Tick = std::function<std::optional<Clock::time_point>(Clock::time_point)>;
    EventLoop loop;

    void start(Tick tick) {
        thread_ = std::thread([this, tick = std::move(tick)] {
            loop.run([this] { return stop_.load(); },
                     [&](Clock::time_point now) -> std::optional<Clock::time_point> {
                         // Wake up now and then to notice stop_.
                         const auto cap = now + 20ms;
                         const auto next = tick(now);
                         return next && *next < cap ? *next : cap;
                     });
        });
    }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    ~LoopThread() { stop(); }

  private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

unique_fd connect_unix(const std::string& path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
    return fd;
}

bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// Everything until EOF, or what came before the timeout ("<timeout>" appended) or an error.
std::string read_all(int fd, std::chrono::milliseconds timeout = 3s) {
    std::string out;
    const auto deadline = Clock::now() + timeout;
    char buf[65536];
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p{fd, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0)
            return out + "<timeout>";
        const ssize_t n = ::read(fd, buf, sizeof buf);  // sockets and the child's pipe
        if (n < 0) return out + "<" + std::strerror(errno) + ">";
        if (n == 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

// The raw reply to `request` from a client of the caller's own uid.
std::string ask(const std::string& path, std::string_view request,
                std::chrono::milliseconds timeout = 3s) {
    unique_fd fd = connect_unix(path);
    if (!fd) return std::string("<connect: ") + std::strerror(errno) + ">";
    if (!send_all(fd.get(), request)) return "<send failed>";
    return read_all(fd.get(), timeout);
}

// The raw reply to `request` from a forked client that first drops to uid/gid with exactly
// `groups` as its supplementary groups. Only system calls in the child: the parent has threads.
std::string ask_as(uid_t uid, gid_t gid, const std::vector<gid_t>& groups, const std::string& path,
                   std::string_view request) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) < 0) return "<pipe>";
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(pipefd[0]);
        if (::setgroups(groups.size(), groups.data()) < 0 || ::setresgid(gid, gid, gid) < 0 ||
            ::setresuid(uid, uid, uid) < 0)
            ::_exit(2);
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) ::_exit(3);
        if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(request.size()))
            ::_exit(4);
        char buf[4096];
        ssize_t n;
        while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
            if (::write(pipefd[1], buf, static_cast<size_t>(n)) != n) ::_exit(5);
        ::_exit(n == 0 ? 0 : 6);
    }
    ::close(pipefd[1]);
    unique_fd from_child(pipefd[0]);
    std::string out = read_all(from_child.get(), 5s);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        out += "<child exit " + std::to_string(WEXITSTATUS(status)) + ">";
    return out;
}

std::string denied(uid_t uid) {
    return "{\"ok\":false,\"error\":\"permission denied: uid " + std::to_string(uid) +
           " is not allowed to use the control socket\",\"errors\":[]}\n";
}

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/control_server_test.XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
        path_ = tmpl;
        ::chmod(path_.c_str(), 0755);  // the uid-65534 clients must reach the socket
    }
    ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// ---- The control socket -------------------------------------------------------------------------

class ControlServerTest : public testing::Test {
  protected:
    void SetUp() override {
        PFP_REQUIRE(::geteuid() == 0 ? "" : "root (clients switch uid)");
        path_ = dir_.path() + "/control.sock";
        handler_.set_status(small_status());
    }
    void TearDown() override {
        loop_.stop();
        server_.reset();
    }
    void start(AccessRule rule = {}, RequestServer::Limits limits = ControlServer::kLimits) {
        SocketFileAccess access;
        access.mode = 0666;  // the file lets anyone connect: the peer check is what is tested
        server_ = std::make_unique<ControlServer>(loop_.loop, open_control_socket(path_, access),
                                                  handler_, std::move(rule), limits);
        loop_.start([this](Clock::time_point now) { return server_->tick(now); });
    }

    TempDir dir_;
    std::string path_;
    FakeHandler handler_;
    LoopThread loop_;
    std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, StatusForRoot) {
    start();
    const std::string reply = ask(path_, "{\"command\":\"status\"}\n");
    Response r = control::parse_response(reply);
    EXPECT_TRUE(r.ok) << reply;
    EXPECT_EQ(r.message, "pf-proxyd is running");
    ASSERT_TRUE(r.status);
    EXPECT_EQ(status_from_json(*r.status), small_status());
    EXPECT_EQ(handler_.calls(), std::vector<std::string>{"status"});
}

TEST_F(ControlServerTest, CommandsReachTheHandler) {
    start();
    EXPECT_EQ(ask(path_, "{\"command\":\"reload\"}\n"),
              "{\"ok\":true,\"message\":\"policy reloaded (generation 2)\"}\n");
    EXPECT_EQ(ask(path_, "{\"command\":\"restart\",\"proxy\":\"web\"}\n"),
              "{\"ok\":true,\"message\":\"restart of proxy \\\"web\\\" done\"}\n");
    EXPECT_EQ(ask(path_, "{\"command\":\"stop\",\"proxy\":\"web\"}\n"),
              "{\"ok\":true,\"message\":\"stop of proxy \\\"web\\\" done\"}\n");
    EXPECT_EQ(ask(path_, "{\"command\":\"start\",\"proxy\":\"missing\"}\n"),
              "{\"ok\":false,\"error\":\"no proxy named \\\"missing\\\"\",\"errors\":[]}\n");
    EXPECT_EQ(handler_.calls(),
              (std::vector<std::string>{"reload", "restart web", "stop web", "start missing"}));
}

TEST_F(ControlServerTest, RefusedReloadCarriesEveryError) {
    handler_.set_reload_outcome({false,
                                 "reload refused: the policy has 2 errors; nothing changed",
                                 {"p.json:3:7: /proxies/0/workers: expected an integer 1-64, got 0",
                                  "p.json:9:3: /colour: unknown key \"colour\""}});
    start();
    const Response r = control::parse_response(ask(path_, "{\"command\":\"reload\"}\n"));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "reload refused: the policy has 2 errors; nothing changed");
    EXPECT_EQ(r.errors.size(), 2u);
    EXPECT_EQ(r.errors[1], "p.json:9:3: /colour: unknown key \"colour\"");
}

TEST_F(ControlServerTest, BadRequests) {
    start();
    EXPECT_EQ(ask(path_, "{\"command\":\"explode\"}\n"),
              "{\"ok\":false,\"error\":\"bad request: unknown command \\\"explode\\\" (expected "
              "status, reload, restart, stop or start)\",\"errors\":[]}\n");
    EXPECT_EQ(ask(path_, "nonsense\n"),
              "{\"ok\":false,\"error\":\"bad request: the request is not valid JSON (error at "
              "byte 2)\",\"errors\":[]}\n");
    EXPECT_TRUE(handler_.calls().empty());
}

TEST_F(ControlServerTest, OversizeRequestIsRejected) {
    start();
    // The server reads 4 KiB, answers, and reads and drops the rest until the client closes.
    EXPECT_EQ(ask(path_, std::string(60'000, 'x')),
              "{\"ok\":false,\"error\":\"bad request: request too long: more than 4096 "
              "bytes\",\"errors\":[]}\n");
    EXPECT_TRUE(handler_.calls().empty());
}

TEST_F(ControlServerTest, RequestEndedByEofInsteadOfNewline) {
    start();
    unique_fd fd = connect_unix(path_);
    ASSERT_TRUE(send_all(fd.get(), "{\"command\":\"status\"}"));
    ::shutdown(fd.get(), SHUT_WR);
    EXPECT_TRUE(control::parse_response(read_all(fd.get())).ok);
}

TEST_F(ControlServerTest, ClientThatSaysNothingIsClosed) {
    start();
    unique_fd fd = connect_unix(path_);
    ::shutdown(fd.get(), SHUT_WR);
    EXPECT_EQ(read_all(fd.get()), "");
}

TEST_F(ControlServerTest, NobodyIsRefused) {
    start();
    EXPECT_EQ(ask_as(kNobody, kNobody, {}, path_, "{\"command\":\"status\"}\n"), denied(kNobody));
    EXPECT_EQ(ask_as(kNobody, kNobody, {}, path_, "{\"command\":\"reload\"}\n"), denied(kNobody));
    EXPECT_TRUE(handler_.calls().empty());
}

TEST_F(ControlServerTest, ListedUidIsAllowed) {
    start(AccessRule{{1000, kNobody}, {}});
    const std::string reply = ask_as(kNobody, kNobody, {}, path_, "{\"command\":\"status\"}\n");
    EXPECT_TRUE(control::parse_response(reply).ok) << reply;
    EXPECT_EQ(ask_as(kNobody - 1, kNobody, {}, path_, "{\"command\":\"status\"}\n"),
              denied(kNobody - 1));
}

TEST_F(ControlServerTest, ListedGroupIsAllowed) {
    constexpr gid_t kControl = 54321;
    start(AccessRule{{}, {kControl}});
    // A supplementary group (SO_PEERGROUPS) ...
    std::string reply =
        ask_as(kNobody, kNobody, {100, kControl}, path_, "{\"command\":\"status\"}\n");
    EXPECT_TRUE(control::parse_response(reply).ok) << reply;
    // ... or the primary group (SO_PEERCRED).
    reply = ask_as(kNobody, kControl, {}, path_, "{\"command\":\"status\"}\n");
    EXPECT_TRUE(control::parse_response(reply).ok) << reply;
    EXPECT_EQ(ask_as(kNobody, kNobody, {100}, path_, "{\"command\":\"status\"}\n"),
              denied(kNobody));
}

// No data and no hangup waiting on a client socket: the server has neither answered nor dropped it.
bool still_open(int fd) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 0;
}

// Sixteen clients that connect and say nothing cannot keep a newcomer out: each newcomer takes the
// slot of the oldest idle one, and the others stay.
TEST_F(ControlServerTest, AFullServerEvictsTheOldestIdleClientForANewOne) {
    RequestServer::Limits limits = ControlServer::kLimits;
    limits.request_timeout = 30s;  // no deadline interferes: only eviction frees a slot
    start({}, limits);
    std::vector<unique_fd> idle;
    for (int i = 0; i < 16; ++i) {
        idle.push_back(connect_unix(path_));
        ASSERT_TRUE(idle.back());
    }
    // Newcomers keep their connections open after the reply, so the server holds them too (done,
    // waiting for them to close): still an idle client goes first.
    std::vector<unique_fd> served;
    for (int newcomer = 0; newcomer < 2; ++newcomer) {
        served.push_back(connect_unix(path_));
        ASSERT_TRUE(send_all(served.back().get(), "{\"command\":\"status\"}\n"));
        const std::string reply = read_all(served.back().get(), 10s);
        EXPECT_TRUE(control::parse_response(reply).ok) << newcomer << ": " << reply;
        // The oldest idle client made room: it sees its end, the younger ones are still there.
        EXPECT_EQ(read_all(idle[static_cast<size_t>(newcomer)].get(), 10s), "") << newcomer;
        for (size_t i = static_cast<size_t>(newcomer) + 1; i < idle.size(); ++i)
            EXPECT_TRUE(still_open(idle[i].get())) << "idle client " << i << " dropped";
    }
}

// A client has a short deadline to send its request, not the reply's.
TEST_F(ControlServerTest, AClientThatSendsNothingIsDroppedAtTheRequestDeadline) {
    RequestServer::Limits limits = ControlServer::kLimits;
    limits.request_timeout = 300ms;
    limits.timeout = 60s;
    start({}, limits);
    unique_fd quiet = connect_unix(path_);
    ASSERT_TRUE(quiet);
    EXPECT_EQ(read_all(quiet.get(), 20s), "");  // dropped long before the reply's 60 s
    // One that asks in time is answered.
    EXPECT_TRUE(control::parse_response(ask(path_, "{\"command\":\"status\"}\n")).ok);
}

// Clients being sent their replies are never evicted: with all sixteen slots taking a big reply
// they do not read, a newcomer waits in the backlog until a slot frees at a deadline (the
// server's eviction count stays 0).
TEST_F(ControlServerTest, ClientsTakingRepliesAreNotEvictedAndANewcomerWaits) {
    handler_.set_status(big_status());
    RequestServer::Limits limits = ControlServer::kLimits;
    limits.timeout = 2s;
    start({}, limits);
    std::vector<unique_fd> slow;
    for (int i = 0; i < 16; ++i) {
        slow.push_back(connect_unix(path_));
        ASSERT_TRUE(slow.back());
        ASSERT_TRUE(send_all(slow.back().get(), "{\"command\":\"status\"}\n"));
    }
    // Every reply has begun (and does not fit in the socket buffer).
    const auto deadline = Clock::now() + 20s;
    for (auto& fd : slow) {
        int queued = 0;
        while ((::ioctl(fd.get(), FIONREAD, &queued) != 0 || queued == 0) &&
               Clock::now() < deadline)
            std::this_thread::sleep_for(5ms);
        ASSERT_GT(queued, 0) << "a reply never started";
    }
    unique_fd waiting = connect_unix(path_);
    ASSERT_TRUE(waiting);
    ASSERT_TRUE(send_all(waiting.get(), "{\"command\":\"status\"}\n"));
    // The slow readers reach their deadline and are dropped; only then is the newcomer served:
    // none of them was evicted for it.
    const std::string reply = read_all(waiting.get(), 30s);
    const Response r = control::parse_response(reply);
    EXPECT_TRUE(r.ok) << reply.substr(0, 200);
    loop_.stop();
    EXPECT_EQ(server_->evicted(), 0u);
}

TEST_F(ControlServerTest, SlowReaderDoesNotBlockOthersAndIsDropped) {
    handler_.set_status(big_status());
    RequestServer::Limits limits = ControlServer::kLimits;
    limits.timeout = 1s;
    start({}, limits);
    unique_fd slow = connect_unix(path_);
    ASSERT_TRUE(send_all(slow.get(), "{\"command\":\"status\"}\n"));
    // The server has begun the reply, which does not fit in the socket buffer: it waits.
    const auto deadline = Clock::now() + 20s;
    int queued = 0;
    while ((::ioctl(slow.get(), FIONREAD, &queued) != 0 || queued == 0) && Clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    ASSERT_GT(queued, 0) << "no reply started";
    // A server that blocked on the slow reader would never answer this one.
    const std::string reply = ask(path_, "{\"command\":\"status\"}\n", 10s);
    const Response r = control::parse_response(reply);
    ASSERT_TRUE(r.ok && r.status);
    EXPECT_EQ(status_from_json(*r.status), big_status());
    // At its deadline the server drops the slow reader (seen as a hangup, before we read).
    pollfd hangup{slow.get(), POLLRDHUP, 0};
    ASSERT_EQ(::poll(&hangup, 1, 20000), 1) << "the slow reader was never dropped";
    const std::string got = read_all(slow.get());
    EXPECT_LT(got.size(), reply.size());  // cut off, then EOF or a reset
    EXPECT_TRUE(got.starts_with("{\"ok\":true"));
}

TEST(OpenControlSocket, ModeOwnerAndStaleFile) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root (chown)");
    TempDir dir;
    const std::string path = dir.path() + "/control.sock";
    {
        unique_fd fd = open_control_socket(path);
        struct stat st {};
        ASSERT_EQ(::stat(path.c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 07777, 0660u);
        EXPECT_EQ(st.st_uid, 0u);
        // A second daemon must not take over a live socket.
        try {
            (void)open_control_socket(path);
            ADD_FAILURE() << "opened a socket that is in use";
        } catch (const std::runtime_error& e) {
            EXPECT_EQ(std::string(e.what()),
                      "control socket " + path +
                          ": in use by another process (is another pf-proxyd running?)");
        }
    }
    // The file is still there, nobody listens: it is replaced.
    SocketFileAccess access;
    access.mode = 0600;
    access.owner = kNobody;
    access.group = kNobody;
    unique_fd fd = open_control_socket(path, access);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_uid, kNobody);
    EXPECT_EQ(st.st_gid, kNobody);
}

TEST(OpenControlSocket, ClearErrors) {
    TempDir dir;
    const auto error = [](const std::string& path) -> std::string {
        try {
            (void)open_control_socket(path);
        } catch (const std::runtime_error& e) {
            return e.what();
        }
        return "<opened>";
    };
    EXPECT_EQ(error(dir.path() + "/missing/control.sock"),
              "control socket " + dir.path() + "/missing/control.sock: directory " + dir.path() +
                  "/missing does not exist (create it, or let systemd's RuntimeDirectory= do so)");
    std::ofstream(dir.path() + "/file") << "x";
    EXPECT_EQ(error(dir.path() + "/file"),
              "control socket " + dir.path() + "/file: exists and is not a socket");
    EXPECT_EQ(error("control.sock"), "control socket control.sock: expected an absolute path");
    EXPECT_EQ(error("/" + std::string(120, 'a')),
              "control socket /" + std::string(120, 'a') + ": path longer than 107 bytes");
}

// ---- The metrics endpoint -----------------------------------------------------------------------

Endpoint loopback_any_port() {
    Endpoint e = parse_endpoint("tcp:127.0.0.1:1");
    reinterpret_cast<sockaddr_in*>(&e.addr.storage)->sin_port = 0;
    e.port = 0;
    return e;
}

class MetricsServerTest : public testing::Test {
  protected:
    void SetUp() override {
        handler_.set_status(small_status());
        unique_fd listener = open_metrics_listener(loopback_any_port());
        sockaddr_in a{};
        socklen_t len = sizeof a;
        ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
        port_ = ntohs(a.sin_port);
        server_ = std::make_unique<MetricsServer>(loop_.loop, std::move(listener), handler_);
        loop_.start([this](Clock::time_point now) { return server_->tick(now); });
    }
    void TearDown() override {
        loop_.stop();
        server_.reset();
    }
    std::string get(std::string_view request, bool half_close = false) {
        unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port_);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return "<connect>";
        if (!send_all(fd.get(), request)) return "<send>";
        if (half_close) ::shutdown(fd.get(), SHUT_WR);
        return read_all(fd.get());
    }

    FakeHandler handler_;
    LoopThread loop_;
    std::unique_ptr<MetricsServer> server_;
    uint16_t port_ = 0;
};

std::string status_line(const std::string& reply) {
    return reply.substr(0, reply.find("\r\n"));
}

TEST_F(MetricsServerTest, ServesMetrics) {
    const std::string body = render_prometheus(small_status());
    const std::string reply = get("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    EXPECT_EQ(reply,
              "HTTP/1.1 200 OK\r\n"
              "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
              "Content-Length: " +
                  std::to_string(body.size()) +
                  "\r\n"
                  "Connection: close\r\n\r\n" +
                  body);
    EXPECT_NE(
        body.find("pfproxy_connections_accepted_total{proxy=\"web\",kind=\"tcp-forward\"} 5\n"),
        std::string::npos);
}

// Sixty-four idle TCP connections (four times the slots, held with the default deadlines) do not
// keep a scrape out: it is answered at once, the idle ones making room.
TEST_F(MetricsServerTest, IdleConnectionsNeverStarveAScrape) {
    std::vector<unique_fd> idle;
    for (int i = 0; i < 64; ++i) {
        idle.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port_);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(::connect(idle.back().get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    }
    EXPECT_EQ(status_line(get("GET /metrics HTTP/1.0\r\n\r\n")), "HTTP/1.1 200 OK");
    // It was queued behind 48 idle ones, each accepted by evicting an older one.
    loop_.stop();
    EXPECT_GE(server_->evicted(), 48u);
}

TEST_F(MetricsServerTest, HttpVariants) {
    EXPECT_EQ(status_line(get("GET /metrics HTTP/1.0\r\n\r\n")), "HTTP/1.1 200 OK");
    EXPECT_EQ(status_line(get("GET /metrics HTTP/1.0\n\n")), "HTTP/1.1 200 OK");
    EXPECT_EQ(status_line(get("GET /metrics?name[]=x HTTP/1.1\r\n\r\n")), "HTTP/1.1 200 OK");
    const std::string head = get("HEAD /metrics HTTP/1.1\r\n\r\n");
    EXPECT_EQ(status_line(head), "HTTP/1.1 200 OK");
    EXPECT_TRUE(head.ends_with("Connection: close\r\n\r\n")) << head;
}

TEST_F(MetricsServerTest, Errors) {
    EXPECT_EQ(get("GET / HTTP/1.1\r\n\r\n"),
              "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: 14\r\nConnection: close\r\n\r\n404 Not Found\n");
    EXPECT_EQ(status_line(get("GET /metricsx HTTP/1.1\r\n\r\n")), "HTTP/1.1 404 Not Found");
    EXPECT_EQ(get("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
              "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: 23\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
              "405 Method Not Allowed\n");
    for (const char* bad :
         {"garbage\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
          "GET /metrics HTTP/2.0\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
          "GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n",
          "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
          "GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", "G(T /metrics HTTP/1.1\r\n\r\n"}) {
        EXPECT_EQ(status_line(get(bad)), "HTTP/1.1 400 Bad Request") << bad;
    }
    // The client ended its side before the blank line.
    EXPECT_EQ(status_line(get("GET /metrics HTTP/1.1\r\n", true)), "HTTP/1.1 400 Bad Request");
    EXPECT_EQ(status_line(get("GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a'))),
              "HTTP/1.1 431 Request Header Fields Too Large");
    // Still serving after all that.
    EXPECT_EQ(status_line(get("GET /metrics HTTP/1.1\r\n\r\n")), "HTTP/1.1 200 OK");
}

TEST(OpenMetricsListener, UnixEndpointServes) {
    TempDir dir;
    const Endpoint e = parse_endpoint("unix:" + dir.path() + "/metrics.sock");
    FakeHandler handler;
    handler.set_status(small_status());
    LoopThread loop;
    MetricsServer server(loop.loop, open_metrics_listener(e), handler);
    loop.start([&](Clock::time_point now) { return server.tick(now); });
    struct stat st {};
    EXPECT_EQ(::stat(e.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    const std::string reply = ask(e.path, "GET /metrics HTTP/1.1\r\n\r\n");
    EXPECT_EQ(status_line(reply), "HTTP/1.1 200 OK");
    loop.stop();
}

TEST(OpenMetricsListener, ErrorsNameTheEndpoint) {
    unique_fd taken = open_metrics_listener(loopback_any_port());
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(taken.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    const std::string text = "tcp:127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    try {
        (void)open_metrics_listener(parse_endpoint(text));
        ADD_FAILURE() << "bound a port in use";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "metrics endpoint " + text + ": bind: Address already in use");
    }
    EXPECT_THROW(open_metrics_listener(parse_endpoint("vsock:any:9100")), std::runtime_error);
    EXPECT_THROW(open_metrics_listener(parse_endpoint("unix:@abstract")), std::runtime_error);
}

TEST(OpenMetricsListener, Caps) {
    uint32_t start = 1024;
    std::ifstream("/proc/sys/net/ipv4/ip_unprivileged_port_start") >> start;
    const auto caps = [](const char* text) { return metrics_caps(parse_endpoint(text)); };
    EXPECT_EQ(caps("tcp:127.0.0.1:80"),
              start > 80 ? std::set<int>{CAP_NET_BIND_SERVICE} : std::set<int>{});
    EXPECT_EQ(caps("tcp:127.0.0.1:65000"), std::set<int>{});
    EXPECT_EQ(caps("unix:/run/pf-proxy/metrics.sock"), std::set<int>{});
}

}  // namespace
}  // namespace pfp::supervisor
