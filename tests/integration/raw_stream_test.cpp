// The stream-to-raw kind with real raw sockets: pf-proxyd in namespace P listens on a Unix socket
// and injects the packets written there through raw sockets bound to a veth device; UDP servers in
// namespace S receive them. IPv4 and IPv6, several packets per write and a packet split across
// writes; an invalid header ends the stream and the client that waited meanwhile is served next;
// the running worker holds no capability under its seccomp filter.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/byte_order.hpp"
#include "common/l4_checksum.hpp"
#include "harness.hpp"
#include "netns.hpp"
#include "proxy_status.hpp"
#include "raw_packets.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr uint16_t kPort = 5000;

class RawStream : public ::testing::Test {
  protected:
    void SetUp() override {
        PFP_REQUIRE_NETNS();
        p_ = std::make_unique<NetNs>("p");
        s_ = std::make_unique<NetNs>("s");
        veth_ = std::make_unique<Veth>(*p_, "vp", *s_, "vs");
        p_->ip({"addr", "add", "10.88.0.1/24", "dev", "vp"});
        p_->ip({"addr", "add", "fd00:88::1/64", "dev", "vp", "nodad"});
        s_->ip({"addr", "add", "10.88.0.2/24", "dev", "vs"});
        s_->ip({"addr", "add", "fd00:88::2/64", "dev", "vs", "nodad"});
        udp4_ = udp_in(*s_, "10.88.0.2");
        udp6_ = udp_in(*s_, "fd00:88::2");
        sock_ = dir_.path() + "/raw.sock";
        daemon_ = start_daemon(
            *p_, R"({"user": "nobody", "drain_timeout": "1s", "proxies": [{"name": "inject", )"
                 R"("listen": "unix:)" +
                     sock_ + R"(", "upstream": "raw:vp", "log_connections": true)" +
                     injector_keys() + "}]}");
        ASSERT_TRUE(daemon_->wait_ready(10s)) << daemon_->log();
    }

    // More keys of the injector's entry (", ..." JSON).
    virtual std::string injector_keys() const { return ""; }

    static unique_fd udp_in(const NetNs& ns, const std::string& ip) {
        return ns.run([&] {
            const pfp::SockAddr a = make_addr(ip, kPort);
            unique_fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
            if (!fd || ::bind(fd.get(), a.get(), a.len) < 0)
                throw std::runtime_error("udp bind " + ip + ": " + std::strerror(errno));
            set_timeouts(fd.get(), 5s);
            return fd;
        });
    }

    unique_fd connect_stream() const {
        unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        const std::string& path = unix_path_.empty() ? sock_ : unix_path_;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
        set_timeouts(fd.get(), 5s);
        return fd;
    }

    // The next datagram's payload and sender ("" on timeout).
    static std::string receive(int fd, std::string* from = nullptr) {
        char buf[2048];
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        const ssize_t n =
            ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
        if (n < 0) return "";
        if (from) *from = pfp::format_sockaddr(reinterpret_cast<sockaddr*>(&peer), len);
        return std::string(buf, static_cast<size_t>(n));
    }

    std::unique_ptr<NetNs> p_, s_;
    std::unique_ptr<Veth> veth_;
    unique_fd udp4_, udp6_;
    TempDir dir_;
    std::string sock_;
    std::string unix_path_;  // connect_stream() goes here instead when set
    std::unique_ptr<Daemon> daemon_;
};

TEST_F(RawStream, Ipv4AndIpv6PacketsReachServersInTheOtherNamespace) {
    unique_fd c = connect_stream();
    ASSERT_TRUE(c);
    // 40 packets of both families in one write.
    Bytes burst;
    for (int i = 0; i < 20; ++i) {
        const Bytes a = udp_packet("10.88.0.1", "10.88.0.2", "v4-" + std::to_string(i));
        const Bytes b = udp_packet("fd00:88::1", "fd00:88::2", "v6-" + std::to_string(i));
        burst.insert(burst.end(), a.begin(), a.end());
        burst.insert(burst.end(), b.begin(), b.end());
    }
    ASSERT_TRUE(write_all(c.get(), burst.data(), burst.size()));
    for (int i = 0; i < 20; ++i) {
        std::string from4, from6;
        EXPECT_EQ(receive(udp4_.get(), &from4), "v4-" + std::to_string(i)) << daemon_->log();
        EXPECT_EQ(from4, "10.88.0.1:4000");
        EXPECT_EQ(receive(udp6_.get(), &from6), "v6-" + std::to_string(i)) << daemon_->log();
        EXPECT_EQ(from6, "[fd00:88::1]:4000");
    }
    // One 1400-byte packet a byte at a time.
    const Bytes big = udp_packet("10.88.0.1", "10.88.0.2", std::string(1372, 'x'));
    ASSERT_EQ(big.size(), 1400u);
    for (uint8_t byte : big) ASSERT_TRUE(write_all(c.get(), &byte, 1));
    EXPECT_EQ(receive(udp4_.get()), std::string(1372, 'x'));
    EXPECT_TRUE(daemon_->wait_log("packet stream from", 5s)) << daemon_->log();
}

// A packet larger than its route's MTU (the veth's 1500 bytes) cannot be sent whole: the injector
// counts it, says why with its size, and the stream goes on with the next packet.
TEST_F(RawStream, APacketAboveItsRoutesMtuIsRefusedAndTheStreamGoesOn) {
    unique_fd c = connect_stream();
    ASSERT_TRUE(c);
    const Bytes big = udp_packet("10.88.0.1", "10.88.0.2", std::string(2972, 'b'));
    ASSERT_EQ(big.size(), 3000u);
    const Bytes next = udp_packet("10.88.0.1", "10.88.0.2", "after-the-big-one");
    ASSERT_TRUE(write_all(c.get(), big.data(), big.size()));
    ASSERT_TRUE(write_all(c.get(), next.data(), next.size()));
    EXPECT_EQ(receive(udp4_.get()), "after-the-big-one") << daemon_->log();
    EXPECT_TRUE(
        daemon_->wait_log("was not injected: a packet of 3000 bytes is larger than its "
                          "route's MTU of 1500 (EMSGSIZE); a whole GSO packet",
                          5s))
        << daemon_->log();
}

using pfp::be16;
using pfp::be32;

// A raw TCP socket in S: it sees each arriving TCP packet before TCP does.
unique_fd tcp_capture(const NetNs& s, int family) {
    return s.run([family] {
        unique_fd fd(::socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP));
        if (fd) set_timeouts(fd.get(), 5s);
        return fd;
    });
}

// What arrived at S of one whole TCP packet the test wrote (source port 40000, sequence `seq`):
// the payloads put back together, and the size of each IP packet that carried them.
struct Arrived {
    std::string payload;
    std::vector<size_t> sizes;
};

// Reads `cap` until `want` payload bytes of the flow arrived (or 5 s pass without a packet),
// checking each packet as a receiver would: its sequence number follows the bytes before it, its
// checksum verifies, and FIN is on the last only.
Arrived arrivals(int cap, bool v6, size_t want, uint32_t seq) {
    Arrived a;
    while (a.payload.size() < want) {
        uint8_t buf[70000];
        sockaddr_in6 from{};
        socklen_t len = sizeof from;
        const ssize_t n =
            ::recvfrom(cap, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n <= 0) {
            ADD_FAILURE() << "nothing more arrived after " << a.sizes.size() << " packets";
            return a;
        }
        // IPv4 raw sockets give the IP header too; IPv6 ones the TCP segment alone.
        const size_t ip = v6 ? 0 : static_cast<size_t>(buf[0] & 0x0f) * 4;
        const uint8_t* t = buf + ip;
        if (be16(t) != 40000) continue;  // not the test's flow
        EXPECT_EQ(be32(t + 4), seq + a.payload.size()) << "packet " << a.sizes.size();
        a.payload.append(reinterpret_cast<const char*>(t + 20), static_cast<size_t>(n) - ip - 20);
        a.sizes.push_back(static_cast<size_t>(n) + (v6 ? 40 : 0));
        EXPECT_EQ(bool(t[13] & 0x01), a.payload.size() == want) << "FIN on the last";
        // The receiver's check: pseudo-header and segment sum to 0xffff.
        uint64_t sum = 0;
        if (v6) {
            uint8_t dst6[16];
            ::inet_pton(AF_INET6, "fd00:88::2", dst6);
            sum = pfp::checksum_add(0, {from.sin6_addr.s6_addr, 16});
            sum = pfp::checksum_add(sum, {dst6, 16});
        } else {
            sum = pfp::checksum_add(0, {buf + 12, 8});
        }
        sum += IPPROTO_TCP + static_cast<size_t>(n) - ip;
        sum = pfp::checksum_add(sum, {t, static_cast<size_t>(n) - ip});
        while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
        EXPECT_EQ(sum, 0xffffu) << "packet " << a.sizes.size();
    }
    return a;
}

std::string pattern(size_t n) {
    std::string payload(n, '\0');
    for (size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 7 + 1);
    return payload;
}

// `"route_mtu": 1500`, the veth's MTU.
class RawStreamCut : public RawStream {
  protected:
    std::string injector_keys() const override { return R"(, "route_mtu": 1500)"; }

    // A whole TCP packet of 20,000 payload bytes of each family (a GSO packet as a reader with
    // "gso" queues it) leaves through the 1500-byte veth as full segments that fit, in order,
    // whose payloads are the original's.
    void expect_cut_to_the_veth() {
        unique_fd cap4 = tcp_capture(*s_, AF_INET), cap6 = tcp_capture(*s_, AF_INET6);
        ASSERT_TRUE(cap4 && cap6);
        const std::string payload = pattern(20000);
        unique_fd c = connect_stream();
        ASSERT_TRUE(c);
        for (const char* dst : {"10.88.0.2", "fd00:88::2"}) {
            const Bytes p =
                tcp_packet(dst[0] == '1' ? "10.88.0.1" : "fd00:88::1", dst, payload, 1000);
            ASSERT_TRUE(write_all(c.get(), p.data(), p.size()));
        }
        for (const bool v6 : {false, true}) {
            SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
            const Arrived a = arrivals(v6 ? cap6.get() : cap4.get(), v6, payload.size(), 1000);
            EXPECT_TRUE(a.payload == payload) << "the segments' payloads are not the original's\n"
                                              << daemon_->log();
            for (const size_t n : a.sizes) EXPECT_LE(n, 1500u);
            const size_t mss = 1500 - (v6 ? 40 : 20) - 20;  // every segment but the last is full
            EXPECT_EQ(a.sizes.size(), (payload.size() + mss - 1) / mss);
        }
        // Nothing was refused: the stream's summary names no packet not injected.
        c.reset();
        EXPECT_TRUE(daemon_->wait_log("ended after 2 packets: closed by the peer", 5s))
            << daemon_->log();
        // And the counters say both went out cut (once the worker's next report is in).
        EXPECT_TRUE(wait_until([&] { return packet_counters().value("packets_cut", 0) == 2; }))
            << packet_counters().dump();
        EXPECT_EQ(packet_counters().value("packets_out", 0), 2);
    }

    // The injector's counters in `pf-proxyctl status --json` ({} until they can be read).
    nlohmann::json packet_counters() const {
        return proxy_counters(*daemon_, "inject").value("packet", nlohmann::json::object());
    }
};

TEST_F(RawStreamCut, WholeTcpPacketsLeaveAsSegmentsThatFitTheRoute) {
    expect_cut_to_the_veth();
}

// `"route_mtu": "auto"`: the injector asks the kernel for each destination's route MTU (a probe
// that sends nothing) instead of being told.
class RawStreamAutoMtu : public RawStreamCut {
  protected:
    std::string injector_keys() const override { return R"(, "route_mtu": "auto")"; }
};

// Learned from the probes, not told: the same segments as with `"route_mtu": 1500`, and no
// packet refused on the way.
TEST_F(RawStreamAutoMtu, WholeTcpPacketsLeaveAsSegmentsThatFitTheLearnedMtu) {
    expect_cut_to_the_veth();
}

// A route that takes the whole packet gets it whole. When its MTU then goes down, the first
// packet the injector still thinks fits is refused, and the kernel's report of the new MTU is
// learned from that refusal: the next packets go out cut to it.
TEST_F(RawStreamAutoMtu, ARouteWhoseMtuWentDownCostsOnePacketThenItsPacketsAreCut) {
    for (auto [ns, dev] : {std::pair{p_.get(), "vp"}, std::pair{s_.get(), "vs"}})
        ns->ip({"link", "set", dev, "mtu", "65535"});
    unique_fd cap = tcp_capture(*s_, AF_INET);
    ASSERT_TRUE(cap);
    const std::string payload = pattern(20000);
    unique_fd c = connect_stream();
    ASSERT_TRUE(c);
    const Bytes whole = tcp_packet("10.88.0.1", "10.88.0.2", payload, 1000);
    ASSERT_TRUE(write_all(c.get(), whole.data(), whole.size()));
    Arrived a = arrivals(cap.get(), false, payload.size(), 1000);
    EXPECT_EQ(a.sizes, std::vector<size_t>{20040}) << daemon_->log();

    p_->ip({"link", "set", "vp", "mtu", "1500"});
    const Bytes refused = tcp_packet("10.88.0.1", "10.88.0.2", payload, 100'000);
    ASSERT_TRUE(write_all(c.get(), refused.data(), refused.size()));
    ASSERT_TRUE(
        daemon_->wait_log("was not injected: a packet of 20040 bytes is larger than its "
                          "route's MTU of 1500 (EMSGSIZE); \"route_mtu\": \"auto\"",
                          5s))
        << daemon_->log();
    // Written once the refusal is in (read with it, it would have been batched whole with it).
    const Bytes next = tcp_packet("10.88.0.1", "10.88.0.2", payload, 200'000);
    ASSERT_TRUE(write_all(c.get(), next.data(), next.size()));
    // The refused one (sequence 100000) never arrives: the first packet S sees is the next's.
    a = arrivals(cap.get(), false, payload.size(), 200'000);
    EXPECT_TRUE(a.payload == payload) << daemon_->log();
    EXPECT_EQ(a.sizes.size(), 14u);
    for (const size_t n : a.sizes) EXPECT_LE(n, 1500u);
    c.reset();
    EXPECT_TRUE(daemon_->wait_log("ended after 3 packets, 1 not injected: closed by the peer", 5s))
        << daemon_->log();
    // One whole, one refused, one cut.
    nlohmann::json k;
    EXPECT_TRUE(wait_until([&] {
        k = packet_counters();
        return k.value("packets_in", 0) == 3;
    })) << k.dump();
    EXPECT_EQ(k.value("packets_out", 0), 2) << k.dump();
    EXPECT_EQ(k.value("send_errors", 0), 1) << k.dump();
    EXPECT_EQ(k.value("packets_cut", 0), 1) << k.dump();
}

TEST_F(RawStream, InvalidHeaderEndsTheStreamAndTheWaitingClientIsServedNext) {
    unique_fd first = connect_stream();
    ASSERT_TRUE(first);
    const Bytes good = udp_packet("10.88.0.1", "10.88.0.2", "first");
    ASSERT_TRUE(write_all(first.get(), good.data(), good.size()));
    ASSERT_EQ(receive(udp4_.get()), "first") << daemon_->log();
    // A second client while the first is open: it waits in the backlog, nothing of it is injected.
    unique_fd second = connect_stream();
    ASSERT_TRUE(second);
    const Bytes waiting = udp_packet("10.88.0.1", "10.88.0.2", "second");
    ASSERT_TRUE(write_all(second.get(), waiting.data(), waiting.size()));
    // Version 5 at stream offset 33 (after the 33-byte packet above): the stream ends there.
    const uint8_t bad[20] = {0x55};
    ASSERT_TRUE(write_all(first.get(), bad, sizeof bad));
    std::string rest;
    EXPECT_TRUE(read_to_eof(first.get(), rest)) << "the worker did not close the bad stream";
    EXPECT_TRUE(
        daemon_->wait_log("invalid IP header at stream offset 33 (packet 2 starting at "
                          "offset 33): version is neither 4 nor 6",
                          5s))
        << daemon_->log();
    // Then the waiting client's packet goes through.
    EXPECT_EQ(receive(udp4_.get()), "second") << daemon_->log();
    EXPECT_TRUE(daemon_->wait_log("one stream at a time", 5s, 2)) << daemon_->log();
}

TEST_F(RawStream, TheInjectorHoldsNoCapabilityUnderItsSeccompFilter) {
    const auto workers = daemon_->wait_workers(1);
    ASSERT_EQ(workers.size(), 1u);
    const pid_t w = workers[0];
    EXPECT_EQ(status_field(w, "CapEff"), "0000000000000000");
    EXPECT_EQ(status_field(w, "CapPrm"), "0000000000000000");
    EXPECT_EQ(status_field(w, "CapAmb"), "0000000000000000");
    EXPECT_EQ(status_field(w, "Uid").substr(0, 5), "65534");
    EXPECT_EQ(status_field(w, "NoNewPrivs"), "1");
    EXPECT_EQ(status_field(w, "Seccomp"), "2");
    // Its fds: the handed-over listener and both raw sockets, its control socket, stdio, epoll.
    int sockets = 0;
    for (const auto& t : fd_targets(w))
        if (t.find("socket:") != std::string::npos) ++sockets;
    EXPECT_EQ(sockets, 4) << "control socket, listener, raw IPv4, raw IPv6";
    // And it works that way.
    unique_fd c = connect_stream();
    const Bytes p = udp_packet("10.88.0.1", "10.88.0.2", "locked");
    ASSERT_TRUE(write_all(c.get(), p.data(), p.size()));
    EXPECT_EQ(receive(udp4_.get()), "locked") << daemon_->log();
}

// The seed's command line runs the same kind: vsock-to-ip-raw-incoming on a Unix listener (one of
// pf-proxy's vsock-like forms) with --device vp injects what it is sent.
TEST_F(RawStream, SeedCommandVsockToIpRawIncomingInjectsThroughItsDevice) {
    const std::string path = dir_.path() + "/seed.sock";
    auto cmd = p_->run([&] {
        return std::make_unique<RunningCommand>(
            std::vector<std::string>{bin_dir() + "/vsock-to-ip-raw-incoming", "--vsock-addr",
                                     "unix:" + path, "-d", "vp", "--ip", "10.88.0.2"});
    });
    ASSERT_TRUE(cmd->wait_err("ready", 10s)) << cmd->err();
    EXPECT_TRUE(cmd->wait_out("Enclave address: 10.88.0.2\n", 5s)) << cmd->out();
    unix_path_ = path;
    unique_fd c = connect_stream();
    ASSERT_TRUE(c) << cmd->err();
    const Bytes p = udp_packet("10.88.0.1", "10.88.0.2", "from-the-seed-command");
    ASSERT_TRUE(write_all(c.get(), p.data(), p.size()));
    // The deployed tool's incoming filter: a packet to another address is not injected.
    const Bytes other = udp_packet("10.88.0.1", "fd00:88::2", "not-the-enclave");
    ASSERT_TRUE(write_all(c.get(), other.data(), other.size()));
    EXPECT_EQ(receive(udp4_.get()), "from-the-seed-command") << cmd->err();
    EXPECT_TRUE(cmd->wait_err("was dropped by the filter (destination)", 5s)) << cmd->err();
    c.reset();  // else the stop waits the drain timeout for this stream
    EXPECT_EQ(cmd->terminate(), 0) << cmd->err();
}

// The four commands' help, version and a bad flag, exactly.
TEST(RawSeedCommands, HelpVersionAndErrors) {
    const std::string footer =
        "\npf-proxy: this command runs one proxy through the pf-proxyd supervisor and a sandboxed\n"
        "worker; see the migration guide (migration.md) for the equivalent policy entry.\n";
    CommandResult r = run_command({bin_dir() + "/vsock-to-ip-raw-incoming", "-h"});
    EXPECT_EQ(WEXITSTATUS(r.status), 0);
    EXPECT_EQ(
        r.output,
        "Usage: vsock-to-ip-raw-incoming [OPTIONS] --vsock-addr <VSOCK_ADDR> --device "
        "<DEVICE>\n\nOptions:\n"
        "  -v, --vsock-addr <VSOCK_ADDR>  vsock address to listen on <cid:port>\n"
        "  -d, --device <DEVICE>          network device to forward packets on\n"
        "      --ip <IP>                  pf-proxy: inject only packets to IP [default: "
        "/app/ip.txt]\n"
        "      --user <USER>              pf-proxy: run as this user once the socket is open\n"
        "  -h, --help                     Print help\n"
        "  -V, --version                  Print version\n" +
            footer);
    r = run_command({bin_dir() + "/ip-to-vsock-raw-incoming", "--help"});
    EXPECT_EQ(WEXITSTATUS(r.status), 0);
    EXPECT_EQ(
        r.output,
        "Usage: ip-to-vsock-raw-incoming [OPTIONS] --vsock-addr <VSOCK_ADDR> --queue-num "
        "<QUEUE_NUM>\n\nOptions:\n"
        "  -v, --vsock-addr <VSOCK_ADDR>  vsock address to forward packets to <cid:port>\n"
        "  -q, --queue-num <QUEUE_NUM>    nfqueue number of the listener <num>\n"
        "      --user <USER>              pf-proxy: run as this user once the socket is open\n"
        "  -h, --help                     Print help\n"
        "  -V, --version                  Print version\n" +
            footer);
    for (const std::string name : {"ip-to-vsock-raw-incoming", "ip-to-vsock-raw-outgoing",
                                   "vsock-to-ip-raw-incoming", "vsock-to-ip-raw-outgoing"}) {
        r = run_command({bin_dir() + "/" + name, "-V"});
        EXPECT_EQ(WEXITSTATUS(r.status), 0);
        EXPECT_EQ(r.output.rfind(name + " ", 0), 0u) << r.output;  // clap's "NAME VERSION"
        EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
        r = run_command({bin_dir() + "/" + name, "--vsock-addr", "3:1200", "--bogus"});
        EXPECT_EQ(WEXITSTATUS(r.status), 1) << name;
        EXPECT_EQ(r.output.substr(0, r.output.find('\n')),
                  "error: unexpected argument '--bogus' found")
            << name;
    }
    r = run_command({bin_dir() + "/ip-to-vsock-raw-outgoing", "-v", "3:1200", "-q", "65536"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_EQ(r.output,
              "error: invalid value '65536' for '--queue-num <QUEUE_NUM>': number too large to "
              "fit in target type\n\nFor more information, try '--help'.\n");
    // Without --ip the incoming tool reads the enclave's address from /app/ip.txt, as the
    // deployed one does; this machine has none.
    ASSERT_FALSE(std::ifstream("/app/ip.txt")) << "the test expects no /app/ip.txt here";
    r = run_command({bin_dir() + "/vsock-to-ip-raw-incoming", "-v", "3:1200", "-d", "lo"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_EQ(r.output,
              "Error: no enclave address: cannot read /app/ip.txt: No such file or directory "
              "(give --ip)\n");
    r = run_command(
        {bin_dir() + "/vsock-to-ip-raw-incoming", "-v", "3:1200", "-d", "lo", "--ip", "10.0.0"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_EQ(r.output,
              "Error: the vsock-to-ip-raw-incoming command line makes an invalid policy: "
              "/proxies/0/filter/destinations/0: expected an IP address such as \"10.0.0.5\", "
              "got \"10.0.0\"\n");
    r = run_command({bin_dir() + "/vsock-to-ip-raw-outgoing", "-v", "3-1200"});
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    EXPECT_EQ(r.output, "Error: invalid vsock address, should contain one colon [:] sign\n");
}

}  // namespace
