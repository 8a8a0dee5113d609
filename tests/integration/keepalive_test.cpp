// TCP keepalive on stream relays (docs/policy.md `keepalive`): the client's socket inherits the
// options from the listener the supervisor opened; the worker sets them on an upstream socket
// only once its connection has lived keepalive_delay (a tenth of `idle`, at most 1 s), so short
// connections skip those system calls. Read back from the worker's real sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <vector>

#include "harness.hpp"
#include "tests/support/require.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

uint16_t port_of(int fd, bool peer) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                       : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return r == 0 && a.sin_family == AF_INET ? ntohs(a.sin_port) : 0;
}

// The worker's TCP socket whose peer is 127.0.0.1:peer_port and local port is `local_port`
// (0: any), as a copy of the worker's fd; -1 fd if it holds none.
unique_fd worker_socket(pid_t worker, uint16_t local_port, uint16_t peer_port) {
    for (unique_fd& fd : socket_copies(worker)) {
        if (int_option(fd.get(), SOL_SOCKET, SO_TYPE) != SOCK_STREAM) continue;
        if (port_of(fd.get(), true) != peer_port) continue;
        if (local_port != 0 && port_of(fd.get(), false) != local_port) continue;
        return std::move(fd);
    }
    return unique_fd();
}

size_t sockets_to(pid_t worker, uint16_t peer_port) {
    size_t n = 0;
    for (unique_fd& fd : socket_copies(worker))
        if (int_option(fd.get(), SOL_SOCKET, SO_TYPE) == SOCK_STREAM &&
            port_of(fd.get(), true) == peer_port)
            ++n;
    return n;
}

bool echo_once(int fd) {
    char out[4] = {'p', 'i', 'n', 'g'}, back[4] = {};
    return write_all(fd, out, sizeof out) && read_exact(fd, back, sizeof back) &&
           std::string(back, 4) == "ping";
}

class Keepalive : public ::testing::Test {
  protected:
    void SetUp() override {
        listen_on = free_port();
        listen_off = free_port();
        upstream = free_port();
    }
    // idle 5 s: the upstream options come after 500 ms.
    std::string policy() const {
        return R"({"user": "nobody", "proxies": [)" +
               tcp_proxy_json("on", listen_on, upstream,
                              R"(, "keepalive": {"idle": "5s", "interval": "2s", "count": 3})") +
               ", " + tcp_proxy_json("off", listen_off, upstream, R"(, "keepalive": false)") + "]}";
    }
    uint16_t listen_on = 0, listen_off = 0, upstream = 0;
};

TEST_F(Keepalive, UpstreamOptionsComeOnlyAfterTheDelay) {
    EchoServer echo(upstream);
    Daemon d(policy());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const pid_t on = worker_of(d, "on");
    const pid_t off = worker_of(d, "off");
    ASSERT_GT(on, 0) << d.log();
    ASSERT_GT(off, 0) << d.log();

    // Opened first: its delay would have passed before the other's.
    unique_fd c_off = connect_tcp(listen_off);
    ASSERT_TRUE(c_off);
    set_timeouts(c_off.get(), 20s);
    ASSERT_TRUE(echo_once(c_off.get()));

    const auto opened = std::chrono::steady_clock::now();
    unique_fd c_on = connect_tcp(listen_on);
    ASSERT_TRUE(c_on);
    set_timeouts(c_on.get(), 20s);
    ASSERT_TRUE(echo_once(c_on.get()));  // relaying: the upstream is connected
    unique_fd up = worker_socket(on, 0, upstream);
    ASSERT_TRUE(up) << "no upstream socket in the worker";

    // Watch the worker's own socket until its keepalive is switched on.
    std::chrono::steady_clock::time_point armed;
    ASSERT_TRUE(wait_until(
        [&] {
            if (int_option(up.get(), SOL_SOCKET, SO_KEEPALIVE) != 1) return false;
            armed = std::chrono::steady_clock::now();
            return true;
        },
        20s))
        << "the upstream socket never got SO_KEEPALIVE";
    // Not before the delay (500 ms), less the kernel tick the worker's coarse clock may lag.
    const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(armed - opened);
    RecordProperty("armed_after_ms", std::to_string(after.count()));
    EXPECT_GE(after.count(), 450) << "keepalive was set on the upstream too early";
    EXPECT_EQ(int_option(up.get(), IPPROTO_TCP, TCP_KEEPIDLE), 5);
    EXPECT_EQ(int_option(up.get(), IPPROTO_TCP, TCP_KEEPINTVL), 2);
    EXPECT_EQ(int_option(up.get(), IPPROTO_TCP, TCP_KEEPCNT), 3);
    EXPECT_EQ(int_option(up.get(), IPPROTO_TCP, TCP_NODELAY), 1) << "set before the connect";

    // The client's side: inherited from the listener the supervisor opened.
    unique_fd down = worker_socket(on, listen_on, port_of(c_on.get(), false));
    ASSERT_TRUE(down) << "no client socket in the worker";
    EXPECT_EQ(int_option(down.get(), SOL_SOCKET, SO_KEEPALIVE), 1);
    EXPECT_EQ(int_option(down.get(), IPPROTO_TCP, TCP_KEEPIDLE), 5);

    // keepalive false: neither side, though its delay has passed too.
    unique_fd off_up = worker_socket(off, 0, upstream);
    unique_fd off_down = worker_socket(off, listen_off, port_of(c_off.get(), false));
    ASSERT_TRUE(off_up);
    ASSERT_TRUE(off_down);
    EXPECT_EQ(int_option(off_up.get(), SOL_SOCKET, SO_KEEPALIVE), 0);
    EXPECT_EQ(int_option(off_down.get(), SOL_SOCKET, SO_KEEPALIVE), 0);
    EXPECT_TRUE(echo_once(c_on.get()));
    EXPECT_TRUE(echo_once(c_off.get()));
}

// Connections that end before their keepalive is due leave the wait list with them: the worker
// keeps relaying (the sanitizer build would see a freed connection touched when it came due).
TEST_F(Keepalive, ShortConnectionsEndBeforeTheirOptionsAreDue) {
    EchoServer echo(upstream);
    Daemon d(policy());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const pid_t on = worker_of(d, "on");
    ASSERT_GT(on, 0) << d.log();
    for (int i = 0; i < 200; ++i) {
        unique_fd c = connect_tcp(listen_on);
        ASSERT_TRUE(c) << i;
        set_timeouts(c.get(), 20s);
        ASSERT_TRUE(echo_once(c.get())) << i;
    }
    // One long connection opened after them: its options come once every earlier entry is due,
    // so the worker has passed them all by then.
    unique_fd c = connect_tcp(listen_on);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(echo_once(c.get()));
    // The short ones' upstream sockets close as their FINs come back from the echo server.
    ASSERT_TRUE(wait_until([&] { return sockets_to(on, upstream) == 1; }))
        << sockets_to(on, upstream) << " upstream sockets";
    unique_fd up = worker_socket(on, 0, upstream);
    ASSERT_TRUE(up);
    ASSERT_TRUE(wait_until([&] { return int_option(up.get(), SOL_SOCKET, SO_KEEPALIVE) == 1; }))
        << d.log();
    EXPECT_TRUE(echo_once(c.get()));
    EXPECT_EQ(worker_of(d, "on"), on) << "the worker was restarted\n" << d.log();
}

}  // namespace
