// The stream relay's two data paths: small reads are copied through a buffer (recv/send), a read
// that fills the buffer switches the direction to splice() through a pipe, and a short splice
// switches it back. Each path must deliver every byte intact and pass half-close on. Which path
// ran is seen from outside: only the splice path gives the worker pipe fds (kept in its pool).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "harness.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

std::string policy(uint16_t listen, uint16_t upstream, const std::string& extra = "") {
    return "{\"user\": \"nobody\", \"proxies\": [" +
           tcp_proxy_json("web", listen, upstream, extra) + "]}";
}

// Splice pipes only: fds 1 and 2 are the log pipe the supervisor reads.
int pipe_fds(pid_t pid) {
    int n = 0;
    for (const auto& f : fd_targets(pid))
        if (f.find("pipe:") != std::string::npos && !f.starts_with("1 -> ") &&
            !f.starts_with("2 -> "))
            ++n;
    return n;
}

// Sends `n` pattern bytes and expects the echo of exactly those bytes.
void exchange(int fd, size_t n, uint64_t seed) {
    std::vector<char> out(n), back(n);
    fill_pattern(out, seed);
    ASSERT_TRUE(write_all(fd, out.data(), n)) << "message " << seed;
    ASSERT_TRUE(read_exact(fd, back.data(), n)) << "message " << seed << " (" << n << " bytes)";
    ASSERT_TRUE(out == back) << "message " << seed << " corrupted";
}

void small_exchanges(int fd, int count, uint64_t seed) {
    for (int i = 0; i < count; ++i)
        exchange(fd, 1 + static_cast<size_t>(i * 37 % 4000), seed + static_cast<uint64_t>(i));
}

// `total` bytes out and their echo back on an open connection, both at once (no shutdown).
void bulk_echo(int fd, size_t total, uint64_t seed) {
    uint64_t sent = 0;
    std::thread writer([&] {
        std::vector<char> buf(kTransferChunk);
        Fnv h;
        for (size_t left = total, s = seed; left > 0;) {
            fill_pattern(buf, s++);
            size_t n = std::min(left, buf.size());
            h.add(buf.data(), n);
            if (!write_all(fd, buf.data(), n)) break;
            left -= n;
        }
        sent = h.value();
    });
    std::vector<char> buf(kTransferChunk);
    Fnv h;
    size_t got = 0;
    while (got < total) {
        size_t want = std::min(buf.size(), total - got);
        ssize_t n = ::recv(fd, buf.data(), want, 0);
        if (n <= 0) break;
        h.add(buf.data(), static_cast<size_t>(n));
        got += static_cast<size_t>(n);
    }
    writer.join();
    EXPECT_EQ(got, total);
    EXPECT_EQ(h.value(), sent) << "bulk echo corrupted";
}

class RelayPaths : public ::testing::Test {
  protected:
    void SetUp() override {
        listen_port = free_port();
        upstream_port = free_port();
    }
    uint16_t listen_port = 0, upstream_port = 0;
};

TEST_F(RelayPaths, SmallExchangesAreCopiedIntactWithoutAPipeAndPassHalfClose) {
    EchoServer server(upstream_port);
    Daemon d(policy(listen_port, upstream_port));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto workers = d.workers();
    ASSERT_EQ(workers.size(), 1u);
    unique_fd c = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    small_exchanges(c.get(), 300, 1);
    ASSERT_TRUE(write_all(c.get(), "last", 4));
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    std::string rest;
    ASSERT_TRUE(read_to_eof(c.get(), rest)) << "the FIN did not come back through the relay";
    EXPECT_EQ(rest, "last");
    EXPECT_EQ(pipe_fds(workers[0]), 0) << "reads of at most 4000 bytes must not splice";
}

TEST_F(RelayPaths, BulkIsSplicedThenSmallExchangesAgainAllIntact) {
    EchoServer server(upstream_port);
    Daemon d(policy(listen_port, upstream_port));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto workers = d.workers();
    ASSERT_EQ(workers.size(), 1u);
    unique_fd c = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 30s);
    small_exchanges(c.get(), 50, 100);
    EXPECT_EQ(pipe_fds(workers[0]), 0);
    bulk_echo(c.get(), 32u << 20, 1000);
    EXPECT_GT(pipe_fds(workers[0]), 0) << "32 MiB in one go must switch to splice";
    small_exchanges(c.get(), 50, 200);  // back to copying: still byte-exact
    // Bulk once more, ended by a half-close on the spliced path.
    Transfer t = send_and_receive(c.get(), 8u << 20, 3000);
    ASSERT_TRUE(t.ok);
    EXPECT_EQ(t.received, 8u << 20);
    EXPECT_EQ(t.received_hash, t.sent_hash);
}

TEST_F(RelayPaths, CopyModePolicyNeverMakesAPipe) {
    EchoServer server(upstream_port);
    Daemon d(policy(listen_port, upstream_port, ", \"splice\": false"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    auto workers = d.workers();
    ASSERT_EQ(workers.size(), 1u);
    unique_fd c = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 30s);
    Transfer t = send_and_receive(c.get(), 16u << 20, 5);
    ASSERT_TRUE(t.ok);
    EXPECT_EQ(t.received, 16u << 20);
    EXPECT_EQ(t.received_hash, t.sent_hash);
    EXPECT_EQ(pipe_fds(workers[0]), 0);
}

// A short read is taken as "drained" only until the peer's FIN has been seen: data with the FIN
// right behind it must arrive, and so must the FIN, in both directions.
TEST_F(RelayPaths, FinRightBehindShortDataIsPassedOnBothWays) {
    constexpr int kConns = 100;
    unique_fd ls = listen_tcp(upstream_port);
    set_timeouts(ls.get(), 30s);  // accept() gives up too: the thread always ends
    std::atomic<int> served{0};
    std::thread server([&] {
        for (int i = 0; i < kConns; ++i) {
            unique_fd s(::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!s) return;
            set_timeouts(s.get(), 20s);
            std::string req;
            if (!read_to_eof(s.get(), req)) return;  // the client's data, then its FIN
            std::string reply = "got " + req;
            if (!write_all(s.get(), reply.data(), reply.size())) return;
            ++served;  // close() follows at once: reply and FIN leave together
        }
    });
    Daemon d(policy(listen_port, upstream_port));
    EXPECT_TRUE(d.wait_ready()) << d.log();
    int ok = 0;
    for (int i = 0; i < kConns; ++i) {
        unique_fd c = connect_tcp(listen_port, 20s);
        if (!c) break;
        set_timeouts(c.get(), 20s);
        std::string req = "request " + std::to_string(i);
        if (!write_all(c.get(), req.data(), req.size())) break;
        ::shutdown(c.get(), SHUT_WR);  // FIN right behind the request
        std::string reply;
        if (!read_to_eof(c.get(), reply) || reply != "got " + req) {
            ADD_FAILURE() << "connection " << i << ": got \"" << reply << "\"";
            break;
        }
        ++ok;
    }
    ::shutdown(ls.get(), SHUT_RDWR);  // wakes an accept() still waiting
    ls.reset();
    server.join();
    EXPECT_EQ(ok, kConns);
    EXPECT_EQ(served.load(), kConns);
}

}  // namespace
