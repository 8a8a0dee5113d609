// The raw packet tunnel end to end, as the enclave tools deploy it: namespaces A and B, joined by a
// veth pair for their addresses. In each, an iptables NFQUEUE rule on OUTPUT takes the packets
// bound for the other; pf-proxyd there runs nfqueue-to-stream (queue -> Unix stream) and
// stream-to-raw (the other direction's Unix stream -> raw socket on lo). So every packet of a
// TCP or UDP exchange between A and B goes through the tunnel both ways, and the veth carries
// none of them. TCP: handshake and 16 MiB each way with checksums; UDP: a request and its reply;
// IPv4 and IPv6. Then the /proc state of the running workers, and the faults: the stream's peer
// killed mid-transfer, and the nfqueue worker killed with -9.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <fstream>
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

std::string policy(const std::string& name, int queue, const std::string& out_sock,
                   const std::string& in_sock) {
    return R"({"user": "nobody", "drain_timeout": "1s", "proxies": [)"
           R"({"name": ")" +
           name + R"(-out", "listen": "nfqueue:)" + std::to_string(queue) +
           R"(", "upstream": "unix:)" + out_sock + R"("}, {"name": ")" + name +
           R"(-in", "listen": "unix:)" + in_sock + R"(", "upstream": "raw:route"}]})";
}

// Packets of the veth device in ns (tx + rx), from /sys inside the namespace.
uint64_t veth_packets(const NetNs& ns, const std::string& dev) {
    const std::string out = ns.exec({"cat", "/sys/class/net/" + dev + "/statistics/tx_packets",
                                     "/sys/class/net/" + dev + "/statistics/rx_packets"});
    std::istringstream in(out);
    uint64_t tx = 0, rx = 0;
    in >> tx >> rx;
    return tx + rx;
}

// "waiting" and the reader's port id of queue `q` in ns (/proc/net/netfilter/nfnetlink_queue:
// queue, portid, waiting, copy mode, range, queue dropped, user dropped, last id, 1).
struct QueueState {
    uint64_t portid = 0, waiting = 0;
    bool found = false;
};
QueueState queue_state(const NetNs& ns, int q) {
    std::istringstream in(ns.exec({"cat", "/proc/net/netfilter/nfnetlink_queue"}));
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        uint64_t num = 0;
        QueueState s;
        if (l >> num >> s.portid >> s.waiting && num == static_cast<uint64_t>(q)) {
            s.found = true;
            return s;
        }
    }
    return {};
}

// The pid of the daemon's worker whose command line names `proxy` ("a-out", "b-in").
pid_t worker_of(const Daemon& d, const std::string& proxy) {
    for (pid_t w : d.workers())
        if (cmdline_of(w).find(proxy + "/0") != std::string::npos) return w;
    return -1;
}

class NfqueueChain : public ::testing::Test {
  protected:
    void SetUp() override {
        PFP_REQUIRE_NETNS();
        a_ = std::make_unique<NetNs>("a");
        b_ = std::make_unique<NetNs>("b");
        veth_ = std::make_unique<Veth>(*a_, "va", *b_, "vb");
        a_->ip({"addr", "add", "10.99.0.1/24", "dev", "va"});
        a_->ip({"addr", "add", "fd00:99::1/64", "dev", "va", "nodad"});
        b_->ip({"addr", "add", "10.99.0.2/24", "dev", "vb"});
        b_->ip({"addr", "add", "fd00:99::2/64", "dev", "vb", "nodad"});
        for (auto fam : {IptablesRule::v4, IptablesRule::v6}) {
            const bool v6 = fam == IptablesRule::v6;
            rules_.push_back(std::make_unique<IptablesRule>(
                *a_, fam, "filter", "OUTPUT",
                std::vector<std::string>{"-d", v6 ? "fd00:99::2" : "10.99.0.2", "-j", "NFQUEUE",
                                         "--queue-num", "3"}));
            rules_.push_back(std::make_unique<IptablesRule>(
                *b_, fam, "filter", "OUTPUT",
                std::vector<std::string>{"-d", v6 ? "fd00:99::1" : "10.99.0.1", "-j", "NFQUEUE",
                                         "--queue-num", "5"}));
        }
        ab_ = dir_.path() + "/ab.sock";
        ba_ = dir_.path() + "/ba.sock";
        da_ = start_daemon(*a_, policy("a", 3, ab_, ba_));
        db_ = start_daemon(*b_, policy("b", 5, ba_, ab_));
        ASSERT_TRUE(da_->wait_ready(10s)) << da_->log();
        ASSERT_TRUE(db_->wait_ready(10s)) << db_->log();
        // Each side's stream to the other (the first attempt may come before the peer listens).
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
            // Each side received exactly what the other sent.
            Transfer expect;
            expect.received = kTotal;
            expect.sent_hash = server_side.received_hash;  // the client's bytes, as B saw them
            expect.received_hash = server_side.sent_hash;  // B's bytes, as A must have seen them
            EXPECT_EQ(r.output, describe(expect));
            EXPECT_EQ(server_side.received, kTotal) << da_->log() << db_->log();
            EXPECT_TRUE(server_side.ok);
        }
        EXPECT_EQ(peer.substr(0, peer.find(' ')), client_ip) << peer;  // "ip port"
        // ~25,000 packets crossed; the veth saw at most a few (IPv6 neighbour discovery).
        EXPECT_LT(veth_packets(*a_, "va") - veth_before_, 20u);
    }

    std::unique_ptr<NetNs> a_, b_;
    std::unique_ptr<Veth> veth_;
    std::vector<std::unique_ptr<IptablesRule>> rules_;
    TempDir dir_;
    std::string ab_, ba_;
    std::unique_ptr<Daemon> da_, db_;
    uint64_t veth_before_ = 0;
};

TEST_F(NfqueueChain, TcpHandshakeAnd16MiBEachWayThroughTheTunnelV4) {
    bulk("10.99.0.2", "10.99.0.1");
}

TEST_F(NfqueueChain, TcpHandshakeAnd16MiBEachWayThroughTheTunnelV6) {
    bulk("fd00:99::2", "fd00:99::1");
}

TEST_F(NfqueueChain, UdpRequestAndReplyThroughTheTunnelBothFamilies) {
    for (const std::string ip : {"10.99.0.2", "fd00:99::2"}) {
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
    EXPECT_LT(veth_packets(*a_, "va") - veth_before_, 20u);
}

TEST_F(NfqueueChain, TheReaderKeepsOnlyCapNetAdminAndTheInjectorNothing) {
    // Each daemon's workers: the nfqueue reader is the one whose CapEff is not zero.
    const auto workers = da_->wait_workers(2);
    ASSERT_EQ(workers.size(), 2u);
    int readers = 0, injectors = 0;
    for (pid_t w : workers) {
        const std::string caps = status_field(w, "CapEff");
        if (caps == "0000000000001000") ++readers;  // bit 12: CAP_NET_ADMIN, nothing else
        if (caps == "0000000000000000") ++injectors;
        EXPECT_EQ(status_field(w, "NoNewPrivs"), "1");
        EXPECT_EQ(status_field(w, "Seccomp"), "2");
        EXPECT_EQ(status_field(w, "Uid").substr(0, 5), "65534");
    }
    EXPECT_EQ(readers, 1);
    EXPECT_EQ(injectors, 1);
}

// The stream's peer (B's injector) killed with -9 in the middle of 16 MiB: A's reader logs the
// loss, gives the packets it cannot write their verdict, reconnects once B's supervisor has
// restarted the injector, and the transfer completes (TCP retransmits what was lost). No packet
// is left queued.
TEST_F(NfqueueChain, StreamPeerKilledMidTransferTrafficResumesAndNothingStaysQueued) {
    std::atomic<bool> killed{false};
    std::thread killer([&] {
        // Once the transfer is under way (the injector has a stream and bytes went through).
        wait_until([&] {
            return queue_state(*a_, 3).found && da_->log().find("connected") != std::string::npos;
        });
        std::this_thread::sleep_for(300ms);
        const pid_t w = worker_of(*db_, "b-in");
        if (w > 0 && ::kill(w, SIGKILL) == 0) killed = true;
    });
    bulk("10.99.0.2", "10.99.0.1");
    killer.join();
    ASSERT_TRUE(killed);
    // Seen as the peer's close or as a failed write (EPIPE), whichever the reader meets first.
    EXPECT_TRUE(da_->wait_log("stream to unix:" + ab_ + " lost: ", 5s)) << da_->log();
    EXPECT_NE(da_->log().find("packets get NF_DROP until it is back"), std::string::npos);
    EXPECT_TRUE(da_->wait_log("stream to unix:" + ab_ + " connected", 5s, 2)) << da_->log();
    EXPECT_TRUE(wait_until([&] { return queue_state(*a_, 3).waiting == 0; }, 5s));
    EXPECT_TRUE(wait_until([&] { return queue_state(*b_, 5).waiting == 0; }, 5s));
}

// The reader killed with -9: its supervisor restarts it on the same queue socket (the same port
// id in the kernel's table), and traffic flows again.
TEST_F(NfqueueChain, ReaderKilledIsRestartedOnTheSameQueue) {
    const QueueState before = queue_state(*a_, 3);
    ASSERT_TRUE(before.found);
    const pid_t w = worker_of(*da_, "a-out");
    ASSERT_GT(w, 0);
    ASSERT_EQ(::kill(w, SIGKILL), 0);
    ASSERT_TRUE(da_->wait_log("stream to unix:" + ab_ + " connected", 10s, 2)) << da_->log();
    EXPECT_NE(worker_of(*da_, "a-out"), w);
    EXPECT_EQ(queue_state(*a_, 3).portid, before.portid) << "a new socket was bound";
    bulk("10.99.0.2", "10.99.0.1");
    EXPECT_EQ(queue_state(*a_, 3).waiting, 0u);
}

}  // namespace
