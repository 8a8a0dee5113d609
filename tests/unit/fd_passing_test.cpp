// fd passing and the supervisor<->worker message codec over real SOCK_SEQPACKET socketpairs.
#include "common/fd_passing.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "common/error.hpp"
#include "common/ipc.hpp"

using namespace pfp;

namespace {

size_t open_fd_count() {
    size_t n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd");
         it != std::filesystem::directory_iterator(); ++it)
        ++n;
    return n;
}

struct Pair {
    unique_fd a, b;
    Pair() {
        int p[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0)
            throw_errno("socketpair");
        a.reset(p[0]);
        b.reset(p[1]);
    }
};

std::vector<unique_fd> make_pipes(int n) {
    std::vector<unique_fd> v;
    for (int i = 0; i < n; ++i) {
        int p[2];
        EXPECT_EQ(::pipe(p), 0);
        v.emplace_back(p[0]);
        v.emplace_back(p[1]);
    }
    return v;
}

TEST(FdPassing, SeveralFdsArriveWorkingAndCloseOnExec) {
    Pair s;
    auto pipes = make_pipes(3);  // 6 fds
    std::vector<int> raw;
    for (auto& f : pipes) raw.push_back(f.get());
    std::string data = "hello";
    send_with_fds(s.a.get(), std::as_bytes(std::span(data)), raw);
    std::vector<std::byte> buf(64);
    Received r = recv_with_fds(s.b.get(), buf);
    ASSERT_EQ(r.size, 5u);
    ASSERT_EQ(r.fds.size(), 6u);
    for (auto& f : r.fds) EXPECT_EQ(::fcntl(f.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    // The received write end feeds the original read end: same open file description.
    ASSERT_EQ(::write(r.fds[1].get(), "x", 1), 1);
    char c = 0;
    ASSERT_EQ(::read(pipes[0].get(), &c, 1), 1);
    EXPECT_EQ(c, 'x');
}

TEST(FdPassing, TruncatedDatagramIsRejectedAndLeaksNoFd) {
    Pair s;
    size_t before = open_fd_count();
    {
        auto pipes = make_pipes(2);
        std::vector<int> raw;
        for (auto& f : pipes) raw.push_back(f.get());
        std::string data(100, 'd');
        send_with_fds(s.a.get(), std::as_bytes(std::span(data)), raw);
    }
    std::vector<std::byte> small(10);
    EXPECT_THROW(recv_with_fds(s.b.get(), small), fd_passing_error);
    EXPECT_EQ(open_fd_count(), before);
}

TEST(FdPassing, TooManyFdsAreRejectedAndClosed) {
    Pair s;
    size_t before = open_fd_count();
    {
        auto pipes = make_pipes(2);
        std::vector<int> raw;
        for (auto& f : pipes) raw.push_back(f.get());
        std::string data = "x";
        send_with_fds(s.a.get(), std::as_bytes(std::span(data)), raw);
    }
    std::vector<std::byte> buf(16);
    EXPECT_THROW(recv_with_fds(s.b.get(), buf, 3), fd_passing_error);
    EXPECT_EQ(open_fd_count(), before);
}

TEST(FdPassing, SenderRefusesMoreThanTheLimit) {
    Pair s;
    std::vector<int> raw(kMaxPassedFds + 1, 0);
    std::string data = "x";
    EXPECT_THROW(send_with_fds(s.a.get(), std::as_bytes(std::span(data)), raw), fd_passing_error);
}

TEST(FdPassing, PeerCloseIsEof) {
    Pair s;
    s.a.reset();
    std::vector<std::byte> buf(16);
    Received r = recv_with_fds(s.b.get(), buf);
    EXPECT_TRUE(r.eof);
}

TEST(Ipc, RoundTripWithFds) {
    Pair s;
    auto pipes = make_pipes(1);
    ipc::send(s.a.get(), ipc::Type::handover, "{\"k\":1}", {pipes[0].get()});
    auto m = ipc::receive(s.b.get(), ipc::kMaxToWorker);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type, ipc::Type::handover);
    EXPECT_EQ(m->payload, "{\"k\":1}");
    EXPECT_EQ(m->fds.size(), 1u);
}

void send_raw(int fd, const std::string& bytes, std::vector<int> fds = {}) {
    send_with_fds(fd, std::as_bytes(std::span(bytes)), fds);
}

std::string header(uint32_t magic, uint16_t type, uint16_t nfds, uint32_t len) {
    std::string h(12, '\0');
    std::memcpy(h.data(), &magic, 4);
    std::memcpy(h.data() + 4, &type, 2);
    std::memcpy(h.data() + 6, &nfds, 2);
    std::memcpy(h.data() + 8, &len, 4);
    return h;
}

TEST(Ipc, MalformedMessagesAreProtocolErrors) {
    Pair s;
    auto expect_error = [&](const std::string& bytes, const std::string& what,
                            std::vector<int> fds = {}) {
        send_raw(s.a.get(), bytes, fds);
        try {
            ipc::receive(s.b.get(), 64);
            ADD_FAILURE() << "accepted: " << what;
        } catch (const ipc::protocol_error& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    expect_error("short", "shorter than its header");
    expect_error(header(0xdeadbeef, 2, 0, 0), "bad magic");
    expect_error(header(ipc::kMagic, 99, 0, 0), "unknown message type 99");
    expect_error(header(ipc::kMagic, 2, 0, 5) + "abc", "payload length 5 but 3");
    expect_error(header(ipc::kMagic, 2, 0, 100) + std::string(100, 'x'), "larger than");
    auto pipes = make_pipes(1);
    expect_error(header(ipc::kMagic, 2, 0, 0), "announces 0 fds, 1 received", {pipes[0].get()});
    expect_error(header(ipc::kMagic, 2, 2, 0), "announces 2 fds, 0 received");
}

TEST(Ipc, StatsCodecIsExactSize) {
    ipc::StreamStats s{1, 2, 3, 4, 5, 6, 7};
    auto enc = ipc::encode_stats(s);
    EXPECT_EQ(enc.size(), ipc::kStreamStatsSize);
    auto d = ipc::decode_stream_stats(enc);
    EXPECT_EQ(d.accepted, 1u);
    EXPECT_EQ(d.accept_errors, 6u);
    EXPECT_EQ(d.denied, 7u);
    EXPECT_THROW(ipc::decode_stream_stats(enc + "x"), ipc::protocol_error);
}

}  // namespace
