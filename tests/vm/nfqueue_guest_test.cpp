// The raw packet tunnel over real vsock, in the QEMU guest (tests/vm): an iptables NFQUEUE rule
// takes the test client's packets, nfqueue-to-stream writes them to a vsock stream to CID 1,
// stream-to-raw reads them there and injects them with a raw socket, and the server (on the same
// loopback) receives them. Only the client's direction crosses the tunnel; replies come back
// directly.
//
// Which packets the rule takes: the raw socket's packets pass through OUTPUT too, byte for byte
// the same as the queued ones, so the rule matches the socket owner (-m owner): the client's
// sockets are opened with the fsuid kClientUid, the raw sockets by pf-proxyd (root).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/fsuid.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "guest_support.hpp"

using namespace pfp::test;
using namespace pfp::test::vm;
using pfp::unique_fd;

namespace {

constexpr uid_t kClientUid = 4242;
constexpr int kQueue = 7;
constexpr uint32_t kTunnelPort = 5301;
// Through this chain in the emulated guest TCP moved only tens of KiB/s (4 MiB did not finish in
// a minute; on the host, between namespaces, the same chain moves 16 MiB in seconds): a size
// that shows the handshake and data crossing intact in a few seconds.
constexpr size_t kTcpBytes = 256u << 10;

// A socket whose owner, as xt_owner sees it, is kClientUid (it matches the fsuid of the opener's
// credentials; this thread's fsuid changes only around socket()).
unique_fd client_socket(int type) {
    ::setfsuid(kClientUid);
    unique_fd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    ::setfsuid(0);
    return s;
}

sockaddr_in loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// Queue kQueue's line of /proc/net/netfilter/nfnetlink_queue: queue, reader's port id, packets
// waiting for a verdict, copy mode, copy range, queue dropped, user dropped, last packet id.
struct QueueState {
    bool found = false;
    uint64_t waiting = 0, dropped = 0, user_dropped = 0, last_id = 0;
};
QueueState queue_state() {
    std::ifstream in("/proc/net/netfilter/nfnetlink_queue");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        uint64_t num = 0, portid = 0, mode = 0, range = 0;
        QueueState s;
        if (l >> num >> portid >> s.waiting >> mode >> range >> s.dropped >> s.user_dropped >>
                s.last_id &&
            num == kQueue) {
            s.found = true;
            return s;
        }
    }
    return {};
}

// The queue once every packet sent so far has its verdict (the last ACKs of an exchange may still
// be on their way through the tunnel when the test looks); the last state seen at the deadline.
QueueState settled_queue_state(std::chrono::milliseconds deadline = 10s) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    QueueState s = queue_state();
    while (s.found && s.waiting != 0 && std::chrono::steady_clock::now() < end) {
        std::this_thread::sleep_for(20ms);
        s = queue_state();
    }
    return s;
}

class NfqueueGuest : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_VSOCK_LOOPBACK();
        REQUIRE_IPTABLES();
        daemon_ = std::make_unique<Daemon>(
            policy({proxy("queued", "nfqueue:" + std::to_string(kQueue),
                          "vsock:1:" + std::to_string(kTunnelPort)),
                    proxy("injected", "vsock:any:" + std::to_string(kTunnelPort), "raw:route")}));
        ASSERT_TRUE(daemon_->wait_ready()) << daemon_->log();
        ASSERT_TRUE(daemon_->wait_log(
            "stream to vsock:1:" + std::to_string(kTunnelPort) + " connected", 20s))
            << daemon_->log();
    }

    // Takes the client's packets to 127.0.0.1:port of `protocol` into the queue.
    std::unique_ptr<OutputRule> queue_rule(const std::string& protocol, uint16_t port) {
        return std::make_unique<OutputRule>(std::vector<std::string>{
            "-p", protocol, "-d", "127.0.0.1/32", "--dport", std::to_string(port), "-m", "owner",
            "--uid-owner", std::to_string(kClientUid), "-j", "NFQUEUE", "--queue-num",
            std::to_string(kQueue)});
    }

    std::unique_ptr<Daemon> daemon_;
};

TEST_F(NfqueueGuest, UdpDatagramsCrossTheQueueAndVsockAndArriveInjected) {
    const uint16_t port = free_port();
    unique_fd server(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in at = loopback(port);
    ASSERT_EQ(::bind(server.get(), reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
    const auto rule = queue_rule("udp", port);
    ASSERT_TRUE(rule->ok()) << rule->output();
    const QueueState before = queue_state();
    ASSERT_TRUE(before.found) << "queue " << kQueue << " is not bound";

    unique_fd client = client_socket(SOCK_DGRAM);
    ASSERT_TRUE(client);
    constexpr int kDatagrams = 50;
    for (int i = 0; i < kDatagrams; ++i) {
        const std::string text = "datagram " + std::to_string(i);
        ASSERT_EQ(::sendto(client.get(), text.data(), text.size(), 0,
                           reinterpret_cast<sockaddr*>(&at), sizeof at),
                  static_cast<ssize_t>(text.size()))
            << std::strerror(errno);
    }
    // Each arrives, in order (one stream carries them), and the reply to its source comes back.
    for (int i = 0; i < kDatagrams; ++i) {
        pollfd p{server.get(), POLLIN, 0};
        ASSERT_EQ(::poll(&p, 1, 20000), 1) << "datagram " << i << " never arrived\n"
                                           << daemon_->log();
        char buf[64];
        sockaddr_in from{};
        socklen_t len = sizeof from;
        const ssize_t n =
            ::recvfrom(server.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        ASSERT_GT(n, 0);
        EXPECT_EQ(std::string(buf, n), "datagram " + std::to_string(i));
        if (i == 0) {
            ASSERT_EQ(
                ::sendto(server.get(), "reply", 5, 0, reinterpret_cast<sockaddr*>(&from), len), 5);
        }
    }
    char reply[8];
    pollfd p{client.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    EXPECT_EQ(::recv(client.get(), reply, sizeof reply, 0), 5);

    // They went through the queue (not around it), and none is left there without a verdict.
    const QueueState after = settled_queue_state();
    EXPECT_GE(after.last_id - before.last_id, static_cast<uint64_t>(kDatagrams));
    EXPECT_EQ(after.waiting, 0u);
    EXPECT_EQ(after.dropped, before.dropped);
    EXPECT_EQ(after.user_dropped, before.user_dropped);
}

TEST_F(NfqueueGuest, TcpHandshakeAndDataCrossTheTunnelIntact) {
    const uint16_t port = free_port();
    EchoServer echo(port);
    const auto rule = queue_rule("tcp", port);
    ASSERT_TRUE(rule->ok()) << rule->output();
    const QueueState before = queue_state();

    unique_fd client = client_socket(SOCK_STREAM);
    ASSERT_TRUE(client);
    sockaddr_in at = loopback(port);
    ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&at), sizeof at), 0)
        << std::strerror(errno) << "\n"
        << daemon_->log();
    const Transfer t = send_and_receive(client.get(), kTcpBytes, 23);
    EXPECT_TRUE(t.ok);
    EXPECT_EQ(t.received, kTcpBytes) << daemon_->log();
    EXPECT_EQ(t.received_hash, t.sent_hash);

    const QueueState after = settled_queue_state();
    // At least the SYN, the handshake's ACK, the data and the FIN.
    EXPECT_GE(after.last_id - before.last_id, 4u);
    EXPECT_EQ(after.waiting, 0u);
    EXPECT_EQ(after.user_dropped, before.user_dropped);
}

}  // namespace
