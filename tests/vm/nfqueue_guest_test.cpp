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

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "guest_support.hpp"

using namespace pfp::test;
using namespace pfp::test::vm;
using pfp::unique_fd;

namespace {

constexpr uid_t kClientUid = 4242;
constexpr uid_t kServerUid = 4243;
constexpr int kQueue = 7;
constexpr uint32_t kTunnelPort = 5301;
constexpr size_t kTcpBytes = 4u << 20;  // each way
// The largest packet an nfqueue reader gets whole (NFQNL_MAX_COPY_RANGE).
constexpr int kCopyLimit = 0xffff - 4;

// lo's MTU for the life of a test (restored to what it was).
class LoopbackMtu {
  public:
    explicit LoopbackMtu(int mtu) : before_(read_mtu()) { ok_ = set(mtu); }
    ~LoopbackMtu() { set(before_); }
    bool ok() const { return ok_; }

  private:
    static int read_mtu() {
        std::ifstream in("/sys/class/net/lo/mtu");
        int v = 0;
        in >> v;
        return v;
    }
    static bool set(int mtu) {
        std::ofstream out("/sys/class/net/lo/mtu");
        out << mtu;
        out.flush();
        return out.good() && read_mtu() == mtu;
    }
    int before_;
    bool ok_ = false;
};

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
                          "vsock:1:" + std::to_string(kTunnelPort), reader_options()),
                    proxy("injected", "vsock:any:" + std::to_string(kTunnelPort), "raw:route",
                          injector_options())}));
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

    // More keys of the reader's and the injector's entries ("key": value, ...).
    virtual std::string reader_options() const { return ""; }
    virtual std::string injector_options() const { return ""; }
    // lo's MTU during a TCP transfer: the largest the reader can copy whole, unless a test holds
    // it to a real link's.
    virtual int tcp_lo_mtu() const { return kCopyLimit; }

    // A TCP handshake and kTcpBytes each way between a client and a server on lo, both
    // directions through the queue, the tunnel and the injector, checksummed.
    void tcp_through_the_tunnel();

    std::unique_ptr<Daemon> daemon_;
};

// `"gso": true`: lo's packets are queued whole and with the checksum lo's offload left unfinished,
// which the reader fills in (on this guest's kernel, the one Debian 12 ships).
class NfqueueGsoGuest : public NfqueueGuest {
  protected:
    std::string reader_options() const override { return R"("gso": true)"; }
};

// And lo held to 1,500 bytes, with `"route_mtu": "auto"` at the injector: it learns that MTU from
// this kernel (MSG_PROBE and the IP_RECVERR report) and cuts the whole packets to it.
class NfqueueGsoAutoMtuGuest : public NfqueueGsoGuest {
  protected:
    std::string injector_options() const override { return R"("route_mtu": "auto")"; }
    int tcp_lo_mtu() const override { return 1500; }
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

// A TCP handshake and 4 MiB each way (the server echoes), both directions through the queue, the
// vsock stream and the raw socket; the echo's checksum proves both intact.
TEST_F(NfqueueGuest, TcpHandshakeAnd4MiBEachWayCrossTheTunnelIntact) {
    tcp_through_the_tunnel();
}

TEST_F(NfqueueGsoGuest, TcpCrossesWithTheChecksumsTheReaderFinished) {
    tcp_through_the_tunnel();
}

TEST_F(NfqueueGsoAutoMtuGuest, TcpCrossesCutToTheRouteMtuTheInjectorLearned) {
    tcp_through_the_tunnel();
    EXPECT_EQ(daemon_->log().find("was not injected"), std::string::npos) << daemon_->log();
}

void NfqueueGuest::tcp_through_the_tunnel() {
    const LoopbackMtu mtu(tcp_lo_mtu());
    ASSERT_TRUE(mtu.ok()) << "cannot set lo's MTU";
    const uint16_t port = free_port();
    const auto to_server = queue_rule("tcp", port);
    ASSERT_TRUE(to_server->ok()) << to_server->output();
    const OutputRule to_client({"-p", "tcp", "-s", "127.0.0.1/32", "--sport", std::to_string(port),
                                "-m", "owner", "--uid-owner", std::to_string(kServerUid), "-j",
                                "NFQUEUE", "--queue-num", std::to_string(kQueue)});
    ASSERT_TRUE(to_client.ok()) << to_client.output();
    const QueueState before = queue_state();

    // The server's sockets are owned by kServerUid (this thread's fsuid when they are made).
    std::atomic<size_t> echoed{0};
    unique_fd listener;
    {
        ::setfsuid(kServerUid);
        listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ::setfsuid(0);
    }
    sockaddr_in at = loopback(port);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
    ASSERT_EQ(::listen(listener.get(), 4), 0);
    std::thread server([&] {
        ::setfsuid(kServerUid);  // this thread only: the accepted socket's owner
        unique_fd c(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) return;
        timeval tv{30, 0};
        ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::vector<char> buf(64 << 10);
        for (;;) {
            const ssize_t n = ::recv(c.get(), buf.data(), buf.size(), 0);
            if (n <= 0 || !write_all(c.get(), buf.data(), static_cast<size_t>(n))) break;
            echoed += static_cast<size_t>(n);
        }
        ::shutdown(c.get(), SHUT_WR);
    });

    unique_fd client = client_socket(SOCK_STREAM);
    ASSERT_TRUE(client);
    timeval tv{30, 0};
    ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
        const int err = errno;
        ::shutdown(listener.get(), SHUT_RDWR);  // ends the server's accept
        server.join();
        FAIL() << "connect: " << std::strerror(err) << "\n" << daemon_->log();
    }
    const Transfer t = send_and_receive(client.get(), kTcpBytes, 23);
    client.reset();  // the server's recv ends (its own timeout bounds it otherwise)
    server.join();
    EXPECT_TRUE(t.ok);
    EXPECT_EQ(t.received, kTcpBytes) << daemon_->log();
    EXPECT_EQ(t.received_hash, t.sent_hash);
    EXPECT_EQ(echoed.load(), kTcpBytes);

    const QueueState after = settled_queue_state();
    // Both directions' data went through the queue: at least 4 MiB each way in packets of at most
    // 64 KiB.
    EXPECT_GE(after.last_id - before.last_id, 2 * (kTcpBytes >> 16));
    EXPECT_EQ(after.waiting, 0u);
    EXPECT_EQ(after.user_dropped, before.user_dropped);
    EXPECT_EQ(daemon_->log().find("copied a packet of"), std::string::npos) << daemon_->log();
}

// A packet above the copy limit (a UDP datagram of 65,535 bytes on lo's default MTU) reaches the
// reader truncated: it is dropped, never written to the stream (it would break the framing), and
// the first such drop is logged with its cause; the datagram after it crosses.
TEST_F(NfqueueGuest, APacketAboveTheCopyLimitIsDroppedAndLogged) {
    const LoopbackMtu mtu(65536);
    ASSERT_TRUE(mtu.ok()) << "cannot set lo's MTU";
    const uint16_t port = free_port();
    unique_fd server(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in at = loopback(port);
    ASSERT_EQ(::bind(server.get(), reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
    const int rcvbuf = 1 << 20;
    ::setsockopt(server.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    const auto rule = queue_rule("udp", port);
    ASSERT_TRUE(rule->ok()) << rule->output();

    unique_fd client = client_socket(SOCK_DGRAM);
    ASSERT_TRUE(client);
    const std::string big(65535 - 28, 'b'), small = "after the big one";
    for (const std::string* d : {&big, &small})
        ASSERT_EQ(::sendto(client.get(), d->data(), d->size(), 0, reinterpret_cast<sockaddr*>(&at),
                           sizeof at),
                  static_cast<ssize_t>(d->size()))
            << std::strerror(errno);
    // One stream carries both in order: the small one first means the big one never went on it.
    pollfd p{server.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 20000), 1) << daemon_->log();
    std::vector<char> buf(70000);
    const ssize_t n = ::recv(server.get(), buf.data(), buf.size(), 0);
    EXPECT_EQ(std::string(buf.data(), n > 0 ? static_cast<size_t>(n) : 0), small);
    EXPECT_TRUE(daemon_->wait_log("nfqueue 7 copied a packet of 65535 bytes as 65531: dropped"))
        << daemon_->log();
}

}  // namespace
