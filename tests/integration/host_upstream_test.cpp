// Host-name upstreams end to end: pf-proxyd resolves "tcp:NAME:PORT" with the test DNS server
// (tests/support/dns_test_server.hpp) named by the policy's `resolver`, hands the addresses to the
// worker, follows a changed answer once its TTL runs out (the new server gets the next
// connection, an open one continues), keeps the last good set when the name stops resolving,
// skips a refused address, and refuses to start on a name that does not resolve. The servers
// listen on 127.0.0.2 and 127.0.0.3 (loopback addresses of their own, one port).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"
#include "proxy_status.hpp"
#include "tests/support/dns_test_server.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using nlohmann::json;
using pfp::unique_fd;

namespace {

unique_fd listen_on(const std::string& ip, uint16_t port, int backlog = 128) {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(s.get(), backlog) < 0)
        throw std::runtime_error("listen " + ip + ":" + std::to_string(port));
    return s;
}

// Accepts on IP:PORT; each connection gets NAME + "\n", then its bytes echoed.
class NamedServer {
  public:
    NamedServer(std::string name, const std::string& ip, uint16_t port)
        : name_(std::move(name)), listener_(listen_on(ip, port)) {
        thread_ = std::thread([this] {
            while (!stop_) {
                pollfd p{listener_.get(), POLLIN, 0};
                if (::poll(&p, 1, 50) <= 0) continue;
                const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) continue;
                ++accepted_;
                conns_.emplace_back([this, fd] {
                    unique_fd c(fd);
                    set_timeouts(c.get(), 30s);
                    const std::string hello = name_ + "\n";
                    if (!write_all(c.get(), hello.data(), hello.size())) return;
                    char buf[4096];
                    for (;;) {
                        const ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
                        if (n <= 0 || !write_all(c.get(), buf, static_cast<size_t>(n))) return;
                    }
                });
            }
        });
    }
    ~NamedServer() {
        stop_ = true;
        thread_.join();
        for (auto& t : conns_) t.join();
    }
    int accepted() const { return accepted_; }

  private:
    std::string name_;
    unique_fd listener_;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::thread thread_;
    std::vector<std::thread> conns_;
};

// Connects through the proxy and reads the greeting: which server answered ("" on failure).
std::string greeting(int fd) {
    std::string line;
    char ch;
    while (line.size() < 64 && ::recv(fd, &ch, 1, 0) == 1) {
        if (ch == '\n') return line;
        line += ch;
    }
    return "";
}

std::string who_answers(uint16_t port) {
    unique_fd c = connect_tcp(port, 10s);
    if (!c) return "";
    return greeting(c.get());
}

bool echoes(int fd, const std::string& msg) {
    if (!write_all(fd, msg.data(), msg.size())) return false;
    std::string back(msg.size(), '\0');
    return read_exact(fd, back.data(), back.size()) && back == msg;
}

DnsTestServer::Name answer(std::vector<std::string> v4, uint32_t ttl) {
    DnsTestServer::Name n;
    n.v4 = std::move(v4);
    n.ttl = ttl;
    return n;
}

DnsTestServer::Name servfail() {
    DnsTestServer::Name n;
    n.mode = DnsTestServer::Mode::servfail;
    return n;
}

std::string policy(const DnsTestServer& dns, uint16_t listen, const std::string& upstream,
                   const std::string& extra = "") {
    return R"({"user": "nobody", "resolver": ")" + dns.address() +
           R"(", "resolve_min": "1s", "proxies": [{"name": "named", "listen": "tcp:127.0.0.1:)" +
           std::to_string(listen) + R"(", "upstream": ")" + upstream + "\"" + extra + "}]}";
}

json status_of(const Daemon& d) {
    return proxy_status(status_json(d), "named");
}

TEST(HostUpstream, ResolvesAtStartAndFollowsAChangedAnswer) {
    DnsTestServer dns;
    dns.set("svc.test", answer({"127.0.0.2"}, 1));
    const uint16_t port = free_port(), in = free_port();
    NamedServer a("A", "127.0.0.2", port), b("B", "127.0.0.3", port);
    Daemon d(policy(dns, in, "tcp:svc.test:" + std::to_string(port)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    // The worker never resolves: Landlock still admits exactly the name's port.
    EXPECT_TRUE(d.wait_log("TCP connect to " + std::to_string(port))) << d.log();
    EXPECT_EQ(who_answers(in), "A");
    unique_fd open = connect_tcp(in, 10s);
    ASSERT_TRUE(open);
    ASSERT_EQ(greeting(open.get()), "A");
    const json s = status_of(d);
    EXPECT_EQ(s.at("upstream"), "tcp:svc.test:" + std::to_string(port)) << s.dump();
    EXPECT_EQ(s.at("resolved").at("addresses"), json::array({"127.0.0.2:" + std::to_string(port)}))
        << s.dump();
    EXPECT_LE(s.at("resolved").at("refresh_in_seconds").get<double>(), 1.0) << s.dump();

    dns.set("svc.test", answer({"127.0.0.3"}, 1));
    ASSERT_TRUE(d.wait_log("now resolves to 127.0.0.3:" + std::to_string(port))) << d.log();
    // The supervisor sends ADDRESSES after that line; the worker applies it on its next read.
    ASSERT_TRUE(wait_until([&] { return who_answers(in) == "B"; })) << d.log();
    EXPECT_GE(b.accepted(), 1);
    EXPECT_TRUE(echoes(open.get(), "still here")) << "the open connection kept its server";
    EXPECT_EQ(status_of(d).at("resolved").at("addresses"),
              json::array({"127.0.0.3:" + std::to_string(port)}));
}

TEST(HostUpstream, ARefusedAddressIsSkipped) {
    DnsTestServer dns;
    dns.set("two.test", answer({"127.0.0.2", "127.0.0.3"}, 300));
    const uint16_t port = free_port(), in = free_port();
    Daemon d(policy(dns, in, "tcp:two.test:" + std::to_string(port)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    // Serve only the address the worker tries second: the first refuses every connect.
    const json addresses = status_of(d).at("resolved").at("addresses");
    ASSERT_EQ(addresses.size(), 2u) << addresses.dump();
    const std::string second = addresses.at(1).get<std::string>();
    NamedServer live("live", second.substr(0, second.rfind(':')), port);
    EXPECT_EQ(who_answers(in), "live") << d.log();
    EXPECT_EQ(who_answers(in), "live") << d.log();
    EXPECT_EQ(live.accepted(), 2);
    EXPECT_TRUE(d.wait_log("; trying " + second)) << d.log();
}

// An address whose SYNs are dropped (a listener whose accept queue is full) gets its share of
// connect_timeout, then the next address its turn.
TEST(HostUpstream, ASilentAddressGivesTheNextItsTurn) {
    DnsTestServer dns;
    dns.set("slow.test", answer({"127.0.0.2", "127.0.0.3"}, 300));
    const uint16_t port = free_port(), in = free_port();
    Daemon d(
        policy(dns, in, "tcp:slow.test:" + std::to_string(port), ", \"connect_timeout\": \"2s\""));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const json addresses = status_of(d).at("resolved").at("addresses");
    ASSERT_EQ(addresses.size(), 2u) << addresses.dump();
    const std::string first = addresses.at(0).get<std::string>();
    const std::string second = addresses.at(1).get<std::string>();
    // Backlog 0, never accepted: one connection fills the queue, later SYNs are dropped.
    unique_fd full = listen_on(first.substr(0, first.rfind(':')), port, 0);
    std::vector<unique_fd> fillers;
    for (int i = 0; i < 2; ++i) {
        unique_fd c(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        ::inet_pton(AF_INET, first.substr(0, first.rfind(':')).c_str(), &a.sin_addr);
        ::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
        fillers.push_back(std::move(c));
    }
    NamedServer live("live", second.substr(0, second.rfind(':')), port);
    EXPECT_EQ(who_answers(in), "live") << d.log();
    EXPECT_TRUE(d.wait_log(first + " (slow.test) failed: Connection timed out; trying " + second))
        << d.log();
    EXPECT_EQ(live.accepted(), 1);
}

TEST(HostUpstream, ANameThatStopsResolvingKeepsTheLastGoodSet) {
    DnsTestServer dns;
    dns.set("flaky.test", answer({"127.0.0.2"}, 1));
    const uint16_t port = free_port(), in = free_port();
    NamedServer a("A", "127.0.0.2", port);
    Daemon d(policy(dns, in, "tcp:flaky.test:" + std::to_string(port)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_EQ(who_answers(in), "A");
    dns.set("flaky.test", servfail());
    ASSERT_TRUE(d.wait_log("cannot resolve it again")) << d.log();
    // Another failed refresh after that one: logged once, the set kept all along.
    const int asked = dns.queries("flaky.test");
    ASSERT_TRUE(wait_until([&] { return dns.queries("flaky.test") > asked; })) << d.log();
    EXPECT_EQ(who_answers(in), "A");
    const json s = status_of(d);
    EXPECT_EQ(s.at("resolved").at("addresses"), json::array({"127.0.0.2:" + std::to_string(port)}));
    EXPECT_NE(s.at("resolved").at("error").get<std::string>(), "") << s.dump();
    const std::string log = d.log();
    EXPECT_EQ(log.find("cannot resolve it again"), log.rfind("cannot resolve it again")) << log;
    // Back again: the next answer is used and said so.
    dns.set("flaky.test", answer({"127.0.0.2"}, 1));
    EXPECT_TRUE(d.wait_log("\"flaky.test\" resolves again")) << d.log();
}

TEST(HostUpstream, ANameThatDoesNotResolveAtStartExits1) {
    DnsTestServer dns;
    const uint16_t port = free_port(), in = free_port();
    Daemon d(policy(dns, in, "tcp:nope.test:" + std::to_string(port)));
    const int status = d.wait_exit();
    ASSERT_TRUE(WIFEXITED(status)) << d.log();
    EXPECT_EQ(WEXITSTATUS(status), 1) << d.log();
    EXPECT_NE(d.log().find("proxy \"named\": upstream tcp:nope.test:" + std::to_string(port) +
                           ": cannot resolve \"nope.test\": "),
              std::string::npos)
        << d.log();
    EXPECT_NE(d.log().find("(resolver " + dns.address() + ")"), std::string::npos) << d.log();
    EXPECT_TRUE(wait_refused(in)) << "nothing listens after the failed start";
}

TEST(HostUpstream, AReloadResolvesNewNamesOrChangesNothing) {
    DnsTestServer dns;
    dns.set("svc.test", answer({"127.0.0.2"}, 300));
    dns.set("other.test", answer({"127.0.0.3"}, 300));
    const uint16_t port = free_port(), in = free_port();
    NamedServer a("A", "127.0.0.2", port), b("B", "127.0.0.3", port);
    Daemon d(policy(dns, in, "tcp:svc.test:" + std::to_string(port)));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_EQ(who_answers(in), "A");
    std::ofstream(d.policy_path()) << policy(dns, in, "tcp:nope.test:" + std::to_string(port));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("cannot resolve \"nope.test\"")) << d.log();
    EXPECT_NE(d.log().find("refused"), std::string::npos) << d.log();
    EXPECT_EQ(who_answers(in), "A");
    std::ofstream(d.policy_path()) << policy(dns, in, "tcp:other.test:" + std::to_string(port));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("reloaded")) << d.log();
    ASSERT_TRUE(wait_until([&] { return who_answers(in) == "B"; })) << d.log();
    EXPECT_EQ(status_of(d).at("resolved").at("host"), "other.test");
}

TEST(HostUpstream, UdpForwardSendsToTheResolvedAddress) {
    DnsTestServer dns;
    dns.set("dgram.test", answer({"127.0.0.1"}, 300));
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(R"({"user": "nobody", "resolver": ")" + dns.address() +
             R"(", "proxies": [{"name": "named", "listen": "udp:127.0.0.1:)" + std::to_string(in) +
             R"(", "upstream": "udp:dgram.test:)" + std::to_string(up) + R"("}]})");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = bind_udp(AF_INET);
    ASSERT_TRUE(send_udp(c.get(), AF_INET, in, "through a name"));
    const auto back = recv_udp(c.get(), 10s);
    ASSERT_TRUE(back) << d.log();
    EXPECT_EQ(*back, "through a name");
    EXPECT_EQ(server.received(), 1u);
}

// A udp-forward flow keeps the address it was opened with; new flows follow a changed answer; a
// failed refresh keeps the last good set for new flows too.
TEST(HostUpstream, UdpForwardFollowsAChangedAnswerWhileOpenFlowsStay) {
    DnsTestServer dns;
    dns.set("moving.test", answer({"127.0.0.2"}, 1));
    const uint16_t port = free_udp_port(), in = free_udp_port();
    UdpEchoServer a("127.0.0.2", port), b("127.0.0.3", port);
    Daemon d(R"({"user": "nobody", "resolver": ")" + dns.address() +
             R"(", "resolve_min": "1s", "proxies": [{"name": "named", "listen": "udp:127.0.0.1:)" +
             std::to_string(in) + R"(", "upstream": "udp:moving.test:)" + std::to_string(port) +
             R"("}]})");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto echoed = [&](int fd, const std::string& payload) {
        if (!send_udp(fd, AF_INET, in, payload)) return false;
        const auto back = recv_udp(fd, 5s);
        return back && *back == payload;
    };
    unique_fd open = bind_udp(AF_INET);
    ASSERT_TRUE(echoed(open.get(), "first")) << d.log();
    EXPECT_EQ(a.received(), 1u);
    EXPECT_EQ(b.received(), 0u);

    dns.set("moving.test", answer({"127.0.0.3"}, 1));
    ASSERT_TRUE(d.wait_log("now resolves to 127.0.0.3:" + std::to_string(port))) << d.log();
    // The worker applies ADDRESSES when it reads its control socket: a new client per try.
    ASSERT_TRUE(wait_until([&] {
        unique_fd c = bind_udp(AF_INET);
        return echoed(c.get(), "new flow") && b.received() > 0;
    })) << d.log();
    const uint64_t to_a = a.received();
    EXPECT_TRUE(echoed(open.get(), "open flow")) << d.log();
    EXPECT_EQ(a.received(), to_a + 1) << "the open flow kept its upstream address";

    dns.set("moving.test", servfail());
    ASSERT_TRUE(d.wait_log("cannot resolve it again")) << d.log();
    const int asked = dns.queries("moving.test");
    ASSERT_TRUE(wait_until([&] { return dns.queries("moving.test") > asked; })) << d.log();
    const uint64_t to_b = b.received();
    unique_fd later = bind_udp(AF_INET);
    EXPECT_TRUE(echoed(later.get(), "after the failure")) << d.log();
    EXPECT_EQ(b.received(), to_b + 1) << "a new flow used the last good set";
    EXPECT_EQ(status_of(d).at("resolved").at("addresses"),
              json::array({"127.0.0.3:" + std::to_string(port)}));
}

}  // namespace
