// pf-proxyctl against the real pf-proxyd: status counters equal the traffic the test made (and
// the metrics endpoint says the same), reload/restart/stop/start, and the control socket's
// access checks (file mode, and peer credentials for a uid that is not allowed).
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "harness.hpp"
#include "proxy_status.hpp"

using namespace pfp::test;
using nlohmann::json;
using pfp::unique_fd;

namespace {

CommandResult ctl(const Daemon& d, std::vector<std::string> args) {
    std::vector<std::string> argv = {bin_dir() + "/pf-proxyctl", "--control", d.control_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
}

// Polls until `pred(status)` holds (workers report their counters once a second).
template <typename Pred>
json wait_status(const Daemon& d, Pred pred, std::chrono::milliseconds timeout = 10s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    json s;
    do {
        s = status_json(d);
        if (pred(s)) return s;
        std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < end);
    return s;
}

std::string http_get(uint16_t port, const std::string& path) {
    unique_fd c = connect_tcp(port, 10s);
    if (!c) return "";
    set_timeouts(c.get(), 10s);
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (!write_all(c.get(), req.data(), req.size())) return "";
    std::string out;
    read_to_eof(c.get(), out);
    return out;
}

// The value of one sample line `name{labels} value` of a Prometheus text body.
std::map<std::string, std::string> samples(const std::string& body) {
    std::map<std::string, std::string> out;
    std::istringstream in(body);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto sp = line.rfind(' ');
        out[line.substr(0, sp)] = line.substr(sp + 1);
    }
    return out;
}

class Control : public ::testing::Test {
  protected:
    uint16_t echo_port = free_port();
    EchoServer echo{echo_port};
};

TEST_F(Control, StatusAndMetricsCountTheTrafficTheTestMade) {
    const uint16_t web = free_port(), guarded = free_port(), metrics = free_port();
    Daemon d(
        "{\"metrics\": \"tcp:127.0.0.1:" + std::to_string(metrics) + "\", \"proxies\": [" +
        tcp_proxy_json("web", web, echo_port) + ", " +
        tcp_proxy_json("guarded", guarded, echo_port, ", \"allowed_sources\": [\"10.0.0.0/8\"]") +
        "]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    constexpr size_t kBytes = 300'000;
    for (int i = 0; i < 3; ++i) {
        unique_fd c = connect_tcp(web, 10s);
        ASSERT_TRUE(c);
        Transfer t = send_and_receive(c.get(), kBytes, 40 + i);
        ASSERT_TRUE(t.ok && t.received == kBytes);
    }
    {
        unique_fd c = connect_tcp(guarded, 10s);  // 127.0.0.1 is not in 10.0.0.0/8: refused
        ASSERT_TRUE(c);
        // Seen at the far end: the echo server would send this back to an admitted client.
        ASSERT_TRUE(write_all(c.get(), "x", 1));
        std::string got;
        const std::string end = read_until_end(c.get(), got);
        EXPECT_TRUE(end == "eof" || end == "reset") << end;
        EXPECT_EQ(got, "") << "a refused client reached the upstream";
    }
    json s = wait_status(d, [](const json& st) {
        const json& w = proxy_status(st, "web");
        return w["counters"]["accepted"] == 3 && w["counters"]["bytes_down"] == 3 * kBytes &&
               w["counters"]["active"] == 0 &&
               proxy_status(st, "guarded")["counters"]["denied"] == 1;
    });
    const json& w = proxy_status(s, "web");
    EXPECT_EQ(w["state"], "running");
    EXPECT_EQ(w["kind"], "tcp-forward");
    EXPECT_EQ(w["generation"], 1);
    EXPECT_EQ(w["counters"]["accepted"], 3);
    EXPECT_EQ(w["counters"]["active"], 0);
    EXPECT_EQ(w["counters"]["bytes_up"], 3 * kBytes);
    EXPECT_EQ(w["counters"]["bytes_down"], 3 * kBytes);
    EXPECT_EQ(w["counters"]["denied"], 0);
    EXPECT_EQ(proxy_status(s, "guarded")["counters"]["denied"], 1);
    EXPECT_EQ(s["pid"], d.pid());
    EXPECT_EQ(s["policy"], d.policy_path());
    std::vector<pid_t> pids;
    for (const json& p : s["proxies"])
        for (const json& wk : p["workers"]) pids.push_back(wk["pid"].get<pid_t>());
    std::sort(pids.begin(), pids.end());
    EXPECT_EQ(pids, d.workers());

    // The metrics endpoint exposes the same numbers.
    const std::string reply = http_get(metrics, "/metrics");
    ASSERT_NE(reply.find("HTTP/1.1 200"), std::string::npos) << reply;
    auto m = samples(reply.substr(reply.find("\r\n\r\n") + 4));
    const std::string l = "{proxy=\"web\",kind=\"tcp-forward\"";
    EXPECT_EQ(m["pfproxy_connections_accepted_total" + l + "}"], "3");
    EXPECT_EQ(m["pfproxy_connections_active" + l + "}"], "0");
    EXPECT_EQ(m["pfproxy_bytes_total" + l + ",direction=\"up\"}"], std::to_string(3 * kBytes));
    EXPECT_EQ(m["pfproxy_bytes_total" + l + ",direction=\"down\"}"], std::to_string(3 * kBytes));
    EXPECT_EQ(m["pfproxy_connections_denied_total{proxy=\"guarded\",kind=\"tcp-forward\"}"], "1");
    EXPECT_EQ(m["pfproxy_proxy_up" + l + "}"], "1");
    EXPECT_NE(http_get(metrics, "/other").find("HTTP/1.1 404"), std::string::npos);

    // People get an aligned table with the same proxies.
    CommandResult table = ctl(d, {"status"});
    EXPECT_EQ(table.status, 0) << table.output;
    EXPECT_NE(table.output.find("web"), std::string::npos) << table.output;
    EXPECT_NE(table.output.find("guarded"), std::string::npos) << table.output;
}

TEST_F(Control, SocketIsGroupOnlyAndRefusesAUidThatIsNotAllowed) {
    const uint16_t web = free_port();
    Daemon d("{\"proxies\": [" + tcp_proxy_json("web", web, echo_port) + "]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    struct stat st {};
    ASSERT_EQ(::stat(d.control_path().c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0660u);

    // Past the file's mode (opened up here on purpose), the peer's credentials still decide.
    ASSERT_EQ(::chmod(d.control_path().c_str(), 0666), 0);
    ASSERT_EQ(::chmod(::dirname(std::string(d.control_path()).data()), 0755), 0);
    const std::string out_path = d.control_path() + ".out";
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)
            ::_exit(99);
        const std::string ctl_bin = bin_dir() + "/pf-proxyctl";
        ::execl(ctl_bin.c_str(), ctl_bin.c_str(), "--control", d.control_path().c_str(), "status",
                nullptr);
        ::_exit(98);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    std::ifstream f(out_path);
    std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1) << out;
    EXPECT_NE(out.find("permission denied: uid 65534 is not allowed to use the control socket"),
              std::string::npos)
        << out;
    EXPECT_TRUE(d.wait_log("uid 65534")) << d.log();
    // Root still gets in.
    EXPECT_EQ(ctl(d, {"status"}).status, 0);
    // A clean stop takes the socket file away.
    d.signal(SIGTERM);
    ASSERT_TRUE(WIFEXITED(d.wait_exit(20s))) << d.log();
    EXPECT_NE(::access(d.control_path().c_str(), F_OK), 0);
}

TEST_F(Control, ReloadReportsEveryErrorAndAppliesAValidPolicy) {
    const uint16_t web = free_port(), added = free_port();
    Daemon d("{\"proxies\": [" + tcp_proxy_json("web", web, echo_port) + "]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::ofstream(d.policy_path())
        << "{\"proxies\": [\n"
        << tcp_proxy_json("web", web, echo_port, ", \"workers\": 0") << "\n]}\n";
    CommandResult bad = ctl(d, {"reload"});
    EXPECT_EQ(WEXITSTATUS(bad.status), 1);
    EXPECT_NE(bad.output.find("pf-proxyctl: the policy in " + d.policy_path() +
                              " is invalid; nothing changed"),
              std::string::npos)
        << bad.output;
    EXPECT_NE(bad.output.find(d.policy_path() + ":2:"), std::string::npos) << bad.output;
    EXPECT_NE(bad.output.find("/proxies/0/workers"), std::string::npos) << bad.output;
    EXPECT_EQ(status_json(d)["policy_generation"], 1);

    std::ofstream(d.policy_path()) << "{\"proxies\": [" << tcp_proxy_json("web", web, echo_port)
                                   << ", " << tcp_proxy_json("added", added, echo_port) << "]}";
    CommandResult good = ctl(d, {"reload"});
    EXPECT_EQ(good.status, 0) << good.output;
    EXPECT_NE(good.output.find("1 unchanged, 0 changed, 1 added, 0 removed"), std::string::npos)
        << good.output;
    json s = wait_status(
        d, [](const json& st) { return st["state"] == "running" && st["proxies"].size() == 2; });
    EXPECT_EQ(s["policy_generation"], 2);
    unique_fd c = connect_tcp(added, 10s);
    ASSERT_TRUE(c);
    Transfer t = send_and_receive(c.get(), 1000, 50);
    EXPECT_TRUE(t.ok && t.received == 1000);

    // What only a start sets up is said so, not silently ignored.
    std::ofstream(d.policy_path()) << "{\"metrics\": \"tcp:127.0.0.1:" << free_port()
                                   << "\", \"proxies\": [" << tcp_proxy_json("web", web, echo_port)
                                   << ", " << tcp_proxy_json("added", added, echo_port) << "]}";
    CommandResult later = ctl(d, {"reload"});
    EXPECT_EQ(later.status, 0) << later.output;
    EXPECT_NE(later.output.find("2 unchanged, 0 changed, 0 added, 0 removed; metrics, "
                                "control_users and control_groups take effect at the next start"),
              std::string::npos)
        << later.output;
}

TEST_F(Control, StopStartAndRestartOneProxy) {
    const uint16_t web = free_port(), other = free_port();
    Daemon d("{\"proxies\": [" + tcp_proxy_json("web", web, echo_port) + ", " +
             tcp_proxy_json("other", other, echo_port) + "]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();

    CommandResult r = ctl(d, {"stop", "web"});
    EXPECT_EQ(r.status, 0) << r.output;
    // Refused once the draining workers have closed their copies of the listener too.
    EXPECT_TRUE(wait_refused(web));
    EXPECT_EQ(proxy_status(status_json(d), "web")["state"], "stopped");
    {
        unique_fd c = connect_tcp(other, 10s);  // the other proxy is not disturbed
        ASSERT_TRUE(c);
        EXPECT_TRUE(send_and_receive(c.get(), 1000, 60).ok);
    }
    EXPECT_EQ(WEXITSTATUS(ctl(d, {"stop", "web"}).status), 1);

    r = ctl(d, {"start", "web"});
    EXPECT_EQ(r.status, 0) << r.output;
    json s = wait_status(
        d, [](const json& st) { return proxy_status(st, "web")["state"] == "running"; });
    EXPECT_EQ(proxy_status(s, "web")["generation"], 2);
    {
        unique_fd c = connect_tcp(web, 10s);
        ASSERT_TRUE(c);
        EXPECT_TRUE(send_and_receive(c.get(), 1000, 61).ok);
    }

    const auto before = proxy_status(status_json(d), "web")["workers"][0]["pid"].get<pid_t>();
    r = ctl(d, {"restart", "web"});
    EXPECT_EQ(r.status, 0) << r.output;
    s = wait_status(d, [&](const json& st) {
        const json& w = proxy_status(st, "web");
        return w["state"] == "running" && w["workers"].size() == 1 &&
               w["workers"][0]["pid"].get<pid_t>() != before;
    });
    EXPECT_EQ(proxy_status(s, "web")["generation"], 3);
    EXPECT_NE(proxy_status(s, "web")["workers"][0]["pid"].get<pid_t>(), before);

    r = ctl(d, {"restart", "nope"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_NE(r.output.find("no proxy named \"nope\""), std::string::npos) << r.output;
}

TEST_F(Control, CtlWithoutADaemonSaysSoInOneLine) {
    TempDir dir;
    CommandResult r =
        run_command({bin_dir() + "/pf-proxyctl", "--control", dir.path() + "/none.sock", "status"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_NE(r.output.find(dir.path() + "/none.sock"), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

}  // namespace
