// Transparent proxying with real iptables REDIRECT inside network namespaces the tests create:
// ip-to-vsock-transparent -> (unix hop) -> vsock-to-ip-transparent, the transparent header's
// golden bytes, transparent-port-to-vsock against a fake Firecracker hybrid-vsock muxer, a
// PREROUTING redirect across a veth pair. The allow list and allowed_sources are in
// transparent_allow_test.cpp, the shared support in transparent_support.hpp.
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

// ---- 1, 2: the pair behind an OUTPUT REDIRECT, IPv4 and IPv6 ------------------------------------

class TransparentPair : public ::testing::Test {
  protected:
    // Topology, REDIRECT of N's TCP to the servers' subnet, the servers in S on port 80, and
    // pf-proxyd with the pair in N.
    void start(bool v6, Server::Handler handler) {
        PFP_REQUIRE_NETNS();
        v6_ = v6;
        topo_ = std::make_unique<Topology>();
        redirect_ = std::make_unique<IptablesRule>(
            topo_->n, v6 ? IptablesRule::v6 : IptablesRule::v4, "nat", "OUTPUT",
            concat(concat({"-p", "tcp", "-d", v6 ? "fd00:200::/64" : "10.200.0.0/16"}, kNotNobody),
                   {"-j", "REDIRECT", "--to-ports", std::to_string(kEgressPort)}));
        server_ = std::make_unique<Server>(listen_tcp_in(topo_->s, server_ip(), 80), handler);
        hop_ = dir_.path() + "/hop.sock";
        const std::string listen = v6 ? "tcp:[::1]:" + std::to_string(kEgressPort)
                                      : "tcp:127.0.0.1:" + std::to_string(kEgressPort);
        daemon_ = start_daemon(
            topo_->n, policy_of(pair_entries(
                          "", listen, hop_, v6 ? "\"[fd00:200::]/64:*\"" : "\"10.200.0.0/16:*\"")));
        ASSERT_TRUE(daemon_->wait_ready(10s)) << daemon_->log();
    }
    std::string server_ip() const { return v6_ ? "fd00:200::2" : "10.200.1.1"; }
    std::string proxy_ip() const { return v6_ ? "fd00:200::1" : "10.200.0.1"; }

    void bulk(bool v6) {
        constexpr size_t kTotal = 4u << 20;
        ASSERT_NO_FATAL_FAILURE(start(v6, [this](int fd, const std::string& peer) {
            Transfer t = send_and_receive(fd, kTotal, 1000);
            std::lock_guard lock(mu_);
            server_side_ = t;
            server_peer_ = peer;
        }));
        if (IsSkipped()) return;
        const std::string dest = server_ip();
        ChildResult r = topo_->n.run_in_child([&] {
            unique_fd c;
            if (int err = connect_tcp_here(dest, 80, c, kIo))
                return std::string("connect failed: ") + std::strerror(err);
            // The client's own end first: the server must not see it (see via_proxy()).
            const std::string local = local_address(c.get());
            return local + "\n" + describe(send_and_receive(c.get(), kTotal, 7));
        });
        ASSERT_TRUE(r.ok) << r.output << "\n" << daemon_->log();
        const std::string client_end = r.output.substr(0, r.output.find('\n'));
        r.output.erase(0, client_end.size() + 1);
        // What the client must have seen: all of the server's bytes, and the server all of its.
        Transfer expect_client;
        {
            std::vector<char> buf(kTransferChunk);
            Fnv sent, got;
            for (size_t left = kTotal, s = 7; left > 0; left -= std::min(left, buf.size()), ++s) {
                fill_pattern(buf, s);
                sent.add(buf.data(), std::min(left, buf.size()));
            }
            for (size_t left = kTotal, s = 1000; left > 0;
                 left -= std::min(left, buf.size()), ++s) {
                fill_pattern(buf, s);
                got.add(buf.data(), std::min(left, buf.size()));
            }
            expect_client.sent_hash = sent.value();
            expect_client.received_hash = got.value();
            expect_client.received = kTotal;
        }
        EXPECT_EQ(r.output, describe(expect_client)) << daemon_->log();
        for (int i = 0; i < 300; ++i) {
            {
                std::lock_guard lock(mu_);
                if (!server_peer_.empty()) break;
            }
            std::this_thread::sleep_for(10ms);
        }
        std::lock_guard lock(mu_);
        EXPECT_EQ(server_side_.received, kTotal);
        EXPECT_EQ(server_side_.received_hash, expect_client.sent_hash)
            << "client -> server corrupted";
        EXPECT_EQ(server_peer_, proxy_ip()) << "the server must be reached by egress-host";
        expect_via_proxy(client_end);
    }

    // The client and egress-host share N's address, so the server's peer address alone cannot
    // tell the proxied path from a direct connection; the port can: a connection that bypassed
    // the redirect reaches the server from the client's own socket.
    void expect_via_proxy(const std::string& client_end) {
        const std::vector<std::string> peers = server_->peers();
        ASSERT_EQ(peers.size(), 1u);
        EXPECT_EQ(peers[0].substr(0, peers[0].find(' ')), proxy_ip());
        EXPECT_NE(peers[0], client_end) << "the server saw the client's own socket: not proxied";
        EXPECT_EQ(server_->accepted(), 1);
    }

    void half_close(bool v6) {
        ASSERT_NO_FATAL_FAILURE(start(v6, [](int fd, const std::string&) {
            // Answers only after EOF: a relay that closes both ways on the first FIN loses it.
            std::string got;
            if (!read_to_eof(fd, got)) return;
            std::string reply = "got " + std::to_string(got.size()) + " bytes: " + got;
            reply += std::string(3 << 20, 'r');
            write_all(fd, reply.data(), reply.size());
        }));
        if (IsSkipped()) return;
        const std::string dest = server_ip();
        ChildResult r = topo_->n.run_in_child([&] {
            std::string local;
            std::string out = request_here(dest, 80, "hello", true, &local);
            // Too big to send back whole: its start and size say enough.
            return local + "\n" + out.substr(0, 24) + " size=" + std::to_string(out.size());
        });
        ASSERT_TRUE(r.ok) << r.output;
        const std::string client_end = r.output.substr(0, r.output.find('\n'));
        EXPECT_EQ(r.output.substr(client_end.size() + 1),
                  "eof got 5 bytes: hellorr size=" + std::to_string(4 + 18 + (3u << 20)))
            << daemon_->log();
        expect_via_proxy(client_end);
    }

    TempDir dir_;
    std::mutex mu_;  // the server's view, written by its handler threads
    Transfer server_side_;
    std::string server_peer_;
    bool v6_ = false;
    std::string hop_;
    std::unique_ptr<Topology> topo_;
    std::unique_ptr<IptablesRule> redirect_;
    std::unique_ptr<Server> server_;
    std::unique_ptr<Daemon> daemon_;
};

TEST_F(TransparentPair, V4OutputRedirectMovesMiBsBothWaysToOriginalDestination) {
    bulk(false);
}

TEST_F(TransparentPair, V4HalfCloseReachesServerAndReplyAfterEofArrives) {
    half_close(false);
}

TEST_F(TransparentPair, V6OutputRedirectMovesMiBsBothWaysToOriginalDestination) {
    bulk(true);
}

TEST_F(TransparentPair, V6HalfCloseReachesServerAndReplyAfterEofArrives) {
    half_close(true);
}

TEST_F(TransparentPair, UnixHopIsOwnedByPolicyUserWithMode0660) {
    ASSERT_NO_FATAL_FAILURE(start(false, [](int, const std::string&) {}));
    if (IsSkipped()) return;
    struct stat st {};
    ASSERT_EQ(::stat(hop_.c_str(), &st), 0) << hop_;
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_uid, 65534u);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
}

// ---- 3: golden header bytes, read by the test on the unix hop -----------------------------------

struct Capture {
    std::string hop;     // every byte the unix hop received
    std::string client;  // what the client saw (request_here)
    std::string log;     // pf-proxyd's log
};

class TransparentGolden : public ::testing::Test {
  protected:
    void SetUp() override { PFP_REQUIRE_NETNS(); }

    // egress alone, upstream the test's own unix listener; a client in N connects to dest:443
    // (REDIRECTed to egress) and sends "payload". `expect_log`: a line to wait for instead of a
    // connection on the hop.
    Capture capture(bool v6, const std::string& dest, const std::string& egress_extra,
                    const std::string& expect_log = "") {
        Capture out;
        Topology topo;
        IptablesRule redirect(
            topo.n, v6 ? IptablesRule::v6 : IptablesRule::v4, "nat", "OUTPUT",
            concat(concat({"-p", "tcp", "--dport", "443"}, kNotNobody),
                   {"-j", "REDIRECT", "--to-ports", std::to_string(kEgressPort)}));
        TempDir dir;
        const std::string hop = dir.path() + "/hop.sock";
        std::mutex mu;
        std::string captured;
        std::atomic<bool> done{false};
        Server reader(listen_unix(hop), [&](int fd, const std::string&) {
            std::string got;
            read_to_eof(fd, got);
            std::lock_guard lock(mu);
            captured += got;
            done = true;
        });
        const std::string listen = v6 ? "tcp:[::1]:" + std::to_string(kEgressPort)
                                      : "tcp:127.0.0.1:" + std::to_string(kEgressPort);
        auto d = start_daemon(
            topo.n, policy_of("{\"name\": \"egress\", \"listen\": " + quoted(listen) +
                              ", \"upstream\": " + quoted("unix:" + hop) +
                              ", \"send_original_destination\": true" + egress_extra + "}"));
        if (!d->wait_ready(10s)) {
            ADD_FAILURE() << "pf-proxyd not ready";
            out.log = d->log();
            return out;
        }
        ChildResult r = topo.n.run_in_child([&] { return request_here(dest, 443, "payload"); });
        EXPECT_TRUE(r.ok) << r.output;
        out.client = r.output;
        if (expect_log.empty()) {
            for (int i = 0; i < 300 && !done; ++i) std::this_thread::sleep_for(10ms);
        } else {
            EXPECT_TRUE(d->wait_log(expect_log, 5s)) << "no \"" << expect_log << "\"";
        }
        out.log = d->log();
        std::lock_guard lock(mu);
        out.hop = captured;
        return out;
    }
};

TEST_F(TransparentGolden, V4HeaderIsSevenBytesLittleEndianThenPayload) {
    Capture c = capture(false, "10.200.1.1", "");
    EXPECT_EQ(hex(c.hop), hex(bytes({0x04, 0x01, 0x01, 0xc8, 0x0a, 0xbb, 0x01}) + "payload"))
        << c.log;
    EXPECT_EQ(c.client, "eof ");
}

TEST_F(TransparentGolden, OysterV4HeaderIsSixBytesWithoutVersion) {
    Capture c = capture(false, "10.200.1.1", ", \"header\": \"oyster-v4\"");
    EXPECT_EQ(hex(c.hop), hex(bytes({0x01, 0x01, 0xc8, 0x0a, 0xbb, 0x01}) + "payload")) << c.log;
    EXPECT_EQ(c.client, "eof ");
}

TEST_F(TransparentGolden, V6HeaderIsNineteenBytesOctetsReversed) {
    Capture c = capture(true, "fd00:200::1122:3344:5566:7788", "");
    EXPECT_EQ(hex(c.hop), hex(bytes({0x06, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00,
                                     0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0xfd, 0xbb, 0x01}) +
                              "payload"))
        << c.log;
    EXPECT_EQ(c.client, "eof ");
}

TEST_F(TransparentGolden, OysterV4RefusesIPv6DestinationWithoutSendingAnything) {
    Capture c = capture(true, "fd00:200::1122:3344:5566:7788", ", \"header\": \"oyster-v4\"",
                        "cannot be sent in the oyster-v4 header");
    EXPECT_EQ(hex(c.hop), "");
    EXPECT_TRUE(c.client == "eof " || c.client == "reset ") << c.client;
}

// ---- 4: transparent-port-to-vsock and a fake Firecracker hybrid-vsock muxer ---------------------

// Copies both ways between a and b, passing each EOF on as shutdown(SHUT_WR), until both ended.
void relay(int a, int b) {
    bool a_open = true, b_open = true;
    char buf[65536];
    while (a_open || b_open) {
        pollfd p[2] = {{a, static_cast<short>(a_open ? POLLIN : 0), 0},
                       {b, static_cast<short>(b_open ? POLLIN : 0), 0}};
        if (::poll(p, 2, static_cast<int>(std::chrono::milliseconds(kIo).count())) <= 0) return;
        for (int i = 0; i < 2; ++i) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int from = i == 0 ? a : b, to = i == 0 ? b : a;
            ssize_t n = ::recv(from, buf, sizeof buf, 0);
            if (n <= 0) {
                if (n < 0) return;
                ::shutdown(to, SHUT_WR);
                (i == 0 ? a_open : b_open) = false;
                continue;
            }
            if (!write_all(to, buf, static_cast<size_t>(n))) return;
        }
    }
}

// Listens on a Unix socket like Firecracker's vsock device: reads "CONNECT <port>\n", answers
// "OK 1073741824\n" and relays to the TCP server (on loopback) mapped to that port; an unmapped
// port gets the connection closed, as Firecracker does when nothing listens in the guest.
class FakeMuxer {
  public:
    FakeMuxer(const std::string& path, std::map<uint32_t, uint16_t> ports)
        : ports_(std::move(ports)),
          server_(listen_unix(path), [this](int fd, const std::string&) { serve(fd); }) {}
    std::vector<std::string> lines() {
        std::lock_guard lock(mu_);
        return lines_;
    }
    void wait_idle() { server_.wait_idle(); }

  private:
    void serve(int fd) {
        std::string line;
        char ch;
        while (line.size() < 64 && ::recv(fd, &ch, 1, 0) == 1) {
            line += ch;
            if (ch == '\n') break;
        }
        {
            std::lock_guard lock(mu_);
            lines_.push_back(line);
        }
        if (line.rfind("CONNECT ", 0) != 0 || line.back() != '\n') return;
        auto it = ports_.find(static_cast<uint32_t>(std::stoul(line.substr(8))));
        if (it == ports_.end()) return;
        unique_fd up = connect_tcp(it->second, kIo);
        if (!up) return;
        const std::string ok = "OK 1073741824\n";
        if (!write_all(fd, ok.data(), ok.size())) return;
        relay(fd, up.get());
    }

    std::map<uint32_t, uint16_t> ports_;
    std::mutex mu_;
    std::vector<std::string> lines_;
    Server server_;
};

// On loopback of the test's own namespace: says which server it is, then echoes.
std::unique_ptr<Server> marker_server(uint16_t port, const std::string& name) {
    return std::make_unique<Server>(listen_tcp(port), [name](int fd, const std::string&) {
        std::string hello = name + "\n";
        if (!write_all(fd, hello.data(), hello.size())) return;
        char buf[4096];
        ssize_t n;
        while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
            if (!write_all(fd, buf, static_cast<size_t>(n))) return;
        ::shutdown(fd, SHUT_WR);
    });
}

TEST(TransparentPortToVsock, OriginalPortIsSentInConnectLineAndDataFlowsAfterOk) {
    PFP_REQUIRE_NETNS();
    Topology topo;
    IptablesRule redirect(topo.n, IptablesRule::v4, "nat", "OUTPUT",
                          concat(concat({"-p", "tcp", "-d", "10.200.0.0/16", "-m", "multiport",
                                         "--dports", "8080,9090,7070"},
                                        kNotNobody),
                                 {"-j", "REDIRECT", "--to-ports", std::to_string(kEgressPort)}));
    const uint16_t a = free_port(), b = free_port();
    auto server_a = marker_server(a, "server-8080");
    auto server_b = marker_server(b, "server-9090");
    TempDir dir;
    const std::string vsock = dir.path() + "/v.sock";
    FakeMuxer muxer(vsock, {{8080, a}, {9090, b}});
    auto d = start_daemon(topo.n, policy_of("{\"name\": \"ports\", \"listen\": \"tcp:127.0.0.1:" +
                                            std::to_string(kEgressPort) + "\", \"upstream\": " +
                                            quoted("fc-vsock:" + vsock + ":original-port") + "}"));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();

    // No server's handler thread may be exiting at a fork (transparent_support.hpp).
    auto idle = [&] {
        server_a->wait_idle();
        server_b->wait_idle();
        muxer.wait_idle();
    };
    for (uint16_t port : {8080, 9090}) {
        idle();
        ChildResult r = topo.n.run_in_child(
            [&] { return request_here("10.200.1.1", port, "hello " + std::to_string(port)); });
        ASSERT_TRUE(r.ok) << r.output;
        const std::string p = std::to_string(port);
        EXPECT_EQ(r.output, "eof server-" + p + "\nhello " + p) << d->log();
    }
    EXPECT_EQ(server_a->accepted(), 1);
    EXPECT_EQ(server_b->accepted(), 1);

    // Nothing behind port 7070: the muxer closes without "OK", and so does the proxy.
    idle();
    ChildResult r = topo.n.run_in_child([&] { return request_here("10.200.1.1", 7070, "x"); });
    ASSERT_TRUE(r.ok) << r.output;
    EXPECT_TRUE(r.output == "eof " || r.output == "reset ") << r.output;
    EXPECT_TRUE(d->wait_log("fc-vsock handshake failed", 5s)) << d->log();

    EXPECT_EQ(muxer.lines(),
              (std::vector<std::string>{"CONNECT 8080\n", "CONNECT 9090\n", "CONNECT 7070\n"}));
}

// ---- 5: PREROUTING across a veth pair
// ------------------------------------------------------------

TEST(TransparentPrerouting, ClientInOtherNamespaceReachesOriginalDestinationThroughPair) {
    PFP_REQUIRE_NETNS();
    // C (client) --veth-- P (pf-proxyd, PREROUTING REDIRECT) --veth-- S (server 10.200.1.1:80).
    NetNs c("c"), p("p"), s("s");
    Veth cp(c, "vc", p, "vp");
    Veth ps(p, "vq", s, "vs");
    c.ip({"addr", "add", "10.77.0.2/24", "dev", "vc"});
    c.ip({"route", "add", "10.200.0.0/16", "via", "10.77.0.1"});
    p.ip({"addr", "add", "10.77.0.1/24", "dev", "vp"});
    p.ip({"addr", "add", "10.200.0.1/16", "dev", "vq"});
    s.ip({"addr", "add", "10.200.1.1/16", "dev", "vs"});
    IptablesRule redirect(
        p, IptablesRule::v4, "nat", "PREROUTING",
        {"-i", "vp", "-p", "tcp", "-j", "REDIRECT", "--to-ports", std::to_string(kEgressPort)});
    Server server(listen_tcp_in(s, "10.200.1.1", 80), [](int fd, const std::string& peer) {
        std::string got;
        if (!read_to_eof(fd, got)) return;
        std::string reply = "S saw " + got + " from " + peer;
        write_all(fd, reply.data(), reply.size());
    });
    TempDir dir;
    auto d =
        start_daemon(p, policy_of(pair_entries("", "tcp:10.77.0.1:" + std::to_string(kEgressPort),
                                               dir.path() + "/hop.sock", "\"10.200.0.0/16:80\"",
                                               ", \"log_connections\": true")));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();
    ChildResult r = c.run_in_child([] { return request_here("10.200.1.1", 80, "via-prerouting"); });
    ASSERT_TRUE(r.ok) << r.output;
    EXPECT_EQ(r.output, "eof S saw via-prerouting from 10.200.0.1") << d->log();
    EXPECT_EQ(server.accepted(), 1);
    EXPECT_TRUE(d->wait_log("Original destination: 10.200.1.1:80", 5s)) << d->log();
}

}  // namespace
