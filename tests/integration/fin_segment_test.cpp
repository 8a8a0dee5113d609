// A stream relay that knows the source's FIN follows the bytes it has just read sends its own
// FIN in the same segment as those bytes (workers/connection.cpp, send_flags): one segment less
// per closing direction. Counted by iptables in a namespace of the test's own, where only the
// relay sends to the upstream's port and from the listener's port.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <sstream>
#include <string>
#include <thread>

#include "netns.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr uint16_t kListen = 17300;
constexpr uint16_t kUpstream = 17301;
constexpr int kConnections = 3;
// Payloads long enough that a segment carrying one is longer than any bare FIN (IPv4 and TCP
// headers with every option: at most 80 bytes).
const std::string kRequest(200, 'q');
const std::string kResponse(300, 'r');

// Sends `bytes` and the FIN in one segment: MSG_MORE holds the bytes for the shutdown.
bool send_with_fin(int fd, const std::string& bytes) {
    return ::send(fd, bytes.data(), bytes.size(), MSG_MORE | MSG_NOSIGNAL) ==
               static_cast<ssize_t>(bytes.size()) &&
           ::shutdown(fd, SHUT_WR) == 0;
}

std::string read_to_eof(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

// Packets counted by the OUTPUT rule for `port` ("dpt:N" or "spt:N"), the one with the length
// match or the one without (iptables -L -v -x).
uint64_t counted(const NetNs& ns, const std::string& port, bool with_data) {
    std::istringstream lines(ns.exec({"iptables", "-L", "OUTPUT", "-v", "-x", "-n"}));
    std::string line;
    while (std::getline(lines, line)) {
        if (line.find(port + " ") == std::string::npos ||
            (line.find(" length ") != std::string::npos) != with_data)
            continue;
        std::istringstream fields(line);
        uint64_t packets = 0;
        fields >> packets;
        return packets;
    }
    ADD_FAILURE() << "no OUTPUT rule for " << port;
    return 0;
}

TEST(FinSegment, FinRidesOnTheLastBytesBothWays) {
    PFP_REQUIRE_NETNS();
    NetNs ns("fin");
    // FIN segments from the relay, all and those that carry data, towards the upstream and
    // towards the client. Rules without a target only count.
    const std::vector<std::string> fin = {"-p", "tcp", "--tcp-flags", "FIN", "FIN"};
    auto spec = [&](const std::string& dir, uint16_t port, bool with_data) {
        std::vector<std::string> s = fin;
        s.insert(s.begin() + 2, {dir, std::to_string(port)});
        if (with_data) s.insert(s.end(), {"-m", "length", "--length", "120:65535"});
        return s;
    };
    IptablesRule up_data(ns, IptablesRule::v4, "filter", "OUTPUT",
                         spec("--dport", kUpstream, true));
    IptablesRule up_all(ns, IptablesRule::v4, "filter", "OUTPUT",
                        spec("--dport", kUpstream, false));
    IptablesRule down_data(ns, IptablesRule::v4, "filter", "OUTPUT",
                           spec("--sport", kListen, true));
    IptablesRule down_all(ns, IptablesRule::v4, "filter", "OUTPUT",
                          spec("--sport", kListen, false));

    // The upstream: reads the request to its FIN, answers with data and FIN in one segment.
    unique_fd listener = listen_tcp_in(ns, "127.0.0.1", kUpstream);
    ASSERT_TRUE(listener);
    std::thread server([&] {
        for (int i = 0; i < kConnections; ++i) {
            unique_fd c(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!c) return;
            set_timeouts(c.get(), 20s);
            if (read_to_eof(c.get()) != kRequest) return;
            send_with_fin(c.get(), kResponse);
            read_to_eof(c.get());  // the relay's close
        }
    });
    auto d = start_daemon(ns, R"({"user": "nobody", "proxies": [)" +
                                  tcp_proxy_json("fin", kListen, kUpstream) + "]}");
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();

    for (int i = 0; i < kConnections; ++i) {
        unique_fd c;
        ASSERT_EQ(connect_tcp_in(ns, "127.0.0.1", kListen, c), 0);
        set_timeouts(c.get(), 20s);
        ASSERT_TRUE(send_with_fin(c.get(), kRequest));
        EXPECT_EQ(read_to_eof(c.get()), kResponse) << "connection " << i << "\n" << d->log();
    }
    ::shutdown(listener.get(), SHUT_RDWR);
    server.join();

    // Every FIN the relay sent, one per direction per connection, rode on the bytes before it:
    // towards the upstream ahead of a shutdown(), towards the client ahead of the close().
    const std::string up = "dpt:" + std::to_string(kUpstream);
    const std::string down = "spt:" + std::to_string(kListen);
    const auto n = static_cast<uint64_t>(kConnections);
    EXPECT_EQ(counted(ns, up, false), n) << "FINs towards the upstream";
    EXPECT_EQ(counted(ns, up, true), n) << "FINs with data towards the upstream";
    EXPECT_EQ(counted(ns, down, false), n) << "FINs towards the client";
    EXPECT_EQ(counted(ns, down, true), n) << "FINs with data towards the client";
}

}  // namespace
