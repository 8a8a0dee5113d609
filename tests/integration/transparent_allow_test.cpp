// The allow list and allowed_sources, observed at the far end: every denied destination has a
// listener that must receive nothing, a refused client never reaches the upstream, and each
// refusal is logged.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "harness.hpp"
#include "netns.hpp"
#include "transparent_support.hpp"

using namespace pfp::test;
using namespace pfp::test::transparent;
using pfp::unique_fd;

namespace {

// ---- 6: the allow list, seen from the client
// -----------------------------------------------------

// True when a connection completed its handshake on `listener` (a listener the test never
// accepts on): the kernel queues it before the connecting side's connect() returns, so a proxy
// that connected before closing the client has left it there.
bool has_queued_connection(int listener) {
    pollfd p{listener, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

TEST(TransparentAllow, DeniedDestinationsCloseTheClientWithoutDataAndAreLogged) {
    PFP_REQUIRE_NETNS();
    Topology topo;
    topo.n.ip({"route", "add", "10.201.0.0/16", "dev", "vn"});
    topo.n.ip({"route", "add", "169.254.0.0/16", "dev", "vn"});
    // Every denied destination exists and listens, so a proxy that ignored the allow list would
    // reach it: 10.201.0.1 and the metadata address in S, port 81 beside the server, port 9 on
    // N's loopback (where egress-host runs).
    topo.s.ip({"addr", "add", "10.201.0.1/16", "dev", "vs"});
    topo.s.ip({"addr", "add", "169.254.169.254/16", "dev", "vs"});
    struct Denied {
        std::string ip;
        uint16_t port;
        unique_fd listener;
    };
    std::vector<Denied> denied;
    denied.push_back({"10.201.0.1", 80, listen_tcp_in(topo.s, "10.201.0.1", 80)});
    denied.push_back({"127.0.0.1", 9, listen_tcp_in(topo.n, "127.0.0.1", 9)});
    denied.push_back({"10.200.1.1", 81, listen_tcp_in(topo.s, "10.200.1.1", 81)});
    denied.push_back({"169.254.169.254", 80, listen_tcp_in(topo.s, "169.254.169.254", 80)});
    auto rule = [&](const std::string& dest, uint16_t to) {
        return std::make_unique<IptablesRule>(
            topo.n, IptablesRule::v4, "nat", "OUTPUT",
            concat(concat({"-p", "tcp", "-d", dest}, kNotNobody),
                   {"-j", "REDIRECT", "--to-ports", std::to_string(to)}));
    };
    // 10.200/16 and 10.201/16 -> the strict pair; loopback and link-local -> the open pair.
    auto r1 = rule("10.200.0.0/15", kEgressPort);
    auto r2 = rule("127.0.0.0/8", kEgressPort2);
    auto r3 = rule("169.254.0.0/16", kEgressPort2);
    Server server(listen_tcp_in(topo.s, "10.200.1.1", 80), [](int fd, const std::string&) {
        std::string got;
        if (!read_to_eof(fd, got)) return;
        write_all(fd, "allowed", 7);
    });
    TempDir dir;
    auto d = start_daemon(
        topo.n, policy_of(pair_entries("", "tcp:127.0.0.1:" + std::to_string(kEgressPort),
                                       dir.path() + "/hop.sock", "\"10.200.0.0/16:80\"") +
                          ", " +
                          pair_entries("-open", "tcp:127.0.0.1:" + std::to_string(kEgressPort2),
                                       dir.path() + "/hop-open.sock", "\"0.0.0.0/0:*\"")));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();

    auto client = [&](const std::string& ip, uint16_t port) {
        server.wait_idle();  // no handler thread exiting at the fork (transparent_support.hpp)
        ChildResult r = topo.n.run_in_child([&] { return request_here(ip, port, "GET /\n"); });
        EXPECT_TRUE(r.ok) << r.output;
        return r.output;
    };
    auto expect_denied = [&](const std::string& ip, uint16_t port, const std::string& why) {
        const std::string out = client(ip, port);
        ASSERT_TRUE(out == "eof " || out == "reset ")
            << ip << ":" << port << " should be closed without data, got: " << out;
        // Refusals are logged at most once a second per worker: one that came too soon after
        // the last is not logged, so ask again (each time denied) until this one is.
        const std::string line =
            ": destination " + ip + ":" + std::to_string(port) + " denied" + why;
        for (int i = 0; i < 60; ++i) {
            if (d->wait_log(line, 300ms)) return;
            const std::string again = client(ip, port);
            ASSERT_TRUE(again == "eof " || again == "reset ") << ip << ":" << port << ": " << again;
        }
        ADD_FAILURE() << "never logged: " << line << "\n" << d->log();
    };

    EXPECT_EQ(client("10.200.1.1", 80), "eof allowed") << d->log();  // the control
    expect_denied("10.201.0.1", 80, ": ");
    expect_denied("127.0.0.1", 9, ": loopback destination not explicitly allowed");
    expect_denied("10.200.1.1", 81, ": ");
    expect_denied("169.254.169.254", 80, ": metadata address not explicitly allowed");
    EXPECT_EQ(server.accepted(), 1) << "a denied destination was connected to";
    for (const auto& x : denied) {
        EXPECT_FALSE(has_queued_connection(x.listener.get()))
            << x.ip << ":" << x.port << " was connected to although the allow list denies it";
    }
    EXPECT_TRUE(d->wait_log("egress-host/0: refused connection from ", 1s)) << d->log();
}

// The host's own addresses, where a broad allow list would otherwise reach them: N's address on
// its veth (v4 and v6) listens on port 80 like the server in S, and both are under the allow
// list. The server is reached (the control); N's own listeners see nothing until an entry names
// the address itself.
TEST(TransparentAllow, TheHostsOwnAddressesStayRefusedUnderABroadAllow) {
    PFP_REQUIRE_NETNS();
    Topology topo;
    unique_fd own4 = listen_tcp_in(topo.n, "10.200.0.1", 80);
    unique_fd own6 = listen_tcp_in(topo.n, "fd00:200::1", 80);
    Server server(listen_tcp_in(topo.s, "10.200.1.1", 80), [](int fd, const std::string&) {
        std::string got;
        if (!read_to_eof(fd, got)) return;
        write_all(fd, "allowed", 7);
    });
    IptablesRule r4(topo.n, IptablesRule::v4, "nat", "OUTPUT",
                    concat(concat({"-p", "tcp", "-d", "10.200.0.0/16"}, kNotNobody),
                           {"-j", "REDIRECT", "--to-ports", std::to_string(kEgressPort)}));
    IptablesRule r6(topo.n, IptablesRule::v6, "nat", "OUTPUT",
                    concat(concat({"-p", "tcp", "-d", "fd00:200::/64"}, kNotNobody),
                           {"-j", "REDIRECT", "--to-ports", std::to_string(kEgressPort)}));
    TempDir dir;
    auto client = [&](const std::string& ip) {
        server.wait_idle();  // no handler thread exiting at the fork (transparent_support.hpp)
        ChildResult r = topo.n.run_in_child([&] { return request_here(ip, 80, "GET /\n"); });
        EXPECT_TRUE(r.ok) << r.output;
        return r.output;
    };
    {
        auto d = start_daemon(
            topo.n,
            policy_of(pair_entries("", "tcp:[::]:" + std::to_string(kEgressPort),
                                   dir.path() + "/hop.sock", R"("0.0.0.0/0:80", "[::]/0:80")")));
        ASSERT_TRUE(d->wait_ready(10s)) << d->log();
        EXPECT_EQ(client("10.200.1.1"), "eof allowed") << d->log();  // the control
        for (const std::string ip : {"10.200.0.1", "fd00:200::1"}) {
            const std::string out = client(ip);
            EXPECT_TRUE(out == "eof " || out == "reset ") << ip << ": " << out << d->log();
        }
        EXPECT_TRUE(d->wait_log("the host's own address not explicitly allowed", 5s)) << d->log();
        EXPECT_FALSE(has_queued_connection(own4.get()))
            << "the host's own IPv4 address was reached";
        EXPECT_FALSE(has_queued_connection(own6.get()))
            << "the host's own IPv6 address was reached";
    }
    {
        // Named by an entry of its own: then it is a destination like any other.
        auto d = start_daemon(topo.n,
                              policy_of(pair_entries("", "tcp:[::]:" + std::to_string(kEgressPort),
                                                     dir.path() + "/hop2.sock",
                                                     R"("0.0.0.0/0:80", "10.200.0.1/32:80")")));
        ASSERT_TRUE(d->wait_ready(10s)) << d->log();
        Server own(std::move(own4), [](int fd, const std::string&) {
            std::string got;
            if (read_to_eof(fd, got)) write_all(fd, "own", 3);
        });
        EXPECT_EQ(client("10.200.0.1"), "eof own") << d->log();
        EXPECT_EQ(own.accepted(), 1);
    }
}

// ---- 7: allowed_sources on a TCP listener
// --------------------------------------------------------

TEST(TransparentSources, ClientOutsideAllowedSourcesIsClosedWithoutDataAndLogged) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root (\"user\": \"nobody\")");
    const uint16_t deny = free_port(), admit = free_port(), upstream = free_port();
    Server echo(listen_tcp(upstream), [](int fd, const std::string&) {
        char buf[4096];
        ssize_t n;
        while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
            if (!write_all(fd, buf, static_cast<size_t>(n))) return;
        ::shutdown(fd, SHUT_WR);
    });
    auto entry = [&](const std::string& name, uint16_t port, const std::string& sources) {
        return "{\"name\": " + quoted(name) +
               ", \"listen\": \"tcp:127.0.0.1:" + std::to_string(port) +
               "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream) +
               "\", \"allowed_sources\": [" + sources + "]}";
    };
    Daemon d(policy_of(entry("deny", deny, "\"10.9.9.9/32\"") + ", " +
                       entry("admit", admit, "\"10.9.9.9/32\", \"127.0.0.0/8\"")));
    ASSERT_TRUE(d.wait_ready(10s)) << d.log();

    auto request = [](uint16_t port) {
        unique_fd c;
        if (int err = try_connect_tcp(port, c))
            return std::string("connect failed: ") + strerror(err);
        set_timeouts(c.get(), kIo);
        write_all(c.get(), "ping", 4);
        ::shutdown(c.get(), SHUT_WR);
        std::string got;
        std::string end = read_until_end(c.get(), got);
        return end + " " + got;
    };
    const std::string denied = request(deny);
    EXPECT_TRUE(denied == "eof " || denied == "reset ") << denied;
    EXPECT_TRUE(d.wait_log("deny/0: refused connection from 127.0.0.1:", 5s)) << d.log();
    EXPECT_TRUE(d.wait_log("is not in allowed_sources", 5s)) << d.log();
    EXPECT_EQ(echo.accepted(), 0) << "a refused client reached the upstream";

    EXPECT_EQ(request(admit), "eof ping") << d.log();
    EXPECT_EQ(echo.accepted(), 1);
}

}  // namespace
