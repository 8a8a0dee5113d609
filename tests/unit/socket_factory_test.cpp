// The supervisor's socket factory, for every role, with real sockets: what it makes is what the
// worker's receipt check (socket_role_mismatch) accepts, the options each role needs are set, an
// nfqueue reader really receives the packets of its queue, and without the capability a role
// needs the call that needs it fails with EPERM. Root: raw sockets and nfqueue need it.
#include "supervisor/socket_factory.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/socket_util.hpp"
#include "tests/support/require.hpp"

namespace pfp::supervisor {
namespace {

unique_fd open_role(FdRole role, const std::string& endpoint) {
    SocketRequest req;
    req.role = role;
    req.endpoint = parse_endpoint(endpoint);
    return open_socket(req, nullptr);
}

uint16_t queue_number() {  // one per test process, so parallel runs do not share a queue
    return static_cast<uint16_t>(20000 + ::getpid() % 20000);
}

// A loopback port the kernel just handed out (bound, then released).
uint16_t free_port(int type) {
    unique_fd s(::socket(AF_INET, type, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
        return 0;
    return ntohs(a.sin_port);
}

std::string root_missing() {
    return ::geteuid() == 0 ? "" : "root, for raw sockets and nfqueue";
}

// Runs `body` in a forked child and returns what it wrote to `out` (its result, or what failed).
template <class Body>
std::string in_child(Body body) {
    int p[2];
    if (::pipe(p) != 0) return "pipe failed";
    const pid_t child = ::fork();
    if (child < 0) return "fork failed";
    if (child == 0) {
        ::close(p[0]);
        const std::string out = body();
        (void)!::write(p[1], out.data(), out.size());
        _exit(0);
    }
    ::close(p[1]);
    std::string out;
    char c[256];
    for (ssize_t n; (n = ::read(p[0], c, sizeof c)) > 0;) out.append(c, static_cast<size_t>(n));
    ::close(p[0]);
    ::waitpid(child, nullptr, 0);
    return out;
}

TEST(SocketFactory, StreamListenerIsWhatTheWorkerExpects) {
    unique_fd fd = open_role(FdRole::stream_listener,
                             "tcp:127.0.0.1:" + std::to_string(free_port(SOCK_STREAM)));
    EXPECT_EQ(
        socket_role_mismatch(fd.get(), FdRole::stream_listener, parse_endpoint("tcp:127.0.0.1:1")),
        "");
    EXPECT_NE(
        socket_role_mismatch(fd.get(), FdRole::datagram_socket, parse_endpoint("udp:127.0.0.1:1")),
        "");
}

TEST(SocketFactory, DatagramSocketIsBound) {
    const uint16_t port = free_port(SOCK_DGRAM);
    unique_fd fd = open_role(FdRole::datagram_socket, "udp:127.0.0.1:" + std::to_string(port));
    EXPECT_EQ(
        socket_role_mismatch(fd.get(), FdRole::datagram_socket, parse_endpoint("udp:127.0.0.1:1")),
        "");
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    EXPECT_EQ(ntohs(a.sin_port), port);
}

// One socket per udp-forward worker: with reuse_port a second socket joins the address (and the
// kernel spreads clients over both); without it the address is taken.
TEST(SocketFactory, DatagramSocketsWithReusePortShareTheirAddress) {
    const uint16_t port = free_port(SOCK_DGRAM);
    SocketRequest req;
    req.role = FdRole::datagram_socket;
    req.endpoint = parse_endpoint("udp:127.0.0.1:" + std::to_string(port));
    req.reuse_port = true;
    unique_fd first = open_socket(req, nullptr);
    unique_fd second = open_socket(req, nullptr);
    int on = 0;
    socklen_t len = sizeof on;
    ASSERT_EQ(::getsockopt(second.get(), SOL_SOCKET, SO_REUSEPORT, &on, &len), 0);
    EXPECT_EQ(on, 1);
    req.reuse_port = false;
    try {
        (void)open_socket(req, nullptr);
        ADD_FAILURE() << "a socket without SO_REUSEPORT joined the group";
    } catch (const socket_error& e) {
        EXPECT_EQ(e.step, SocketStep::bind);
        EXPECT_EQ(e.err, EADDRINUSE);
    }
}

TEST(SocketFactory, RawInjectorsIncludeHeadersAndBindTheDevice) {
    PFP_REQUIRE(root_missing());
    unique_fd v4 = open_role(FdRole::raw_ipv4, "raw:lo");
    EXPECT_EQ(socket_role_mismatch(v4.get(), FdRole::raw_ipv4, parse_endpoint("raw:lo")), "");
    int hdrincl = 0;
    socklen_t len = sizeof hdrincl;
    ASSERT_EQ(::getsockopt(v4.get(), IPPROTO_IP, IP_HDRINCL, &hdrincl, &len), 0);
    EXPECT_EQ(hdrincl, 1);
    char dev[IFNAMSIZ] = {};
    len = sizeof dev;
    ASSERT_EQ(::getsockopt(v4.get(), SOL_SOCKET, SO_BINDTODEVICE, dev, &len), 0);
    EXPECT_STREQ(dev, "lo");

    unique_fd v6 = open_role(FdRole::raw_ipv6, "raw:route");
    EXPECT_EQ(socket_role_mismatch(v6.get(), FdRole::raw_ipv6, parse_endpoint("raw:route")), "");
    len = sizeof dev;
    std::memset(dev, 0, sizeof dev);
    ASSERT_EQ(::getsockopt(v6.get(), SOL_SOCKET, SO_BINDTODEVICE, dev, &len), 0);
    EXPECT_EQ(len, 0u) << "raw:route is routed, not bound to a device";
    EXPECT_NE(socket_role_mismatch(v6.get(), FdRole::raw_ipv4, parse_endpoint("raw:route")), "");
}

TEST(SocketFactory, NfqueueReaderOwnsItsQueue) {
    PFP_REQUIRE(root_missing());
    const std::string q = "nfqueue:" + std::to_string(queue_number());
    unique_fd fd = open_role(FdRole::nfqueue, q);
    EXPECT_EQ(socket_role_mismatch(fd.get(), FdRole::nfqueue, parse_endpoint(q)), "");
    try {
        open_role(FdRole::nfqueue, q);
        ADD_FAILURE() << "a second reader was bound to " << q;
    } catch (const socket_error& e) {
        EXPECT_EQ(e.step, SocketStep::queue);
        // The kernel answers EPERM both for a queue another socket reads and for a sender
        // without CAP_NET_ADMIN: the message says both.
        EXPECT_EQ(e.err, EPERM) << e.what();
        EXPECT_NE(std::string(e.what()).find("another process reads this queue"), std::string::npos)
            << e.what();
    }
}

// In a private network namespace: an NFQUEUE rule sends a UDP packet to the queue, and the
// reader the factory bound receives it, copied whole.
TEST(SocketFactory, NfqueueReaderReceivesTheQueuedPacket) {
    PFP_REQUIRE(root_missing());
    PFP_REQUIRE(std::system("command -v iptables >/dev/null 2>&1") == 0 ? "" : "iptables");
    const uint16_t queue = queue_number();
    const std::string out = in_child([queue]() -> std::string {
        if (::unshare(CLONE_NEWNET) != 0) return std::string("unshare: ") + std::strerror(errno);
        if (std::system("ip link set lo up") != 0) return "ip link set lo up failed";
        const std::string rule =
            "iptables -w -A OUTPUT -o lo -p udp --dport 9 -j NFQUEUE "
            "--queue-num " +
            std::to_string(queue);
        if (std::system(rule.c_str()) != 0) return "iptables NFQUEUE rule failed";
        unique_fd reader;
        try {
            reader = open_role(FdRole::nfqueue, "nfqueue:" + std::to_string(queue));
        } catch (const std::exception& e) {
            return std::string("open: ") + e.what();
        }
        timeval tv{10, 0};
        ::setsockopt(reader.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        unique_fd udp(::socket(AF_INET, SOCK_DGRAM, 0));
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(9);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::sendto(udp.get(), "queued!", 7, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to),
                 sizeof to);
        char buf[65536];
        const ssize_t n = ::recv(reader.get(), buf, sizeof buf, 0);
        if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) return "nothing received from the queue";
        const int type = reinterpret_cast<const nlmsghdr*>(buf)->nlmsg_type;
        if (type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
            return "unexpected netlink message type " + std::to_string(type);
        // The copied packet (IPv4 + UDP headers + 7 bytes) is in the message, whole.
        if (std::string(buf, static_cast<size_t>(n)).find("queued!") == std::string::npos)
            return "payload not copied";
        return "ok";
    });
    EXPECT_EQ(out, "ok");
}

// Without the capability a role needs, the call that needs it fails (and says which step).
TEST(SocketFactory, WithoutCapabilitiesRawAndNfqueueAreRefused) {
    PFP_REQUIRE(root_missing());
    const std::string out = in_child([]() -> std::string {
        if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
            return "setuid failed";
        std::string result;
        for (auto [role, ep] :
             {std::pair{FdRole::raw_ipv4, "raw:lo"}, std::pair{FdRole::nfqueue, "nfqueue:1"}}) {
            try {
                open_role(role, ep);
                result += std::string(role_name(role)) + " opened;";
            } catch (const socket_error& e) {
                result +=
                    std::to_string(static_cast<int>(e.step)) + ":" + std::to_string(e.err) + ";";
            }
        }
        return result;
    });
    EXPECT_EQ(out, std::to_string(static_cast<int>(SocketStep::socket)) + ":" +
                       std::to_string(EPERM) + ";" +
                       std::to_string(static_cast<int>(SocketStep::queue)) + ":" +
                       std::to_string(EPERM) + ";");
}

TEST(SocketFactory, CapabilitiesToOpenFollowRoleAndPort) {
    EXPECT_EQ(capabilities_to_open(FdRole::raw_ipv4, parse_endpoint("raw:lo")),
              std::set<int>{CAP_NET_RAW});
    EXPECT_EQ(capabilities_to_open(FdRole::nfqueue, parse_endpoint("nfqueue:3")),
              std::set<int>{CAP_NET_ADMIN});
    EXPECT_EQ(capabilities_to_open(FdRole::stream_listener, parse_endpoint("tcp:127.0.0.1:80")),
              std::set<int>{CAP_NET_BIND_SERVICE});
    EXPECT_EQ(capabilities_to_open(FdRole::datagram_socket, parse_endpoint("udp:127.0.0.1:53")),
              std::set<int>{CAP_NET_BIND_SERVICE});
    EXPECT_TRUE(capabilities_to_open(FdRole::stream_listener, parse_endpoint("tcp:127.0.0.1:8080"))
                    .empty());
}

}  // namespace
}  // namespace pfp::supervisor
