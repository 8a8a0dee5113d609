// The raw packet tunnel with nflog sources: namespaces A and B joined by a veth pair, and in each
// an iptables NFLOG rule on OUTPUT for the packets bound for the other, which a route sends to a
// sink device (not out of the veth); pf-proxyd
// there runs nflog-to-stream (group -> Unix stream) and stream-to-raw (the other direction's Unix
// stream -> raw socket). Every packet of a TCP or UDP exchange between A and B goes through the
// tunnel both ways, and the veth carries none of them. Then the reader's /proc state (no
// capability at all), a hostile reader that tries to unbind its group, and the reader killed -9.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "harness.hpp"
#include "netns.hpp"
#include "transparent_support.hpp"

using namespace pfp::test;
using namespace pfp::test::transparent;
using pfp::unique_fd;

namespace {

constexpr uint16_t kTcpPort = 8080;
constexpr size_t kTotal = 16u << 20;

std::string policy(const std::string& name, int group, const std::string& out_sock,
                   const std::string& in_sock) {
    return R"({"user": "nobody", "drain_timeout": "1s", "proxies": [)"
           R"({"name": ")" +
           name + R"(-out", "listen": "nflog:)" + std::to_string(group) +
           R"(", "upstream": "unix:)" + out_sock + R"("}, {"name": ")" + name +
           R"(-in", "listen": "unix:)" + in_sock + R"(", "upstream": "raw:route"}]})";
}

uint64_t veth_packets(const NetNs& ns, const std::string& dev) {
    const std::string out = ns.exec({"cat", "/sys/class/net/" + dev + "/statistics/tx_packets",
                                     "/sys/class/net/" + dev + "/statistics/rx_packets"});
    std::istringstream in(out);
    uint64_t tx = 0, rx = 0;
    in >> tx >> rx;
    return tx + rx;
}

// The port id bound to nflog group `g` in ns, 0 when none (/proc/net/netfilter/nfnetlink_log:
// group, portid, qlen, copy mode, copy range, flush timeout, refcount).
uint64_t group_portid(const NetNs& ns, int g) {
    std::istringstream in(ns.exec({"cat", "/proc/net/netfilter/nfnetlink_log"}));
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        uint64_t num = 0, portid = 0;
        if (l >> num >> portid && num == static_cast<uint64_t>(g)) return portid;
    }
    return 0;
}

pid_t worker_of(const Daemon& d, const std::string& proxy) {
    for (pid_t w : d.workers())
        if (cmdline_of(w).find(proxy + "/0") != std::string::npos) return w;
    return -1;
}

class NflogChain : public ::testing::Test {
  protected:
    void SetUp() override {
        PFP_REQUIRE_NETNS();
        a_ = std::make_unique<NetNs>("a");
        b_ = std::make_unique<NetNs>("b");
        // Deleted with the namespaces (asynchronously): an explicit `ip link del` waits for the
        // last references of the IPv6 routes the sink took over, which took minutes.
        a_->ip({"link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b_->name()});
        a_->ip({"link", "set", "va", "up"});
        b_->ip({"link", "set", "vb", "up"});
        a_->ip({"addr", "add", "10.98.0.1/24", "dev", "va"});
        a_->ip({"addr", "add", "fd00:98::1/64", "dev", "va", "nodad"});
        b_->ip({"addr", "add", "10.98.0.2/24", "dev", "vb"});
        b_->ip({"addr", "add", "fd00:98::2/64", "dev", "vb", "nodad"});
        // Locally generated packets: NFLOG copies them on OUTPUT, and a route to a sink device
        // takes the originals (a DROP there would fail the sender's own send with EPERM). The
        // sink is a veth pair inside the namespace, ARP off: what it receives is not for it.
        for (const auto& [ns, self, self6, dst, dst6, group] :
             {std::tuple{a_.get(), "10.98.0.1", "fd00:98::1", "10.98.0.2", "fd00:98::2", "3"},
              std::tuple{b_.get(), "10.98.0.2", "fd00:98::2", "10.98.0.1", "fd00:98::1", "5"}}) {
            // Also left to the namespace's deletion.
            ns->ip({"link", "add", "sink", "type", "veth", "peer", "name", "sinkpeer"});
            ns->ip({"link", "set", "sinkpeer", "up"});
            // NFLOG copies at most 64 KiB - 1 of a packet, and a TCP packet at OUTPUT is as large
            // as its device's GSO allows (IPv6: 40 bytes over 64 KiB): kept below that.
            ns->ip({"link", "set", "sink", "arp", "off", "gso_max_size", "32768", "up"});
            ns->ip({"route", "add", std::string(dst) + "/32", "dev", "sink", "src", self});
            ns->ip({"-6", "route", "add", std::string(dst6) + "/128", "dev", "sink", "src", self6});
            for (auto fam : {IptablesRule::v4, IptablesRule::v6})
                rules_.push_back(std::make_unique<IptablesRule>(
                    *ns, fam, "filter", "OUTPUT",
                    std::vector<std::string>{"-d", fam == IptablesRule::v6 ? dst6 : dst, "-j",
                                             "NFLOG", "--nflog-group", group}));
        }
        ab_ = dir_.path() + "/ab.sock";
        ba_ = dir_.path() + "/ba.sock";
    }

    // pf-proxyd in both namespaces (A's workers are `a_worker`, when given), each stream up.
    void start(const std::vector<std::string>& a_args = {}) {
        da_ = start_daemon(*a_, policy("a", 3, ab_, ba_), a_args);
        db_ = start_daemon(*b_, policy("b", 5, ba_, ab_));
        ASSERT_TRUE(da_->wait_ready(10s)) << da_->log();
        ASSERT_TRUE(db_->wait_ready(10s)) << db_->log();
        ASSERT_TRUE(da_->wait_log("stream to unix:" + ab_ + " connected", 10s)) << da_->log();
        ASSERT_TRUE(db_->wait_log("stream to unix:" + ba_ + " connected", 10s)) << db_->log();
        veth_before_ = veth_packets(*a_, "va");
    }

    void bulk(const std::string& server_ip, const std::string& client_ip) {
        std::mutex mu;
        Transfer server_side;
        std::string peer;
        {
            Server server(listen_tcp_in(*b_, server_ip, kTcpPort),
                          [&](int fd, const std::string& p) {
                              Transfer t = send_and_receive(fd, kTotal, 1000);
                              std::lock_guard lock(mu);
                              server_side = t;
                              peer = p;
                          });
            ChildResult r = a_->run_in_child(
                [&] {
                    unique_fd c;
                    if (int err = connect_tcp_here(server_ip, kTcpPort, c, kIo))
                        return std::string("connect failed: ") + std::strerror(err);
                    return describe(send_and_receive(c.get(), kTotal, 7));
                },
                60s);
            ASSERT_TRUE(r.ok) << r.output << "\n" << da_->log() << db_->log();
            ASSERT_TRUE(wait_until([&] {
                std::lock_guard lock(mu);
                return !peer.empty();
            }));
            Transfer expect;
            expect.received = kTotal;
            expect.sent_hash = server_side.received_hash;
            expect.received_hash = server_side.sent_hash;
            EXPECT_EQ(r.output, describe(expect));
            EXPECT_EQ(server_side.received, kTotal) << da_->log() << db_->log();
            EXPECT_TRUE(server_side.ok);
        }
        EXPECT_EQ(peer.substr(0, peer.find(' ')), client_ip) << peer;
        EXPECT_LT(veth_packets(*a_, "va") - veth_before_, 20u);
    }

    // A UDP request from A to ip:5353 in B and B's reply, both through the tunnel.
    void udp_exchange(const std::string& ip) {
        unique_fd srv = b_->run([&] {
            const pfp::SockAddr a = make_addr(ip, 5353);
            unique_fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
            EXPECT_EQ(::bind(fd.get(), a.get(), a.len), 0);
            set_timeouts(fd.get(), kIo);
            return fd;
        });
        std::thread echo([&] {
            char buf[2048];
            sockaddr_storage from{};
            socklen_t len = sizeof from;
            const ssize_t n =
                ::recvfrom(srv.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
            if (n <= 0) return;
            const std::string reply = "B got " + std::string(buf, static_cast<size_t>(n));
            ::sendto(srv.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
                     len);
        });
        ChildResult r = a_->run_in_child([&] {
            const pfp::SockAddr a = make_addr(ip, 5353);
            unique_fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
            set_timeouts(fd.get(), kIo);
            const std::string q(1200, 'q');
            if (::sendto(fd.get(), q.data(), q.size(), 0, a.get(), a.len) < 0)
                return std::string("sendto failed");
            char buf[2048];
            const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
            return n < 0 ? std::string("no reply") : std::string(buf, static_cast<size_t>(n));
        });
        echo.join();
        EXPECT_TRUE(r.ok) << r.output;
        EXPECT_EQ(r.output, "B got " + std::string(1200, 'q')) << ip << "\n" << da_->log();
    }

    std::unique_ptr<NetNs> a_, b_;
    std::vector<std::unique_ptr<IptablesRule>> rules_;
    TempDir dir_;
    std::string ab_, ba_;
    std::unique_ptr<Daemon> da_, db_;
    uint64_t veth_before_ = 0;
};

TEST_F(NflogChain, TcpHandshakeAndDataEachWayThroughTheTunnelV4) {
    start();
    bulk("10.98.0.2", "10.98.0.1");
}

TEST_F(NflogChain, TcpHandshakeAndDataEachWayThroughTheTunnelV6) {
    start();
    bulk("fd00:98::2", "fd00:98::1");
}

TEST_F(NflogChain, UdpRequestAndReplyThroughTheTunnelBothFamilies) {
    start();
    for (const std::string ip : {"10.98.0.2", "fd00:98::2"}) udp_exchange(ip);
    EXPECT_LT(veth_packets(*a_, "va") - veth_before_, 20u);
}

TEST_F(NflogChain, TheReaderKeepsNoCapabilityAtAll) {
    start();
    const pid_t reader = worker_of(*da_, "a-out");
    ASSERT_GT(reader, 0);
    EXPECT_EQ(status_field(reader, "CapEff"), "0000000000000000");
    EXPECT_EQ(status_field(reader, "CapPrm"), "0000000000000000");
    EXPECT_EQ(status_field(reader, "CapAmb"), "0000000000000000");
    EXPECT_EQ(status_field(reader, "NoNewPrivs"), "1");
    EXPECT_EQ(status_field(reader, "Seccomp"), "2");
    EXPECT_EQ(status_field(reader, "Uid").substr(0, 5), "65534");
    // And it reads: a UDP exchange goes through it.
    udp_exchange("10.98.0.2");
}

// A compromised reader sends an UNBIND of its group on its netlink socket: the kernel refuses it
// (EPERM: the sender has no CAP_NET_ADMIN), the group stays bound to the supervisor's socket,
// and traffic still flows through it.
TEST_F(NflogChain, AHostileReaderCannotUnbindItsGroup) {
    ::setenv("PFPROXY_HOSTILE_PROXY", "a-out", 1);
    ::setenv("PFPROXY_HOSTILE", "nflog-unbind", 1);
    ::setenv("PFPROXY_HOSTILE_ARG", "3", 1);
    start({"--worker", bin_dir() + "/pf-proxy-worker-hostile"});
    ::unsetenv("PFPROXY_HOSTILE_PROXY");
    ::unsetenv("PFPROXY_HOSTILE");
    ::unsetenv("PFPROXY_HOSTILE_ARG");
    const uint64_t bound = group_portid(*a_, 3);
    ASSERT_NE(bound, 0u);
    ASSERT_TRUE(da_->wait_log("hostile: nflog-unbind: survived")) << da_->log();
    EXPECT_NE(da_->log().find("hostile: nflog-unbind: unbind refused: Operation not permitted"),
              std::string::npos)
        << da_->log();
    EXPECT_EQ(group_portid(*a_, 3), bound);
    udp_exchange("10.98.0.2");
}

// The reader killed with -9: its supervisor restarts it on the same group socket (the same port
// id in the kernel's table), and traffic flows again.
TEST_F(NflogChain, ReaderKilledIsRestartedOnTheSameGroup) {
    start();
    const uint64_t before = group_portid(*a_, 3);
    ASSERT_NE(before, 0u);
    const pid_t w = worker_of(*da_, "a-out");
    ASSERT_GT(w, 0);
    ASSERT_EQ(::kill(w, SIGKILL), 0);
    ASSERT_TRUE(da_->wait_log("stream to unix:" + ab_ + " connected", 10s, 2)) << da_->log();
    EXPECT_NE(worker_of(*da_, "a-out"), w);
    EXPECT_EQ(group_portid(*a_, 3), before) << "a new socket was bound";
    bulk("10.98.0.2", "10.98.0.1");
}

}  // namespace
