// The raw packet tunnel end to end, as the enclave tools deploy it: namespaces A and B, joined by a
// veth pair for their addresses. In each, an iptables NFQUEUE rule on OUTPUT takes the packets
// bound for the other; pf-proxyd there runs nfqueue-to-stream (queue -> Unix stream) and
// stream-to-raw (the other direction's Unix stream -> raw socket on lo). So every packet of a
// TCP or UDP exchange between A and B goes through the tunnel both ways, and the veth carries
// none of them. TCP: handshake and 16 MiB each way with checksums; UDP: a request and its reply;
// IPv4 and IPv6. With `"gso": true` the same transfer crosses in whole GSO packets, checksums
// finished by the reader. Then the /proc state of the running workers, and the faults: the
// stream's peer killed mid-transfer, and the nfqueue worker killed with -9.
#include <gtest/gtest.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "packet_chain.hpp"
#include "proxy_status.hpp"

using namespace pfp::test;
using namespace pfp::test::packet_chain;
using pfp::unique_fd;

namespace {

// The reader's port id, "waiting" and the last packet id (how many packets the queue has taken)
// of queue `q` in ns (/proc/net/netfilter/nfnetlink_queue: queue, portid, waiting, copy mode,
// range, queue dropped, user dropped, last id, 1).
struct QueueState {
    uint64_t portid = 0, waiting = 0, last_id = 0;
    bool found = false;
};
QueueState parse_queue_state(const std::string& table, int q) {
    std::istringstream in(table);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        uint64_t num = 0, skip = 0;
        QueueState s;
        if (l >> num >> s.portid >> s.waiting >> skip >> skip >> skip >> skip >> s.last_id &&
            num == static_cast<uint64_t>(q)) {
            s.found = true;
            return s;
        }
    }
    return {};
}
QueueState queue_state(const NetNs& ns, int q) {
    return parse_queue_state(ns.exec({"cat", "/proc/net/netfilter/nfnetlink_queue"}), q);
}
// The same for the namespace the calling thread has entered: a read, no process (fast enough to
// poll a queue taking tens of thousands of packets a second).
QueueState queue_state_here(int q) {
    std::ifstream f("/proc/thread-self/net/netfilter/nfnetlink_queue");
    std::ostringstream table;
    table << f.rdbuf();
    return parse_queue_state(table.str(), q);
}

class NfqueueChain : public PacketChain {
  protected:
    void SetUp() override {
        PFP_REQUIRE_NETNS();
        make_namespaces("10.99.0.1", "fd00:99::1", "10.99.0.2", "fd00:99::2", true);
        if (const std::string mtu = lo_mtu(); !mtu.empty())
            for (const NetNs* ns : {a_.get(), b_.get()}) ns->ip({"link", "set", "lo", "mtu", mtu});
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
        start(chain_policy("a", "nfqueue:3", ab_, ba_, reader_options(), injector_options()),
              chain_policy("b", "nfqueue:5", ba_, ab_, reader_options(), injector_options()));
    }

    // More keys of both readers' and both injectors' entries.
    virtual std::string reader_options() const { return ""; }
    virtual std::string injector_options() const { return ""; }
    // The MTU each injector's route (lo, to its own address) is held to ("": lo's 64 KiB).
    virtual std::string lo_mtu() const { return ""; }

    // The packet counters of proxy `name` in daemon d (status --json), once its reports count at
    // least `bytes_in` bytes read.
    static nlohmann::json counters(const Daemon& d, const std::string& name, uint64_t bytes_in) {
        nlohmann::json k;
        wait_until([&] {
            k = proxy_counters(d, name).value("packet", nlohmann::json());
            return k.is_object() && k.value("bytes_in", uint64_t{0}) >= bytes_in;
        });
        EXPECT_TRUE(k.is_object()) << "no counters of " << name << ": " << status_json(d).dump();
        return k;
    }

    // The average size of the packets A's reader took from its queue during bulk(): A sent
    // kTotal bytes and the ACKs of B's kTotal.
    double a_reader_average_packet() const {
        const nlohmann::json k = counters(*da_, "a-out", kTotal);
        EXPECT_GE(k.value("bytes_in", uint64_t{0}), kTotal) << k.dump();
        const auto packets = k.value("packets_in", uint64_t{0});
        return packets == 0 ? 0.0 : static_cast<double>(k["bytes_in"].get<uint64_t>()) / packets;
    }
};

// `"gso": true` on both readers: the kernel queues TCP's GSO packets whole.
class NfqueueGsoChain : public NfqueueChain {
  protected:
    std::string reader_options() const override { return R"(, "gso": true)"; }
};

// gso at the readers and `"route_mtu": 1500` at the injectors: the whole packets are cut again
// before injection, as where the far end routes them to a 1500-byte link.
class NfqueueGsoCutChain : public NfqueueGsoChain {
  protected:
    std::string injector_options() const override { return R"(, "route_mtu": 1500)"; }
};

// gso at the readers and `"route_mtu": "auto"` at the injectors, whose routes are held to 1500
// bytes as a real link would be: each injector learns that MTU from the kernel (a probe that
// sends nothing) and cuts to it.
class NfqueueGsoAutoChain : public NfqueueGsoChain {
  protected:
    std::string injector_options() const override { return R"(, "route_mtu": "auto")"; }
    std::string lo_mtu() const override { return "1500"; }
};

// A UDP socket bound to 10.99.0.2:5400 in B.
unique_fd udp_sink(const NetNs& b) {
    return b.run([] {
        const pfp::SockAddr at = make_addr("10.99.0.2", 5400);
        unique_fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!fd || ::bind(fd.get(), at.get(), at.len) < 0)
            throw std::runtime_error(std::string("udp bind: ") + std::strerror(errno));
        set_timeouts(fd.get(), 5s);
        return fd;
    });
}

// One UDP_SEGMENT send from A to B's sink: three datagrams of 1000 bytes in one GSO packet
// ('a', 'b', 'c'). Returns what sendto returned.
ssize_t udp_segmented_send(const NetNs& a) {
    return a.run([] {
        const pfp::SockAddr to = make_addr("10.99.0.2", 5400);
        unique_fd u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        const int size = 1000;
        if (::setsockopt(u.get(), IPPROTO_UDP, UDP_SEGMENT, &size, sizeof size) < 0)
            return ssize_t{-1};
        std::string three =
            std::string(1000, 'a') + std::string(1000, 'b') + std::string(1000, 'c');
        return ::sendto(u.get(), three.data(), three.size(), 0, to.get(), to.len);
    });
}

TEST_F(NfqueueChain, TcpHandshakeAnd16MiBEachWayThroughTheTunnelV4) {
    bulk("10.99.0.2", "10.99.0.1");
    // Without gso the kernel segments before queueing: no packet beyond the veth's 1500 bytes.
    EXPECT_LE(a_reader_average_packet(), 1500.0);
}

// With gso, the packets of A's side of the transfer cross whole: the 16 MiB in far fewer, larger
// packets than the veth's MTU allows, each with the checksum the reader finished (B's kernel
// drops a TCP packet whose checksum holds only the pseudo-header's sum, and the transfer would
// stall), and B's injector sends every one (to a local address: lo takes 64 KiB).
TEST_F(NfqueueGsoChain, TcpCrossesInWholeGsoPacketsWithFinishedChecksumsV4) {
    bulk("10.99.0.2", "10.99.0.1");
    EXPECT_GT(a_reader_average_packet(), 4096.0);
    EXPECT_EQ(counters(*db_, "b-in", 0).value("send_errors", uint64_t{1}), 0u);
}

TEST_F(NfqueueGsoChain, TcpCrossesInWholeGsoPacketsWithFinishedChecksumsV6) {
    bulk("fd00:99::2", "fd00:99::1");
    EXPECT_GT(a_reader_average_packet(), 4096.0);
    EXPECT_EQ(counters(*db_, "b-in", 0).value("send_errors", uint64_t{1}), 0u);
}

// Without gso the kernel cuts a UDP_SEGMENT send into its datagrams before queueing them: B gets
// the three, each whole.
TEST_F(NfqueueChain, AUdpSegmentedSendArrivesAsItsDatagrams) {
    unique_fd sink = udp_sink(*b_);
    ASSERT_EQ(udp_segmented_send(*a_), 3000) << std::strerror(errno);
    for (char c : {'a', 'b', 'c'}) {
        char buf[4096];
        const ssize_t n = ::recv(sink.get(), buf, sizeof buf, 0);
        ASSERT_EQ(n, 1000) << c << "\n" << da_->log();
        EXPECT_EQ(std::string(buf, 1000), std::string(1000, c));
    }
}

// With gso the same send is queued as one packet, whose datagrams cannot be told apart: the
// reader drops it with the reason logged instead of letting B receive one 3000-byte datagram,
// and counts it; the next plain datagram crosses.
TEST_F(NfqueueGsoChain, AUdpSegmentedSendIsDroppedWithItsReasonNotMerged) {
    unique_fd sink = udp_sink(*b_);
    ASSERT_EQ(udp_segmented_send(*a_), 3000) << std::strerror(errno);
    EXPECT_TRUE(da_->wait_log("queued a whole GSO packet of 3028 bytes that is not TCP", 5s))
        << da_->log();
    a_->run([] {
        const pfp::SockAddr to = make_addr("10.99.0.2", 5400);
        unique_fd u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        return ::sendto(u.get(), "plain", 5, 0, to.get(), to.len);
    });
    char buf[4096];
    const ssize_t n = ::recv(sink.get(), buf, sizeof buf, 0);
    ASSERT_EQ(n, 5) << "the first datagram B got is not the plain one\n" << da_->log();
    EXPECT_EQ(std::string(buf, 5), "plain");
    // Counted once the worker's next report is in.
    EXPECT_TRUE(wait_until([&] {
        return counters(*da_, "a-out", 0).value("dropped_malformed", uint64_t{0}) >= 1;
    })) << counters(*da_, "a-out", 0).dump();
}

// Whole across the tunnel, cut to 1500 bytes at the injector: B's and A's TCP take the segments
// (sequence numbers, flags and checksums right), and the 16 MiB each way arrive intact.
TEST_F(NfqueueGsoCutChain, TcpCrossesWholeAndIsCutToTheRouteMtuBeforeInjectionV4) {
    bulk("10.99.0.2", "10.99.0.1");
    EXPECT_GT(a_reader_average_packet(), 4096.0);
    // The injector counts the stream's packets, a cut one once: what it read went out, on its
    // first stream (a report of more out than in would have had the supervisor kill it).
    const nlohmann::json in = counters(*db_, "b-in", kTotal);  // A's 16 MiB read
    EXPECT_EQ(in.value("send_errors", uint64_t{1}), 0u);
    EXPECT_EQ(in.value("streams", uint64_t{0}), 1u) << db_->log();
    EXPECT_EQ(in.value("packets_out", uint64_t{0}), in.value("packets_in", uint64_t{1}));
    EXPECT_EQ(in.value("bytes_out", uint64_t{0}), in.value("bytes_in", uint64_t{1}));
    EXPECT_GT(in.value("packets_cut", uint64_t{0}), 0u) << "no whole packet was cut";
}

TEST_F(NfqueueGsoCutChain, TcpCrossesWholeAndIsCutToTheRouteMtuBeforeInjectionV6) {
    bulk("fd00:99::2", "fd00:99::1");
    const nlohmann::json in = counters(*db_, "b-in", kTotal);
    EXPECT_EQ(in.value("send_errors", uint64_t{1}), 0u);
    EXPECT_EQ(in.value("streams", uint64_t{0}), 1u) << db_->log();
}

// Whole across the tunnel; each injector learns its route's 1500 bytes before the first whole
// packet goes out, so none is refused (without "auto" the transfer stalls on EMSGSIZE), and the
// 16 MiB each way arrive intact, for each family.
TEST_F(NfqueueGsoAutoChain, TcpCrossesWholeAndIsCutToTheLearnedRouteMtuV4) {
    bulk("10.99.0.2", "10.99.0.1");
    EXPECT_GT(a_reader_average_packet(), 4096.0);
    const nlohmann::json in = counters(*db_, "b-in", kTotal);
    EXPECT_EQ(in.value("send_errors", uint64_t{1}), 0u) << db_->log();
    EXPECT_EQ(in.value("packets_out", uint64_t{0}), in.value("packets_in", uint64_t{1}));
    EXPECT_GT(in.value("packets_cut", uint64_t{0}), 0u) << "no whole packet was cut";
}

TEST_F(NfqueueGsoAutoChain, TcpCrossesWholeAndIsCutToTheLearnedRouteMtuV6) {
    bulk("fd00:99::2", "fd00:99::1");
    const nlohmann::json in = counters(*db_, "b-in", kTotal);
    EXPECT_EQ(in.value("send_errors", uint64_t{1}), 0u) << db_->log();
    EXPECT_EQ(in.value("packets_out", uint64_t{0}), in.value("packets_in", uint64_t{1}));
}

TEST_F(NfqueueGsoChain, UdpRequestAndReplyBothFamilies) {
    for (const std::string ip : {"10.99.0.2", "fd00:99::2"}) udp_exchange(ip);
}

TEST_F(NfqueueChain, TcpHandshakeAnd16MiBEachWayThroughTheTunnelV6) {
    bulk("fd00:99::2", "fd00:99::1");
}

TEST_F(NfqueueChain, UdpRequestAndReplyThroughTheTunnelBothFamilies) {
    for (const std::string ip : {"10.99.0.2", "fd00:99::2"}) udp_exchange(ip);
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
//
// The killer thread starts once B has accepted the connection, never before: bulk() forks the
// client's namespace child, and a thread starting or reading logs at that fork could leave an
// ASan allocator lock taken in the child, which then hung until its 60 s timeout (netns.hpp).
TEST_F(NfqueueChain, StreamPeerKilledMidTransferTrafficResumesAndNothingStaysQueued) {
    // About a sixth of the ~13000 packets A queues for the transfer (16 MiB and its ACKs).
    constexpr uint64_t kKillAfterPackets = 2000;
    std::atomic<bool> killed{false};
    std::atomic<uint64_t> killed_at{0};
    std::thread killer;
    bulk("10.99.0.2", "10.99.0.1", [&] {
        killer = std::thread([&] {
            // Once the transfer is under way: A's queue took that many of its packets.
            a_->enter();
            uint64_t passed = 0;
            wait_until(
                [&] {
                    passed = queue_state_here(3).last_id;
                    return passed >= kKillAfterPackets;
                },
                20s);
            const pid_t w = worker_of(*db_, "b-in");
            if (passed >= kKillAfterPackets && w > 0 && ::kill(w, SIGKILL) == 0) {
                killed_at = passed;
                killed = true;
            }
        });
    });
    if (killer.joinable()) killer.join();
    ASSERT_TRUE(killed);
    // Mid-transfer: thousands of A's packets went through the queue after the kill.
    const uint64_t last_id = queue_state(*a_, 3).last_id;
    EXPECT_GT(last_id, killed_at + kKillAfterPackets) << "killed after packet " << killed_at;
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
