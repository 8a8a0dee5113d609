// udp-forward with two workers under systemd's FD store: worker 0's socket (SO_REUSEPORT) is
// stored; a restarted pf-proxyd takes it back, a datagram that waited in it while nothing ran is
// answered, and the other worker's socket, opened anew, joins it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include "activation_env.hpp"
#include "harness.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

std::string policy(uint16_t in, uint16_t up) {
    return R"({"user": "nobody", "proxies": [{"name": "u", "listen": "udp:127.0.0.1:)" +
           std::to_string(in) + R"(", "upstream": "udp:127.0.0.1:)" + std::to_string(up) +
           R"(", "workers": 2}]})";
}

bool echoed(int fd, uint16_t in, const std::string& payload) {
    if (!send_udp(fd, AF_INET, in, payload)) return false;
    const auto back = recv_udp(fd, 10s);
    return back && *back == payload;
}

TEST(UdpForwardStore, TheStoredSocketHeadsTheGroupAfterARestart) {
    NotifySocket notify;
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    {
        ActivationEnv env;
        env.notify_socket(notify.path());
        Daemon d(policy(in, up), {}, 0, env.hook());
        ASSERT_TRUE(d.wait_ready()) << d.log();
        ASSERT_GE(notify.wait_for([](const NotifyMessage& m) {
            return m.has("FDSTORE=1") && m.value("FDNAME") == "pfp-store.u";
        }),
                  0)
            << notify.dump();
        unique_fd c = bind_udp(AF_INET);
        EXPECT_TRUE(echoed(c.get(), in, "first run")) << d.log();
        d.signal(SIGTERM);
        ASSERT_NE(d.wait_exit(), -1) << d.log();
    }
    notify.drain();
    const auto stored = notify.stored("pfp-store.u");
    ASSERT_EQ(stored.size(), 1u) << notify.dump();
    int on = 0;
    socklen_t len = sizeof on;
    ASSERT_EQ(::getsockopt(stored[0], SOL_SOCKET, SO_REUSEPORT, &on, &len), 0);
    EXPECT_EQ(on, 1);
    const ino_t ino = socket_inode(stored[0]);

    // Nothing runs: the datagram waits in the stored socket, the group's only member.
    unique_fd early = bind_udp(AF_INET);
    ASSERT_TRUE(send_udp(early.get(), AF_INET, in, "while down"));

    ActivationEnv env;
    notify.pass_store(env);
    env.notify_socket(notify.path());
    Daemon d(policy(in, up), {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_EQ(lines_with(d.log(), "proxy \"u\": reusing the listener on udp:127.0.0.1:" +
                                      std::to_string(in) + " from systemd's FD store")
                  .size(),
              1u)
        << d.log();
    EXPECT_TRUE(lines_with(d.log(), "dropping").empty()) << d.log();
    const auto back = recv_udp(early.get(), 10s);
    ASSERT_TRUE(back) << d.log();
    EXPECT_EQ(*back, "while down");
    // One worker reads the stored socket, the other its own new one; every client is answered.
    const auto workers = d.wait_workers(2);
    ASSERT_EQ(workers.size(), 2u);
    EXPECT_EQ(fds_of_socket(workers[0], ino).size() + fds_of_socket(workers[1], ino).size(), 1u);
    std::vector<unique_fd> clients;
    for (int i = 0; i < 32; ++i) clients.push_back(bind_udp(AF_INET));
    for (size_t i = 0; i < clients.size(); ++i)
        EXPECT_TRUE(echoed(clients[i].get(), in, "client " + std::to_string(i))) << d.log();
}

// A socket an earlier pf-proxyd stored while it ran the proxy with one worker has no
// SO_REUSEPORT: it gets it, and the second worker's new socket joins it.
TEST(UdpForwardStore, AStoredSocketWithoutReusePortGetsIt) {
    NotifySocket notify;
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    unique_fd single = bind_udp(AF_INET, in);
    const ino_t ino = socket_inode(single.get());
    notify.put("pfp-store.u", std::move(single));
    ActivationEnv env;
    notify.pass_store(env);
    env.notify_socket(notify.path());
    Daemon d(policy(in, up), {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_EQ(
        lines_with(d.log(), "reusing the listener on udp:127.0.0.1:" + std::to_string(in)).size(),
        1u)
        << d.log();
    int on = 0;
    socklen_t len = sizeof on;
    ASSERT_EQ(::getsockopt(notify.stored("pfp-store.u").at(0), SOL_SOCKET, SO_REUSEPORT, &on, &len),
              0);
    EXPECT_EQ(on, 1);
    const auto workers = d.wait_workers(2);
    ASSERT_EQ(workers.size(), 2u);
    EXPECT_EQ(fds_of_socket(workers[0], ino).size() + fds_of_socket(workers[1], ino).size(), 1u);
    std::vector<unique_fd> clients;
    for (int i = 0; i < 32; ++i) clients.push_back(bind_udp(AF_INET));
    for (size_t i = 0; i < clients.size(); ++i)
        EXPECT_TRUE(echoed(clients[i].get(), in, "client " + std::to_string(i))) << d.log();
}

}  // namespace
