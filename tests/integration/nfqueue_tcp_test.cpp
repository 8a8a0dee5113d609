// nfqueue-to-stream with a tcp: upstream: in namespace A an iptables NFQUEUE rule takes the UDP
// packets bound for B; pf-proxyd's reader writes them to a TCP stream to a listener on A's
// loopback, which receives the whole packet, and the original never reaches B. When the stream's
// peer goes away every packet still gets a verdict and the reader reconnects; its counters say so.
// The reader keeps only CAP_NET_ADMIN under its seccomp filter.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "harness.hpp"
#include "netns.hpp"
#include "proxy_status.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

TEST(NfqueueTcpUpstream, QueuedPacketsGoOverTcpAndNeverReachTheirDestination) {
    PFP_REQUIRE_NETNS();
    UdpQueuedPair net(8);
    const NetNs& a = net.a;
    unique_fd at_b = net.b.run([] {
        const pfp::SockAddr addr = make_addr("10.66.0.2", 9);
        unique_fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!fd || ::bind(fd.get(), addr.get(), addr.len) < 0)
            throw std::runtime_error(std::string("udp bind: ") + std::strerror(errno));
        return fd;
    });
    constexpr uint16_t kPort = 7300;
    unique_fd listener = listen_tcp_in(a, "127.0.0.1", kPort);
    set_timeouts(listener.get(), 10s);
    auto d = start_daemon(a, R"({"user": "nobody", "drain_timeout": "1s", "proxies": [)"
                             R"({"name": "reader", "listen": "nfqueue:8",)"
                             R"( "upstream": "tcp:127.0.0.1:7300"}]})");
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();
    unique_fd stream(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(stream) << d->log();
    set_timeouts(stream.get(), 5s);
    ASSERT_TRUE(d->wait_log("stream to tcp:127.0.0.1:7300 connected", 10s)) << d->log();

    int sent = 0;
    const auto send = [&net, &sent](const std::string& text) {
        ++sent;
        net.send_to_b(text);
    };
    const std::string payload = "queued-over-tcp";
    send(payload);
    // The whole IPv4 packet, unframed: 20 header bytes, 8 UDP, then the payload.
    std::string got(20 + 8 + payload.size(), '\0');
    size_t have = 0;
    while (have < got.size()) {
        const ssize_t n = ::read(stream.get(), got.data() + have, got.size() - have);
        ASSERT_GT(n, 0) << d->log();
        have += static_cast<size_t>(n);
    }
    EXPECT_EQ(static_cast<uint8_t>(got[0]), 0x45);
    EXPECT_EQ((static_cast<uint8_t>(got[2]) << 8) | static_cast<uint8_t>(got[3]),
              static_cast<int>(got.size()));
    EXPECT_EQ(got.substr(28), payload);
    char dst[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, got.data() + 16, dst, sizeof dst);
    EXPECT_STREQ(dst, "10.66.0.2");
    // NF_DROP: the original never reaches B.
    pollfd p{at_b.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 300), 0) << "the queued packet also reached B";

    // The peer goes away: the reader notices at a write, reconnects after its backoff, and every
    // packet meanwhile still gets its verdict (NF_DROP: on_stream_down's default).
    stream.reset();
    ASSERT_TRUE(wait_until(
        [&] {
            send("while-down");
            return d->log().find("stream to tcp:127.0.0.1:7300 lost") != std::string::npos;
        },
        10s))
        << d->log();
    send("during-backoff");  // the next attempt is a second away: this one cannot be written
    unique_fd again(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(again) << d->log();
    set_timeouts(again.get(), 5s);
    ASSERT_TRUE(d->wait_log("stream to tcp:127.0.0.1:7300 connected", 10s, 2)) << d->log();
    send("after-reconnect");
    std::string more;
    char buf[4096];
    while (more.find("after-reconnect") == std::string::npos) {
        const ssize_t n = ::read(again.get(), buf, sizeof buf);
        ASSERT_GT(n, 0) << d->log();
        more.append(buf, static_cast<size_t>(n));
    }
    // The reader's counters (status --json), once its report has every packet.
    nlohmann::json k;
    ASSERT_TRUE(wait_until([&] {
        k = proxy_counters(*d, "reader").value("packet", nlohmann::json::object());
        return k.value("packets_in", -1) == sent;
    })) << k.dump()
        << d->log();
    EXPECT_EQ(k["verdicts_drop"], sent) << k;
    EXPECT_EQ(k["verdicts_accept"], 0) << k;
    EXPECT_EQ(k["streams"], 2) << k;
    EXPECT_EQ(k["streams_active"], 1) << k;
    EXPECT_EQ(k["reconnects"], 1) << k;
    EXPECT_EQ(k["stream_errors"], 1) << k;
    EXPECT_EQ(k["packets_out"].get<int>() + k["dropped_stream_down"].get<int>(), sent) << k;
    EXPECT_GE(k["dropped_stream_down"], 1) << k;

    const auto workers = d->wait_workers(1);
    ASSERT_EQ(workers.size(), 1u);
    EXPECT_EQ(status_field(workers[0], "CapEff"), "0000000000001000");  // CAP_NET_ADMIN
    EXPECT_EQ(status_field(workers[0], "Seccomp"), "2");
    EXPECT_EQ(status_field(workers[0], "NoNewPrivs"), "1");
}

}  // namespace
