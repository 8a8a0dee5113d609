// Transparent proxying with real iptables REDIRECT inside network namespaces the tests create:
// ip-to-vsock-transparent -> (unix hop) -> vsock-to-ip-transparent, the transparent header's
// golden bytes, transparent-port-to-vsock against a fake Firecracker hybrid-vsock muxer, a
// PREROUTING redirect across a veth pair, and the allow / allowed_sources denials.
//
// Every pf-proxyd here runs with "user": "nobody"; its workers' own outbound connections are
// excluded from the OUTPUT redirects with `-m owner ! --uid-owner 65534`.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "netns.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr uint16_t kEgressPort = 15001;  // fresh namespaces: every port is free
constexpr uint16_t kEgressPort2 = 15002;
constexpr auto kIo = std::chrono::seconds(8);  // every socket operation in these tests

const std::vector<std::string> kNotNobody = {"-m", "owner", "!", "--uid-owner", "65534"};

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::string hex(const std::string& s) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        if (!out.empty()) out += ' ';
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string bytes(std::initializer_list<unsigned> b) {
    std::string s;
    for (unsigned x : b) s += static_cast<char>(x);
    return s;
}

std::string peer_ip(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    else if (ss.ss_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf,
                    sizeof buf);
    return buf;
}

uint16_t peer_port(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
    return 0;
}

// "ip port" of a connected socket's own end.
std::string local_address(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    return peer_ip(ss) + " " + std::to_string(peer_port(ss));
}

// Accepts on a ready listener (TCP or Unix, any namespace) and runs `handle(fd, peer ip)` on each
// connection in its own thread; when the handler returns, the connection is shut down. The
// destructor shuts every connection down too, so a handler blocked in recv() ends at once when a
// test fails. The fds themselves are closed only by the destructor (no fd reuse races).
class Server {
  public:
    using Handler = std::function<void(int fd, const std::string& peer)>;
    Server(unique_fd listener, Handler handle)
        : listener_(std::move(listener)), handle_(std::move(handle)) {
        thread_ = std::thread([this] { accept_loop(); });
    }
    ~Server() {
        stop_ = true;
        thread_.join();
        {
            std::lock_guard lock(mu_);
            for (auto& c : conns_) ::shutdown(c.get(), SHUT_RDWR);
        }
        for (auto& t : workers_) t.join();
    }
    int accepted() const { return accepted_; }
    // "ip port" of every accepted connection's peer, in order.
    std::vector<std::string> peers() {
        std::lock_guard lock(mu_);
        return peers_;
    }

  private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{listener_.get(), POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            int fd =
                ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
            if (fd < 0) continue;
            ++accepted_;
            set_timeouts(fd, kIo);
            {
                std::lock_guard lock(mu_);
                conns_.emplace_back(fd);  // closed by the destructor, after the handlers ended
                peers_.push_back(peer_ip(ss) + " " + std::to_string(peer_port(ss)));
            }
            workers_.emplace_back([this, fd, peer = peer_ip(ss)] {
                handle_(fd, peer);
                ::shutdown(fd, SHUT_RDWR);  // the handler is done: the peer sees the end
            });
        }
    }

    unique_fd listener_;
    Handler handle_;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::mutex mu_;
    std::vector<unique_fd> conns_;
    std::vector<std::string> peers_;
    std::thread thread_;
    std::vector<std::thread> workers_;
};

std::string describe(const Transfer& t) {
    std::ostringstream s;
    s << "ok=" << t.ok << " received=" << t.received << " sent_hash=" << t.sent_hash
      << " received_hash=" << t.received_hash;
    return s.str();
}

// A client of a transparent path: connects to ip:port from the namespace it runs in (inside
// run_in_child), sends `request`, shuts down writing and reads until the end. Returns
// "connect failed: ..." or "<how it ended> <what it received>".
std::string request_here(const std::string& ip, uint16_t port, const std::string& request,
                         bool shut_write = true, std::string* local = nullptr) {
    unique_fd c;
    if (int err = connect_tcp_here(ip, port, c, kIo))
        return std::string("connect failed: ") + std::strerror(err);
    if (local) *local = local_address(c.get());
    if (!request.empty() && !write_all(c.get(), request.data(), request.size()))
        return std::string("send failed: ") + std::strerror(errno);
    if (shut_write) ::shutdown(c.get(), SHUT_WR);
    std::string got;
    std::string end = read_until_end(c.get(), got);
    return end + " " + got;
}

// Two namespaces joined by a veth: N holds the client and pf-proxyd, S the real servers.
//   N: vn 10.200.0.1/16, fd00:200::1/64     S: vs 10.200.1.1/16, fd00:200::2/64
struct Topology {
    NetNs n{"n"};
    NetNs s{"s"};
    Veth veth{n, "vn", s, "vs"};
    Topology() {
        n.ip({"addr", "add", "10.200.0.1/16", "dev", "vn"});
        n.ip({"addr", "add", "fd00:200::1/64", "dev", "vn", "nodad"});
        s.ip({"addr", "add", "10.200.1.1/16", "dev", "vs"});
        s.ip({"addr", "add", "fd00:200::2/64", "dev", "vs", "nodad"});
    }
};

std::string quoted(const std::string& s) {
    return "\"" + s + "\"";
}

// The pair: egress (ip-to-vsock-transparent) on `egress_listen` -> unix hop -> egress-host
// (vsock-to-ip-transparent) -> the destination the header names, if `allow` admits it.
std::string pair_entries(const std::string& suffix, const std::string& egress_listen,
                         const std::string& hop, const std::string& allow,
                         const std::string& egress_extra = "") {
    return "{\"name\": \"egress" + suffix + "\", \"listen\": " + quoted(egress_listen) +
           ", \"upstream\": " + quoted("unix:" + hop) + ", \"send_original_destination\": true" +
           egress_extra + "}, {\"name\": \"egress-host" + suffix +
           "\", \"listen\": " + quoted("unix:" + hop) +
           ", \"upstream\": \"destination-header\", \"allow\": [" + allow + "]}";
}

std::string policy_of(const std::string& entries) {
    return "{\"user\": \"nobody\", \"drain_timeout\": \"1s\", \"proxies\": [" + entries + "]}";
}

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

    for (uint16_t port : {8080, 9090}) {
        ChildResult r = topo.n.run_in_child(
            [&] { return request_here("10.200.1.1", port, "hello " + std::to_string(port)); });
        ASSERT_TRUE(r.ok) << r.output;
        const std::string p = std::to_string(port);
        EXPECT_EQ(r.output, "eof server-" + p + "\nhello " + p) << d->log();
    }
    EXPECT_EQ(server_a->accepted(), 1);
    EXPECT_EQ(server_b->accepted(), 1);

    // Nothing behind port 7070: the muxer closes without "OK", and so does the proxy.
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
