// workers/datagram_batch.hpp on loopback sockets: what OutputBatch gathers arrives as the same
// datagrams, whole and in order, whether it went as segmented runs (UDP_SEGMENT) or one by one,
// to a connected peer or to addresses that change; RecvBatch reads them back with their senders.
#include "workers/datagram_batch.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp::worker {
namespace {

unique_fd bound_udp() {
    unique_fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int big = 4 << 20;
    ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
    return s;
}

sockaddr_in address_of(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return a;
}

// `count` datagrams from fd through RecvBatch (waiting up to 10 s for each batch).
std::vector<std::string> receive(int fd, size_t count, std::vector<uint16_t>* sources = nullptr) {
    RecvBatch in(8, 2048, 2048 + 64);
    std::vector<std::string> got;
    while (got.size() < count) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) break;
        const int n = in.receive(fd, true, in.count());
        for (int i = 0; i < n; ++i) {
            const auto slot = static_cast<size_t>(i);
            const auto d = in.data(slot);
            got.emplace_back(reinterpret_cast<const char*>(d.data()), d.size());
            if (sources)
                sources->push_back(
                    ntohs(reinterpret_cast<const sockaddr_in&>(in.name(slot)).sin_port));
        }
    }
    return got;
}

std::string datagram(size_t n, size_t size) {
    std::string d = std::to_string(n) + ":";
    d.resize(size, static_cast<char>('a' + n % 26));
    return d;
}

void add(OutputBatch& b, int fd, const sockaddr_in* to, const std::string& d) {
    b.add(fd, reinterpret_cast<const sockaddr*>(to), to ? sizeof *to : 0,
          {reinterpret_cast<const uint8_t*>(d.data()), d.size()});
}

TEST(DatagramBatch, MixedSizesArriveWholeAndInOrder) {
    unique_fd receiver = bound_udp(), sender = bound_udp();
    const sockaddr_in to = address_of(receiver.get());
    ASSERT_EQ(::connect(sender.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
    uint64_t sent = 0, failed = 0;
    OutputBatch b(2048, sent, failed);
    // An ACK-sized one, a window of full segments with a short tail, then singles of any size:
    // more than one batch's capacity, so add() sends a full batch on its own.
    std::vector<std::string> want;
    want.push_back(datagram(0, 100));
    for (size_t i = 1; i <= 70; ++i) want.push_back(datagram(i, 1350));
    want.push_back(datagram(71, 500));
    for (size_t i = 72; i < 90; ++i) want.push_back(datagram(i, 40 + i * 13));
    for (const auto& d : want) add(b, sender.get(), nullptr, d);
    b.flush();
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(receive(receiver.get(), want.size()), want);
    EXPECT_EQ(sent, want.size());
    EXPECT_EQ(failed, 0u);
}

TEST(DatagramBatch, EachDestinationGetsItsOwnDatagramsFromTheOneSocket) {
    unique_fd a = bound_udp(), b_sock = bound_udp(), sender = bound_udp();
    const sockaddr_in to_a = address_of(a.get()), to_b = address_of(b_sock.get());
    uint64_t sent = 0, failed = 0;
    OutputBatch b(2048, sent, failed);
    std::vector<std::string> want_a, want_b;
    for (size_t i = 0; i < 40; ++i) {
        const std::string d = datagram(i, 1200);
        // Runs of five to each destination in turn.
        if ((i / 5) % 2 == 0) {
            want_a.push_back(d);
            add(b, sender.get(), &to_a, d);
        } else {
            want_b.push_back(d);
            add(b, sender.get(), &to_b, d);
        }
    }
    b.flush();
    std::vector<uint16_t> sources;
    EXPECT_EQ(receive(a.get(), want_a.size(), &sources), want_a);
    EXPECT_EQ(receive(b_sock.get(), want_b.size()), want_b);
    for (const uint16_t p : sources) EXPECT_EQ(p, ntohs(address_of(sender.get()).sin_port));
    EXPECT_EQ(sent, 40u);
}

TEST(DatagramBatch, TooLongADatagramIsCountedNotSent) {
    unique_fd receiver = bound_udp(), sender = bound_udp();
    const sockaddr_in to = address_of(receiver.get());
    uint64_t sent = 0, failed = 0;
    OutputBatch b(1500, sent, failed);
    add(b, sender.get(), &to, std::string(1501, 'x'));
    add(b, sender.get(), &to, "fits");
    b.flush();
    EXPECT_EQ(receive(receiver.get(), 1), std::vector<std::string>{"fits"});
    EXPECT_EQ(sent, 1u);
    EXPECT_EQ(failed, 1u);
}

}  // namespace
}  // namespace pfp::worker
