// The raw packet tunnel with nflog sources: namespaces A and B joined by a veth pair, and in each
// an iptables NFLOG rule on OUTPUT for the packets bound for the other, which a route sends to a
// sink device (not out of the veth); pf-proxyd
// there runs nflog-to-stream (group -> Unix stream) and stream-to-raw (the other direction's Unix
// stream -> raw socket). Every packet of a TCP or UDP exchange between A and B goes through the
// tunnel both ways, and the veth carries none of them. Then the reader's /proc state (no
// capability at all), a hostile reader that tries to unbind its group, and the reader killed -9.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <sstream>
#include <string>
#include <tuple>

#include "packet_chain.hpp"

using namespace pfp::test;
using namespace pfp::test::packet_chain;
using pfp::unique_fd;

namespace {

// Group `g`'s line in ns (/proc/net/netfilter/nfnetlink_log: group, port id, packets held for the
// next batch, copy mode, copy range, flush timeout in hundredths of a second, refcount).
struct GroupState {
    bool found = false;
    uint64_t portid = 0, qlen = 0, copy_mode = 0, copy_range = 0, flush_timeout = 0;
};
GroupState group_state(const NetNs& ns, int g) {
    std::istringstream in(ns.exec({"cat", "/proc/net/netfilter/nfnetlink_log"}));
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        uint64_t num = 0;
        GroupState s;
        if (l >> num >> s.portid >> s.qlen >> s.copy_mode >> s.copy_range >> s.flush_timeout &&
            num == static_cast<uint64_t>(g)) {
            s.found = true;
            return s;
        }
    }
    return {};
}

// The port id bound to nflog group `g` in ns, 0 when none.
uint64_t group_portid(const NetNs& ns, int g) {
    return group_state(ns, g).portid;
}

class NflogChain : public PacketChain {
  protected:
    void SetUp() override {
        PFP_REQUIRE_NETNS();
        // The veth is deleted with the namespaces (asynchronously): an explicit `ip link del`
        // waits for the last references of the IPv6 routes the sink took over, which took minutes.
        make_namespaces("10.98.0.1", "fd00:98::1", "10.98.0.2", "fd00:98::2", false);
        // Locally generated packets: NFLOG copies them on OUTPUT, and a route to a sink device
        // takes the originals (a DROP there would fail the sender's own send with EPERM). The
        // sink is a veth pair inside the namespace, ARP off: what it receives is not for it.
        for (const auto& [ns, self, self6, dst, dst6, group] :
             {std::tuple{a_.get(), "10.98.0.1", "fd00:98::1", "10.98.0.2", "fd00:98::2", "3"},
              std::tuple{b_.get(), "10.98.0.2", "fd00:98::2", "10.98.0.1", "fd00:98::1", "5"}}) {
            // Also left to the namespace's deletion.
            ns->ip({"link", "add", "sink", "type", "veth", "peer", "name", "sinkpeer"});
            ns->ip({"link", "set", "sinkpeer", "up"});
            // NFLOG copies at most 65,531 bytes of a packet, and a TCP packet at OUTPUT is as large
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
    }

    // pf-proxyd in both namespaces (A's workers are `a_args`'s, when given; A's reader with
    // `a_options`; both injectors with `injector_options`), each stream up.
    void start(const std::vector<std::string>& a_args = {}, const std::string& a_options = "",
               const std::string& injector_options = "") {
        PacketChain::start(chain_policy("a", "nflog:3", ab_, ba_, a_options, injector_options),
                           chain_policy("b", "nflog:5", ba_, ab_, "", injector_options), a_args);
    }
};

TEST_F(NflogChain, TcpHandshakeAndDataEachWayThroughTheTunnelV4) {
    start();
    bulk("10.98.0.2", "10.98.0.1");
}

TEST_F(NflogChain, TcpHandshakeAndDataEachWayThroughTheTunnelV6) {
    start();
    bulk("fd00:98::2", "fd00:98::1");
}

// NFLOG hands TCP's GSO packets over whole (up to the sink's gso_max_size, 32 KiB). Here each
// injector's route (lo, to its own address) is held to 1500 bytes, as a real link would be, so a
// whole packet cannot go out as it came (EMSGSIZE: the transfer stalls); with `"route_mtu": 1500`
// at both injectors they are cut into segments that fit, which both TCP stacks take: 16 MiB each
// way arrive intact, and no injection is refused.
TEST_F(NflogChain, WholeTcpPacketsCutToTheRouteMtuCrossIntactV4) {
    for (const NetNs* ns : {a_.get(), b_.get()}) ns->ip({"link", "set", "lo", "mtu", "1500"});
    start({}, "", R"(, "route_mtu": 1500)");
    bulk("10.98.0.2", "10.98.0.1");
    EXPECT_EQ(da_->log().find("more packets or bytes out"), std::string::npos) << da_->log();
    EXPECT_EQ(db_->log().find("more packets or bytes out"), std::string::npos) << db_->log();
    EXPECT_EQ(db_->log().find("was not injected"), std::string::npos) << db_->log();
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

// The group's batching keys reach the kernel: its table shows the flush timeout; with a threshold
// of 20 and a 64 KiB batch buffer it holds 19 logged datagrams of 1000 bytes (its default buffer,
// one page, would have sent them on in batches of two or three) and sends all 20 when the 20th
// comes. The defaults (the other side, B) send each packet at once: flush timeout 0.
TEST_F(NflogChain, BatchingKeysReachTheKernel) {
    start({}, R"(, "nflog_threshold": 20, "nflog_timeout": "60s", "nflog_buffer": 65536)");
    EXPECT_EQ(group_state(*a_, 3).flush_timeout, 6000u);
    EXPECT_EQ(group_state(*b_, 5).flush_timeout, 0u);
    EXPECT_EQ(group_state(*a_, 3).copy_range, 65531u);  // what the kernel made of 0xffff

    unique_fd srv = b_->run([] {
        const pfp::SockAddr a = make_addr("10.98.0.2", 5353);
        unique_fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        EXPECT_EQ(::bind(fd.get(), a.get(), a.len), 0);
        set_timeouts(fd.get(), kIo);
        return fd;
    });
    unique_fd client =
        a_->run([] { return unique_fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)); });
    ASSERT_TRUE(srv && client);
    const pfp::SockAddr to = make_addr("10.98.0.2", 5353);
    const auto send_one = [&](int i) {
        std::string d(1000, 'd');
        d.replace(0, std::to_string(i).size(), std::to_string(i));
        return ::sendto(client.get(), d.data(), d.size(), 0, to.get(), to.len) ==
               static_cast<ssize_t>(d.size());
    };
    for (int i = 0; i < 19; ++i) ASSERT_TRUE(send_one(i)) << std::strerror(errno);
    EXPECT_TRUE(wait_until([&] { return group_state(*a_, 3).qlen == 19; }))
        << "held: " << group_state(*a_, 3).qlen;
    ASSERT_TRUE(send_one(19)) << std::strerror(errno);
    // All 20 arrive, in order, and nothing stays held.
    for (int i = 0; i < 20; ++i) {
        char buf[2048];
        const ssize_t n = ::recv(srv.get(), buf, sizeof buf, 0);
        ASSERT_EQ(n, 1000) << "datagram " << i << "\n" << da_->log();
        EXPECT_EQ(std::string(buf, std::to_string(i).size()), std::to_string(i));
    }
    EXPECT_EQ(group_state(*a_, 3).qlen, 0u);
}

}  // namespace
