// The stream kinds other than tcp-forward, run for real on this host: vsock-like hops are Unix
// sockets here (real vsock data needs the QEMU guest); vsock listeners really bind.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

bool roundtrip(uint16_t port, const std::string& msg) {
    unique_fd c = connect_tcp(port, 10s);
    if (!c || !write_all(c.get(), msg.data(), msg.size())) return false;
    ::shutdown(c.get(), SHUT_WR);
    std::string back;
    return read_to_eof(c.get(), back) && back == msg;
}

class StreamKinds : public ::testing::Test {
  protected:
    void SetUp() override {
        in_port = free_port();
        server_port = free_port();
    }
    TempDir dir;
    uint16_t in_port = 0, server_port = 0;
};

TEST_F(StreamKinds, IpToVsockThenVsockToIpOverAUnixHop) {
    EchoServer server(server_port);
    const std::string hop = dir.path() + "/hop.sock";
    Daemon d(
        "{\"user\": \"nobody\", \"proxies\": ["
        "{\"name\": \"in\", \"listen\": \"tcp:127.0.0.1:" +
        std::to_string(in_port) + "\", \"upstream\": \"unix:" + hop +
        "\", \"log_connections\": true},"
        "{\"name\": \"out\", \"listen\": \"unix:" +
        hop + "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(server_port) +
        "\", \"log_connections\": true}]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    // The hop's socket file belongs to the policy user, mode 0660: the other worker may use it.
    struct stat st {};
    ASSERT_EQ(::stat(hop.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_uid, 65534u);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    std::string big(3 << 20, 'x');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    EXPECT_TRUE(roundtrip(in_port, big));
    EXPECT_TRUE(roundtrip(in_port, "hello"));
    EXPECT_TRUE(d.wait_log("ip to vsock IO copy done, from \"127.0.0.1:")) << d.log();
    EXPECT_TRUE(d.wait_log("Proxying to: \"127.0.0.1:" + std::to_string(server_port) + "\""))
        << d.log();
}

TEST_F(StreamKinds, UnreachableUpstreamPrintsTheSeedError) {
    const std::string hop = dir.path() + "/nobody-listens.sock";
    Daemon d(
        "{\"user\": \"nobody\", \"proxies\": [{\"name\": \"in\", \"listen\": "
        "\"tcp:127.0.0.1:" +
        std::to_string(in_port) + "\", \"upstream\": \"unix:" + hop +
        "\", \"log_connections\": true}]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(in_port, 10s);
    ASSERT_TRUE(c);
    std::string got;
    read_to_eof(c.get(), got);
    EXPECT_TRUE(got.empty());
    EXPECT_TRUE(d.wait_log("Error: failed to connect to vsock endpoint")) << d.log();
}

TEST_F(StreamKinds, StaleUnixSocketIsReplacedAndAPlainFileIsAnError) {
    EchoServer server(server_port);
    const std::string path = dir.path() + "/l.sock";
    {  // a socket file nobody listens on any more
        unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    }
    const std::string pol =
        "{\"user\": \"nobody\", \"proxies\": [{\"name\": \"u\", \"listen\": "
        "\"unix:" +
        path + "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(server_port) + "\"}]}";
    {
        Daemon d(pol);
        EXPECT_TRUE(d.wait_ready()) << d.log();
    }
    ::unlink(path.c_str());
    std::ofstream(path) << "not a socket";
    Daemon bad(pol);
    int status = bad.wait_exit(10s);
    ASSERT_TRUE(WIFEXITED(status)) << bad.log();
    EXPECT_EQ(WEXITSTATUS(status), 1);
    EXPECT_TRUE(bad.wait_log(path + " exists and is not a socket", 1s)) << bad.log();
}

TEST_F(StreamKinds, VsockToVsockOverUnixWithStatistics) {
    // vsock-to-vsock's relay with unix hops on both sides; the peer is no vsock peer here, so
    // allowed_cids (unit-tested) is not set.
    const std::string a = dir.path() + "/a.sock", b = dir.path() + "/b.sock";
    EchoServer server(server_port);
    Daemon d(
        "{\"user\": \"nobody\", \"proxies\": ["
        "{\"name\": \"front\", \"listen\": \"tcp:127.0.0.1:" +
        std::to_string(in_port) + "\", \"upstream\": \"unix:" + a +
        "\"},"
        "{\"name\": \"g2g\", \"listen\": \"unix:" +
        a + "\", \"upstream\": \"unix:" + b +
        "\", \"statistics\": true},"
        "{\"name\": \"back\", \"listen\": \"unix:" +
        b + "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(server_port) + "\"}]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(in_port, 10s);
    ASSERT_TRUE(c);
    ASSERT_TRUE(write_all(c.get(), "stat", 4));
    char buf[4];
    ASSERT_TRUE(read_exact(c.get(), buf, 4));
    EXPECT_TRUE(d.wait_log("g2g/0: statistics: unix: -> \"unix:" + b + "\": 4 bytes sent (", 5s))
        << d.log();
    EXPECT_TRUE(d.wait_log(": 4 bytes sent (", 5s)) << d.log();
    EXPECT_TRUE(d.wait_log(", 4 bytes received (", 5s)) << d.log();
    // Lines that report `sent` and `received` bytes of one connection.
    auto lines_with = [&](size_t sent, size_t received) {
        const std::string up = ": " + std::to_string(sent) + " bytes sent (";
        const std::string down = ", " + std::to_string(received) + " bytes received (";
        std::istringstream log(d.log());
        size_t n = 0;
        for (std::string line; std::getline(log, line);)
            n += line.find(up) != std::string::npos && line.find(down) != std::string::npos;
        return n;
    };
    // Lines come from one report per tick for every connection of the worker, and only for
    // connections that moved bytes since their last line. A second client makes the ticks
    // visible: each of its rounds starts after the previous round's line, so its three lines
    // come from three later ticks, through which the first connection stayed idle.
    unique_fd c2 = connect_tcp(in_port, 10s);
    ASSERT_TRUE(c2);
    const std::string chunk(100, 'b');
    for (size_t round = 1; round <= 3; ++round) {
        ASSERT_TRUE(write_all(c2.get(), chunk.data(), chunk.size()));
        std::string back(chunk.size(), '\0');
        ASSERT_TRUE(read_exact(c2.get(), back.data(), back.size()));
        ASSERT_TRUE(wait_until([&] { return lines_with(100 * round, 100 * round) == 1; }))
            << "round " << round << "\n"
            << d.log();
    }
    EXPECT_EQ(lines_with(4, 4), 1u) << "an idle connection added lines\n" << d.log();
    for (size_t round = 1; round <= 3; ++round)
        EXPECT_EQ(lines_with(100 * round, 100 * round), 1u) << d.log();
}

TEST_F(StreamKinds, VsockListenerBindsHere) {
    // AF_VSOCK listeners bind (VMADDR_CID_ANY) on this kernel; no data is sent over vsock here.
    uint16_t vport = free_port();
    Daemon d("{\"user\": \"nobody\", \"proxies\": [{\"name\": \"v\", \"listen\": \"vsock:any:" +
             std::to_string(vport) +
             "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(server_port) + "\"}]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto w = d.wait_workers(1);
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(status_field(w[0], "Seccomp"), "2");
    EXPECT_NE(d.log().find("vsock-to-ip vsock:any:" + std::to_string(vport)), std::string::npos)
        << d.log();
}

}  // namespace

namespace {

TEST_F(StreamKinds, ProxyProtocolV2HeaderPrecedesThePayload) {
    // A raw server: records the first bytes of the stream, then echoes nothing.
    unique_fd ls = listen_tcp(server_port);
    Daemon d(
        "{\"user\": \"nobody\", \"proxies\": [{\"name\": \"pp\", \"listen\": "
        "\"tcp:127.0.0.1:" +
        std::to_string(in_port) + "\", \"upstream\": \"tcp:127.0.0.1:" +
        std::to_string(server_port) + "\", \"proxy_protocol\": true}]}");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_tcp(in_port, 10s);
    ASSERT_TRUE(c);
    sockaddr_in me{};
    socklen_t len = sizeof me;
    ::getsockname(c.get(), reinterpret_cast<sockaddr*>(&me), &len);
    ASSERT_TRUE(write_all(c.get(), "DATA", 4));
    ::shutdown(c.get(), SHUT_WR);
    unique_fd s(::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(s);
    set_timeouts(s.get(), 10s);
    std::string got;
    ASSERT_TRUE(read_to_eof(s.get(), got));
    const uint16_t cport = ntohs(me.sin_port);
    std::string expected = std::string("\r\n\r\n\0\r\nQUIT\n", 12);
    expected += std::string("\x21\x11\x00\x0c", 4);  // PROXY, TCP over IPv4, 12 bytes
    expected += std::string("\x7f\x00\x00\x01", 4);  // source 127.0.0.1 (the client)
    expected += std::string("\x7f\x00\x00\x01", 4);  // destination 127.0.0.1 (our listener)
    expected += static_cast<char>(cport >> 8);
    expected += static_cast<char>(cport & 0xff);
    expected += static_cast<char>(in_port >> 8);
    expected += static_cast<char>(in_port & 0xff);
    expected += "DATA";
    EXPECT_EQ(got, expected);
}

}  // namespace
