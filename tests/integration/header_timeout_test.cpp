// The destination header's own deadline, observed at the client and in the log: a header that
// stops short and is followed by the client's FIN is refused at once as a short header (the
// worker sees the FIN behind a partial header through EPOLLRDHUP); one followed by silence is
// closed by the header timer (5 s), never by the connect timeout. Every length from 0 to 6 bytes
// of a 7-byte header, each on its own proxy so that no refusal's log line is rate-limited away.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr int kLengths = 7;  // 0..6 bytes of the standard IPv4 header's 7

// The standard header for 10.0.0.1:80: version 04, address and port little-endian.
const std::string kHeader("\x04\x01\x00\x00\x0a\x50\x00", 7);

std::string policy(const std::string& dir) {
    std::string entries;
    for (int k = 0; k < kLengths; ++k) {
        if (k > 0) entries += ", ";
        entries += R"({"name": "rx)" + std::to_string(k) + R"(", "listen": "unix:)" + dir + "/rx" +
                   std::to_string(k) +
                   R"(.sock", "upstream": "destination-header", "allow": ["10.0.0.0/8:80"],
                      "connect_timeout": "60s"})";
    }
    return R"({"proxies": [)" + entries + "]}";
}

unique_fd connect_unix(const std::string& path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
    const timeval limit{20, 0};  // read_until_end's "timeout": a hang, never the expected end
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    return fd;
}

// The worker's refusal line for proxy rxK, if the log has one.
std::string refusal_of(const std::string& log, int k) {
    const std::string tag = "rx" + std::to_string(k) + "/0: refused connection from ";
    const size_t at = log.find(tag);
    if (at == std::string::npos) return "";
    return log.substr(at, log.find('\n', at) - at);
}

}  // namespace

TEST(HeaderTimeout, APartialHeaderThenFinIsRefusedAtOnceAsShort) {
    TempDir dir;
    Daemon d(policy(dir.path()));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    for (int k = 0; k < kLengths; ++k) {
        unique_fd c = connect_unix(dir.path() + "/rx" + std::to_string(k) + ".sock");
        ASSERT_TRUE(c) << k;
        ASSERT_TRUE(write_all(c.get(), kHeader.data(), static_cast<size_t>(k)));
        ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
        std::string got;
        // Closed without a byte; a reset when the refused header bytes were left unread.
        const std::string end = read_until_end(c.get(), got);
        EXPECT_TRUE(end == "eof" || end == "reset") << k << ": " << end;
        EXPECT_EQ(got, "") << k;
        ASSERT_TRUE(d.wait_log("rx" + std::to_string(k) + "/0: refused connection from "))
            << d.log();
        const std::string line = refusal_of(d.log(), k);
        EXPECT_NE(
            line.find("short transparent header: stream ended after " + std::to_string(k) + " "),
            std::string::npos)
            << line;
        EXPECT_NE(line.find("(" + std::to_string(k) + " bytes, then the peer closed)"),
                  std::string::npos)
            << line;
    }
    EXPECT_EQ(d.log().find("no complete destination header within"), std::string::npos) << d.log();
}

TEST(HeaderTimeout, APartialHeaderThenSilenceIsClosedByTheHeaderTimer) {
    TempDir dir;
    Daemon d(policy(dir.path()));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    std::vector<unique_fd> clients;
    for (int k = 0; k < kLengths; ++k) {
        clients.push_back(connect_unix(dir.path() + "/rx" + std::to_string(k) + ".sock"));
        ASSERT_TRUE(clients.back()) << k;
        ASSERT_TRUE(write_all(clients.back().get(), kHeader.data(), static_cast<size_t>(k)));
    }
    for (int k = 0; k < kLengths; ++k) {
        std::string got;
        // read_until_end gives up after 20 s: longer than the header's 5 s, far shorter than
        // the 60 s connect timeout. A reset when the header bytes were left unread.
        const std::string end = read_until_end(clients[static_cast<size_t>(k)].get(), got);
        EXPECT_TRUE(end == "eof" || end == "reset") << k << ": " << end;
        EXPECT_EQ(got, "") << k;
    }
    for (int k = 0; k < kLengths; ++k) {
        ASSERT_TRUE(d.wait_log("rx" + std::to_string(k) + "/0: refused connection from "))
            << d.log();
        EXPECT_NE(refusal_of(d.log(), k).find("no complete destination header within 5000 ms"),
                  std::string::npos)
            << refusal_of(d.log(), k);
    }
    EXPECT_EQ(d.log().find("then the peer closed"), std::string::npos) << d.log();
}

// The policy's header_timeout replaces the 5 s: a partial header then silence is closed by it.
TEST(HeaderTimeout, ThePolicysHeaderTimeoutIsTheDeadline) {
    TempDir dir;
    Daemon d(R"({"proxies": [{"name": "rx", "listen": "unix:)" + dir.path() +
             R"(/rx.sock", "upstream": "destination-header", "allow": ["10.0.0.0/8:80"],
                 "connect_timeout": "60s", "header_timeout": "300ms"}]})");
    ASSERT_TRUE(d.wait_ready()) << d.log();
    unique_fd c = connect_unix(dir.path() + "/rx.sock");
    ASSERT_TRUE(c);
    ASSERT_TRUE(write_all(c.get(), kHeader.data(), 3));
    std::string got;
    const std::string end = read_until_end(c.get(), got);
    EXPECT_TRUE(end == "eof" || end == "reset") << end;
    EXPECT_EQ(got, "");
    ASSERT_TRUE(d.wait_log("rx/0: refused connection from ")) << d.log();
    EXPECT_NE(d.log().find("no complete destination header within 300 ms"), std::string::npos)
        << d.log();
}
