// Real vsock data paths. This kernel has no vsock loopback, so these tests run only inside the
// QEMU guest of tests/vm (Debian's kernel with vsock_loopback: CID 1 carries data). They are
// built as `vm_guest_tests` and NOT registered with ctest here; the guest harness runs them.
// Every vsock connect goes to CID 1 (VMADDR_CID_LOCAL) and nowhere else.
#include <gtest/gtest.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "../integration/harness.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr uint32_t kLocalCid = VMADDR_CID_LOCAL;  // 1: the only CID these tests may use

// Decided without any connect: outside the guest no vsock socket may be connected anywhere.
bool vsock_loopback_available() {
    return std::filesystem::exists("/sys/module/vsock_loopback");
}

#define REQUIRE_VSOCK_LOOPBACK() \
    if (!vsock_loopback_available()) GTEST_SKIP() << "no vsock loopback (run inside tests/vm)"

// ip-to-vsock (TCP in) -> vsock CID 1 -> vsock-to-ip (vsock in) -> TCP echo server.
std::string pair_policy(uint16_t in_port, uint32_t vport, uint16_t server_port) {
    return "{\"proxies\": ["
           "{\"name\": \"in\", \"listen\": \"tcp:127.0.0.1:" +
           std::to_string(in_port) + "\", \"upstream\": \"vsock:1:" + std::to_string(vport) +
           "\"},"
           "{\"name\": \"out\", \"listen\": \"vsock:any:" +
           std::to_string(vport) +
           "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(server_port) + "\"}]}";
}

TEST(VsockGuest, IpToVsockToIpMoves64MiBEachWayIntact) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    Daemon d(pair_policy(in, 5001, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(in, 120s);
    ASSERT_TRUE(c);
    const size_t total = 64u << 20;
    Fnv sent, received;
    size_t got = 0;
    std::thread reader([&] {
        std::vector<char> buf(1 << 20);
        ssize_t n;
        while ((n = ::recv(c.get(), buf.data(), buf.size(), 0)) > 0) {
            received.add(buf.data(), static_cast<size_t>(n));
            got += static_cast<size_t>(n);
        }
    });
    std::vector<char> buf(1 << 20);
    for (size_t off = 0, seed = 1; off < total; off += buf.size(), ++seed) {
        fill_pattern(buf, seed);
        sent.add(buf.data(), buf.size());
        ASSERT_TRUE(write_all(c.get(), buf.data(), buf.size()));
    }
    ::shutdown(c.get(), SHUT_WR);  // half-close travels over vsock and back
    reader.join();
    EXPECT_EQ(got, total);
    EXPECT_EQ(received.value(), sent.value());
}

TEST(VsockGuest, TwoHundredConcurrentConnections) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    Daemon d(pair_policy(in, 5002, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::vector<unique_fd> clients;
    for (int i = 0; i < 200; ++i) {
        clients.push_back(connect_tcp(in, 60s));
        ASSERT_TRUE(clients.back()) << i;
    }
    int ok = 0;
    for (int i = 0; i < 200; ++i) {
        std::string m = "m" + std::to_string(i);
        write_all(clients[i].get(), m.data(), m.size());
        std::string back(m.size(), '\0');
        if (read_exact(clients[i].get(), back.data(), back.size()) && back == m) ++ok;
    }
    EXPECT_EQ(ok, 200);
}

TEST(VsockGuest, VsockToVsockAllowedCids) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    for (bool listed : {true, false}) {
        const std::string cids = listed ? "[1]" : "[7]";
        Daemon d(
            "{\"proxies\": ["
            "{\"name\": \"in\", \"listen\": \"tcp:127.0.0.1:" +
            std::to_string(in) +
            "\", \"upstream\": \"vsock:1:6000\"},"
            "{\"name\": \"g2g\", \"listen\": \"vsock:any:6000\", \"upstream\": \"vsock:1:6001\","
            " \"allowed_cids\": " +
            cids +
            ", \"statistics\": true},"
            "{\"name\": \"out\", \"listen\": \"vsock:any:6001\", \"upstream\": \"tcp:127.0.0.1:" +
            std::to_string(server) + "\"}]}");
        ASSERT_TRUE(d.wait_ready()) << d.log();
        unique_fd c = connect_tcp(in, 10s);
        ASSERT_TRUE(c);
        write_all(c.get(), "cid", 3);
        char b[3];
        bool echoed = read_exact(c.get(), b, 3);
        EXPECT_EQ(echoed, listed) << d.log();
        if (listed)
            EXPECT_TRUE(d.wait_log("statistics: vsock:1:", 5s)) << d.log();
        else
            EXPECT_TRUE(d.wait_log("is not in allowed_cids", 5s)) << d.log();
    }
}

TEST(VsockGuest, TransparentPairOverVsockHonoursTheAllowList) {
    REQUIRE_VSOCK_LOOPBACK();
    // No netfilter in the guest: the header is written by the test itself to
    // vsock-to-ip-transparent.
    uint16_t server = free_port();
    EchoServer echo(server);
    Daemon d(
        "{\"proxies\": [{\"name\": \"egress-host\", \"listen\": \"vsock:any:1200\","
        " \"upstream\": \"destination-header\", \"allow\": [\"127.0.0.1:" +
        std::to_string(server) + "\"]}]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    for (bool allowed : {true, false}) {
        unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_vm a{};
        a.svm_family = AF_VSOCK;
        a.svm_cid = kLocalCid;
        a.svm_port = 1200;
        set_timeouts(s.get(), 10s);
        ASSERT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        uint16_t port = allowed ? server : static_cast<uint16_t>(server + 1);
        const char header[7] = {
            4, 1, 0, 0, 127, static_cast<char>(port & 0xff), static_cast<char>(port >> 8)};
        ASSERT_TRUE(write_all(s.get(), header, 7));
        write_all(s.get(), "hey", 3);
        char b[3];
        EXPECT_EQ(read_exact(s.get(), b, 3), allowed) << d.log();
    }
}

TEST(VsockGuest, KilledWorkerComesBackDuringVsockTraffic) {
    REQUIRE_VSOCK_LOOPBACK();
    uint16_t in = free_port(), server = free_port();
    EchoServer echo(server);
    Daemon d(pair_policy(in, 5003, server));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto before = d.wait_workers(2);
    ASSERT_EQ(before.size(), 2u);
    ::kill(before[1], SIGKILL);
    for (int i = 0; i < 20; ++i) {
        unique_fd c = connect_tcp(in, 20s);
        ASSERT_TRUE(c);
        ASSERT_TRUE(write_all(c.get(), "k", 1));
        char b;
        EXPECT_TRUE(read_exact(c.get(), &b, 1)) << i;
    }
}

}  // namespace
