// The test support's lossy UDP relay (tests/support/lossy_udp_relay.hpp), on loopback: what it
// delivers for a seed is the same every run, drops/duplicates/reorders what it is told to, keeps
// flows apart, evicts beyond max_flows, and as a tap records and injects.
#include "tests/support/lossy_udp_relay.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp::test {
namespace {

using namespace std::chrono_literals;

unique_fd udp_socket(uint16_t port = 0) {
    unique_fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int big = 4 << 20;
    ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
    return s;
}

uint16_t port_of(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

void send_to(int fd, uint16_t port, const std::string& payload) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(
        ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a),
        static_cast<ssize_t>(payload.size()));
}

// Datagrams that arrive at `fd` until `done` holds (checked after each, and at each poll timeout),
// or 10 s pass without one (a hang).
template <typename Done>
std::vector<std::string> receive_until(int fd, Done done) {
    std::vector<std::string> got;
    char buf[2048];
    while (!done(got)) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10000) <= 0) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n >= 0) got.emplace_back(buf, static_cast<size_t>(n));
    }
    return got;
}

struct Trial {
    std::vector<std::string> delivered;
    lossy::Counters counters;
};

// `count` numbered datagrams from one client through the relay to a sink, in one burst.
Trial one_way(const lossy::Options& base, int count) {
    unique_fd sink = udp_socket();
    lossy::Options o = base;
    o.target = "127.0.0.1:" + std::to_string(port_of(sink.get()));
    lossy::Relay relay(o);
    unique_fd client = udp_socket();
    for (int i = 0; i < count; ++i) send_to(client.get(), relay.port(), std::to_string(i));
    // Every datagram the relay did not drop has been sent (once, or twice when duplicated), and
    // each sent one has arrived.
    Trial r;
    r.delivered = receive_until(sink.get(), [&](const std::vector<std::string>& got) {
        const auto c = relay.counters();
        return c.received == static_cast<uint64_t>(count) &&
               c.sent == c.received - c.dropped + c.duplicated && got.size() == c.sent;
    });
    r.counters = relay.counters();
    return r;
}

TEST(LossyUdpRelay, ASeedDeliversTheSameDatagramsInTheSameOrderEveryRun) {
    lossy::Options o;
    o.drop = 0.2;
    o.duplicate = 0.1;
    o.reorder = 0.1;
    o.seed = 42;
    o.hold_limit = 5s;  // only a later datagram releases a held one within the burst
    const Trial a = one_way(o, 1000), b = one_way(o, 1000);
    EXPECT_EQ(a.delivered, b.delivered);
    EXPECT_EQ(a.counters.dropped, b.counters.dropped);
    EXPECT_EQ(a.counters.lost, 0u);
    // Roughly the asked rates (a 1000-sample binomial stays well inside these bounds).
    EXPECT_GT(a.counters.dropped, 120u);
    EXPECT_LT(a.counters.dropped, 280u);
    EXPECT_GT(a.counters.duplicated, 40u);
    EXPECT_GT(a.counters.reordered, 30u);
    EXPECT_EQ(a.delivered.size(), 1000 - a.counters.dropped + a.counters.duplicated);
    // Reordered: some datagram arrives after a higher-numbered one.
    bool out_of_order = false;
    for (size_t i = 1; i < a.delivered.size(); ++i)
        out_of_order |= std::stoi(a.delivered[i]) < std::stoi(a.delivered[i - 1]);
    EXPECT_TRUE(out_of_order);

    o.seed = 43;
    const Trial c = one_way(o, 1000);
    EXPECT_NE(a.delivered, c.delivered);
}

TEST(LossyUdpRelay, WithoutImpairmentsEverythingArrivesInOrder) {
    const Trial r = one_way(lossy::Options{}, 500);
    ASSERT_EQ(r.delivered.size(), 500u);
    for (int i = 0; i < 500; ++i) EXPECT_EQ(r.delivered[static_cast<size_t>(i)], std::to_string(i));
    EXPECT_EQ(r.counters.flows, 1u);
}

TEST(LossyUdpRelay, RecordsWhatClientsSentAndInjectsFromTheFirstClientsAddress) {
    unique_fd sink = udp_socket();
    lossy::Options o;
    o.target = "127.0.0.1:" + std::to_string(port_of(sink.get()));
    o.record = true;
    o.drop = 0.5;  // recorded before any loss
    lossy::Relay relay(o);
    EXPECT_FALSE(relay.inject("early")) << "no flow yet";
    unique_fd client = udp_socket();
    for (int i = 0; i < 100; ++i) send_to(client.get(), relay.port(), std::to_string(i));
    std::vector<std::string> recorded;
    for (int i = 0; i < 1000 && recorded.size() < 100; ++i) {
        recorded = relay.client_datagrams();
        std::this_thread::sleep_for(10ms);  // the relay's thread records as it reads
    }
    ASSERT_EQ(recorded.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(recorded[static_cast<size_t>(i)], std::to_string(i));
    // The injected datagram comes from the address the relay's flow uses for that client.
    const auto source_of_next = [&](std::string& payload) {
        sockaddr_in from{};
        socklen_t len = sizeof from;
        char buf[64];
        pollfd p{sink.get(), POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) return uint16_t{0};
        const ssize_t n =
            ::recvfrom(sink.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        payload.assign(buf, static_cast<size_t>(std::max<ssize_t>(n, 0)));
        return ntohs(from.sin_port);
    };
    std::string payload;
    const uint16_t relayed_from = source_of_next(payload);  // one the relay did not drop
    ASSERT_NE(relayed_from, 0);
    ASSERT_TRUE(relay.inject("injected"));
    uint16_t injected_from = 0;
    for (int i = 0; i < 100 && payload != "injected"; ++i) injected_from = source_of_next(payload);
    ASSERT_EQ(payload, "injected");
    EXPECT_EQ(injected_from, relayed_from);
}

TEST(LossyUdpRelay, AnswersReturnToTheirOwnClientAndFlowsAreBounded) {
    // The target echoes; two clients, a flow table of one: the second client evicts the first.
    unique_fd echo = udp_socket();
    lossy::Options o;
    o.target = "127.0.0.1:" + std::to_string(port_of(echo.get()));
    o.max_flows = 1;
    lossy::Relay relay(o);
    unique_fd c1 = udp_socket(), c2 = udp_socket();
    auto echo_one = [&] {
        char buf[64];
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        pollfd p{echo.get(), POLLIN, 0};
        ASSERT_EQ(::poll(&p, 1, 10000), 1);
        const ssize_t n =
            ::recvfrom(echo.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        ASSERT_GT(n, 0);
        ::sendto(echo.get(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
                 len);
    };
    auto one = [](int fd) {
        return receive_until(fd, [](const std::vector<std::string>& g) { return !g.empty(); });
    };
    send_to(c1.get(), relay.port(), "one");
    echo_one();
    EXPECT_EQ(one(c1.get()), std::vector<std::string>{"one"});
    send_to(c2.get(), relay.port(), "two");
    echo_one();
    EXPECT_EQ(one(c2.get()), std::vector<std::string>{"two"});
    // The relay counts a datagram once its send returned, which may be after it arrived.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (relay.counters().sent < 4 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    const auto c = relay.counters();
    EXPECT_EQ(c.flows, 2u);
    EXPECT_EQ(c.sent, 4u);
}

TEST(LossyUdpRelay, RefusesBadOptions) {
    lossy::Options o;
    o.target = "127.0.0.1:9";
    o.drop = 1.5;
    EXPECT_THROW(lossy::Relay{o}, std::runtime_error);
    o.drop = 0;
    o.target = "not-an-address";
    EXPECT_THROW(lossy::Relay{o}, std::runtime_error);
}

}  // namespace
}  // namespace pfp::test
