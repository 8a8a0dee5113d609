// The datagram forwarder's flow table and its client-address keys.
#include "workers/flow_table.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace pfp::worker {
namespace {

FlowKey v4(const char* ip, uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, ip, &a.sin_addr);
    return *flow_key(reinterpret_cast<sockaddr*>(&a), sizeof a);
}

TEST(FlowKey, NormalisesAndRefusesWhatIsNoUdpPeer) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(53);
    a.sin6_flowinfo = htonl(1234);  // not part of the peer's identity
    a.sin6_addr = in6addr_loopback;
    const auto k = flow_key(reinterpret_cast<sockaddr*>(&a), sizeof a);
    ASSERT_TRUE(k);
    EXPECT_EQ(flow_key_text(*k), "[::1]:53");
    a.sin6_flowinfo = 0;
    EXPECT_EQ(*flow_key(reinterpret_cast<sockaddr*>(&a), sizeof a), *k);
    EXPECT_FALSE(flow_key(reinterpret_cast<sockaddr*>(&a), sizeof a - 1));  // short
    a.sin6_port = 0;
    EXPECT_FALSE(flow_key(reinterpret_cast<sockaddr*>(&a), sizeof a));  // no port
    sockaddr s{};
    s.sa_family = AF_UNIX;
    EXPECT_FALSE(flow_key(&s, sizeof s));
    EXPECT_FALSE(flow_key(nullptr, 0));
    EXPECT_EQ(flow_key_text(v4("10.1.2.3", 40000)), "10.1.2.3:40000");
    EXPECT_FALSE(v4("10.1.2.3", 40000) == v4("10.1.2.3", 40001));
}

TEST(FlowTable, OrdersByLastActivityAndReusesSlots) {
    FlowTable t(3);
    const auto t0 = Clock::now();
    Flow& a = t.insert(v4("10.0.0.1", 1), t0);
    Flow& b = t.insert(v4("10.0.0.2", 1), t0);
    t.insert(v4("10.0.0.3", 1), t0);
    EXPECT_TRUE(t.full());
    EXPECT_EQ(t.least_recent(), &a);
    t.touch(a, t0 + std::chrono::seconds(1));
    EXPECT_EQ(t.least_recent(), &b);
    EXPECT_EQ(t.most_recent(), &a);
    EXPECT_EQ(t.find(v4("10.0.0.2", 1)), &b);
    t.remove(b);
    EXPECT_EQ(t.find(v4("10.0.0.2", 1)), nullptr);
    EXPECT_EQ(t.size(), 2u);
    Flow& d = t.insert(v4("10.0.0.4", 1), t0);
    EXPECT_EQ(&d, &b);  // the freed slot, at the same address (epoll holds pointers to slots)
    EXPECT_EQ(t.most_recent(), &d);
    EXPECT_THROW(t.insert(v4("10.0.0.5", 1), t0), std::logic_error);
    while (Flow* f = t.least_recent()) t.remove(*f);
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(t.most_recent(), nullptr);
}

}  // namespace
}  // namespace pfp::worker
