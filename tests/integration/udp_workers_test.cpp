// udp-forward with several workers: each reads its own SO_REUSEPORT socket, so the kernel's hash
// of a client's address keeps the client on one worker (one flow, one upstream source port), all
// workers carry flows, and a killed worker's clients are served again by its restarted successor
// (which reads the same socket) while the other worker's flows carry on untouched; a reload's new
// generation reads the same sockets.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

std::string policy(uint16_t in, uint16_t up, int workers, const std::string& extra = "") {
    return R"({"user": "nobody", "proxies": [{"name": "u", "listen": "udp:127.0.0.1:)" +
           std::to_string(in) + R"(", "upstream": "udp:127.0.0.1:)" + std::to_string(up) +
           R"(", "workers": )" + std::to_string(workers) + extra + "}]}";
}

// Sockets a process holds, from /proc/PID/fd: a worker's flows are its sockets beyond the few
// it starts with.
int sockets_of(pid_t pid) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return -1;
    int n = 0;
    while (const dirent* e = ::readdir(d)) {
        char target[64] = {};
        const std::string link = dir + "/" + e->d_name;
        if (::readlink(link.c_str(), target, sizeof target - 1) > 0 &&
            std::string(target).starts_with("socket:"))
            ++n;
    }
    ::closedir(d);
    return n;
}

std::string tag(const std::string& round, size_t client) {
    return round + " " + std::to_string(client) + ";";
}

// Every client sends one datagram tagged `round` and must get exactly it back.
void round_trip(std::vector<unique_fd>& clients, uint16_t in, const std::string& round,
                const Daemon& d) {
    for (size_t i = 0; i < clients.size(); ++i)
        ASSERT_TRUE(send_udp(clients[i].get(), AF_INET, in, tag(round, i)));
    for (size_t i = 0; i < clients.size(); ++i) {
        const auto back = recv_udp(clients[i].get(), 10s);
        ASSERT_TRUE(back) << "client " << i << " " << round << "\n" << d.log();
        EXPECT_EQ(*back, tag(round, i));
    }
}

TEST(UdpForwardWorkers, ClientsStayOnOneWorkerAndAKilledWorkersClientsAreServedAgain) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(policy(in, up, 2));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto workers = d.wait_workers(2);
    ASSERT_EQ(workers.size(), 2u) << d.log();
    const int base0 = sockets_of(workers[0]), base1 = sockets_of(workers[1]);
    ASSERT_GT(base0, 0);
    ASSERT_GT(base1, 0);

    constexpr int kClients = 64;
    std::vector<unique_fd> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(bind_udp(AF_INET));
    for (int round = 0; round < 3; ++round) round_trip(clients, in, "r" + std::to_string(round), d);
    // A client that hopped between workers would have a flow (an upstream source port) on each.
    EXPECT_EQ(server.peers().size(), static_cast<size_t>(kClients));
    const int flows0 = sockets_of(workers[0]) - base0, flows1 = sockets_of(workers[1]) - base1;
    EXPECT_EQ(flows0 + flows1, kClients);
    EXPECT_GT(flows0, 0) << "worker 0 carried no flow";
    EXPECT_GT(flows1, 0) << "worker 1 carried no flow";

    // kill -9 the busier worker; its socket stays with the supervisor and goes to its successor.
    const bool first = flows0 >= flows1;
    const pid_t victim = first ? workers[0] : workers[1];
    const int lost = first ? flows0 : flows1;
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    const auto now = d.wait_workers(2, {victim});
    ASSERT_EQ(now.size(), 2u) << d.log();
    ASSERT_TRUE(d.wait_log("udp-forward worker ready", 20s, 3)) << d.log();
    round_trip(clients, in, "after", d);
    // The killed worker's clients opened new flows (new source ports upstream, unless the kernel
    // happened to hand out a closed one's port again); the survivor's clients kept theirs.
    int kept = 0;
    for (size_t i = 0; i < clients.size(); ++i)
        if (server.peer_of(tag("after", i)) == server.peer_of(tag("r2", i))) ++kept;
    EXPECT_GE(kept, kClients - lost) << d.log();
    EXPECT_LE(server.peers().size(), static_cast<size_t>(kClients + lost));
    EXPECT_GT(server.peers().size(), static_cast<size_t>(kClients)) << "no new flow was made";
}

// A reload's new generation reads the same sockets: while the old workers drain and after they
// are gone, every client is answered (no socket is left that nobody reads), each through a new
// flow of the new generation.
TEST(UdpForwardWorkers, ANewGenerationReadsTheSameSockets) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(policy(in, up, 2));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto old = d.wait_workers(2);
    std::vector<unique_fd> clients;
    for (int i = 0; i < 32; ++i) clients.push_back(bind_udp(AF_INET));
    round_trip(clients, in, "before", d);
    // Another idle_timeout: a changed proxy, so a new generation on the same listener.
    std::ofstream(d.policy_path()) << policy(in, up, 2, ", \"idle_timeout\": \"30s\"");
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("hands over to generation 2", 20s, 2)) << d.log();
    round_trip(clients, in, "during", d);
    ASSERT_EQ(d.wait_workers(2, old).size(), 2u) << "the old generation did not exit\n" << d.log();
    round_trip(clients, in, "after", d);
    // New flows in the new generation (a closed flow's port may come back, rarely), kept there.
    size_t moved = 0;
    for (size_t i = 0; i < clients.size(); ++i) {
        if (server.peer_of(tag("during", i)) != server.peer_of(tag("before", i))) ++moved;
        EXPECT_EQ(server.peer_of(tag("after", i)), server.peer_of(tag("during", i))) << i;
    }
    EXPECT_GE(moved, clients.size() - 2) << d.log();
}

TEST(UdpForwardWorkers, AReloadCannotChangeHowManyThereAre) {
    const uint16_t up = free_udp_port(), in = free_udp_port();
    UdpEchoServer server(AF_INET, up);
    Daemon d(policy(in, up, 2));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::ofstream(d.policy_path()) << policy(in, up, 3);
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("workers cannot change from 2 to 3")) << d.log();
    EXPECT_NE(d.log().find("refused"), std::string::npos) << d.log();
    unique_fd c = bind_udp(AF_INET);
    ASSERT_TRUE(send_udp(c.get(), AF_INET, in, "still served"));
    const auto back = recv_udp(c.get(), 10s);
    ASSERT_TRUE(back) << d.log();
    EXPECT_EQ(*back, "still served");
    EXPECT_EQ(d.workers().size(), 2u);
}

}  // namespace
