// The thread relay (`"relay": "threads"`) of the real pf-proxyd: what is particular to it. The
// relay behaviours it shares with the event engine (bulk with checksums, half-close, 1000
// connections, kill -9, drain, reload, idle timeout) run under both engines in
// tcp_forward_test.cpp and reload_test.cpp.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

std::string policy(uint16_t listen, uint16_t upstream, const std::string& extra) {
    return "{\"user\": \"nobody\", \"proxies\": [" + tcp_proxy_json("t", listen, upstream, extra) +
           "]}";
}

std::vector<pid_t> tasks_of(pid_t pid) {
    std::vector<pid_t> out;
    DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
    if (!d) return out;
    while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') out.push_back(std::stoi(e->d_name));
    ::closedir(d);
    return out;
}

// A field of /proc/PID/task/TID/status: the thread's own credentials and seccomp mode.
std::string task_field(pid_t pid, pid_t tid, const std::string& field) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
    for (std::string line; std::getline(f, line);) {
        if (line.rfind(field + ":", 0) != 0) continue;
        std::string v = line.substr(field.size() + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
    }
    return "";
}

// The worker's threads blocked in recv(): the ones serving a connection (a parked thread waits in
// futex, the loop thread in epoll_wait).
std::set<pid_t> receiving(pid_t pid) {
    std::set<pid_t> out;
    for (pid_t tid : tasks_of(pid)) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) +
                        "/syscall");
        long nr = -1;
        if (f >> nr && nr == SYS_recvfrom) out.insert(tid);
    }
    return out;
}

// The client's n-th 16-byte note in HandOffWhileTheUpstreamStreams...
std::string note_text(size_t n) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "note %010zu\n", n);
    return std::string(buf, 16);
}

bool exchange(int fd, const std::string& msg) {
    std::string back(msg.size(), '\0');
    return write_all(fd, msg.data(), msg.size()) && read_exact(fd, back.data(), back.size()) &&
           back == msg;
}

class ThreadRelay : public ::testing::Test {
  protected:
    uint16_t listen_port = free_port();
    uint16_t echo_port = free_port();
    EchoServer echo{echo_port};

    // `d` ready with its one worker (into `worker`), and a client connected through it.
    void start(const Daemon& d, pid_t& worker, unique_fd& client) {
        ASSERT_TRUE(d.wait_ready()) << d.log();
        const auto workers = d.wait_workers(1);
        ASSERT_EQ(workers.size(), 1u);
        worker = workers[0];
        client = connect_tcp(listen_port, 20s);
        ASSERT_TRUE(client);
        set_timeouts(client.get(), 20s);
    }
};

// Two conversations get thread pairs (the bound), the third stays on the event engine; every
// thread of the worker, the relay threads included, is filtered, without capabilities and
// NoNewPrivs.
TEST_F(ThreadRelay, EveryThreadIsLockedDownAndConnectionsBeyondTheBoundUseTheEventEngine) {
    Daemon d(policy(listen_port, echo_port, R"(, "relay": "threads", "relay_threads": 2)"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto workers = d.wait_workers(1);
    ASSERT_EQ(workers.size(), 1u);
    const pid_t w = workers[0];
    std::vector<unique_fd> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect_tcp(listen_port, 20s));
        ASSERT_TRUE(clients.back()) << i;
        set_timeouts(clients.back().get(), 20s);
        ASSERT_TRUE(exchange(clients.back().get(), "hello " + std::to_string(i) + "\n")) << i;
        ASSERT_TRUE(exchange(clients.back().get(), "again " + std::to_string(i) + "\n")) << i;
    }
    ASSERT_TRUE(wait_until([&] { return tasks_of(w).size() == 5; }))
        << "the loop thread and two pairs; got " << tasks_of(w).size() << " threads";
    EXPECT_TRUE(d.wait_log("relay_threads bound (2 connections) reached")) << d.log();
    for (pid_t tid : tasks_of(w)) {
        SCOPED_TRACE("thread " + std::to_string(tid));
        EXPECT_EQ(task_field(w, tid, "Seccomp"), "2");
        EXPECT_EQ(task_field(w, tid, "NoNewPrivs"), "1");
        EXPECT_EQ(task_field(w, tid, "CapEff"), "0000000000000000");
        EXPECT_EQ(task_field(w, tid, "CapPrm"), "0000000000000000");
        EXPECT_EQ(task_field(w, tid, "Uid").substr(0, 5), "65534");
    }
    // Every connection still relays, and when they end their threads are gone.
    for (size_t i = 0; i < clients.size(); ++i)
        EXPECT_TRUE(exchange(clients[i].get(), std::string(100000, char('a' + i)))) << i;
    clients.clear();
    EXPECT_TRUE(wait_until([&] { return tasks_of(w).size() == 1; })) << tasks_of(w).size();
    // A freed slot serves the next connection with threads again.
    unique_fd again = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(again);
    set_timeouts(again.get(), 20s);
    EXPECT_TRUE(exchange(again.get(), "again\n"));
    EXPECT_TRUE(exchange(again.get(), "and again\n"));
    EXPECT_TRUE(wait_until([&] { return tasks_of(w).size() == 3; })) << tasks_of(w).size();
}

// Half-close started by the upstream: its FIN reaches the client while the client's direction
// keeps flowing, and the connection ends when both have.
TEST_F(ThreadRelay, UpstreamHalfCloseReachesTheClientAndTheOtherDirectionFlows) {
    const uint16_t up_port = free_port();
    unique_fd ls = listen_tcp(up_port);
    std::string upstream_got;
    std::atomic<bool> threaded{false};
    std::thread server([&] {
        unique_fd c(::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) return;
        set_timeouts(c.get(), 20s);
        // The banner, an answer from the client, then the upstream's FIN, once threads serve.
        char hi[2];
        if (!write_all(c.get(), "banner", 6) || !read_exact(c.get(), hi, 2)) return;
        if (!wait_until([&] { return threaded.load(); })) return;
        ::shutdown(c.get(), SHUT_WR);
        read_to_eof(c.get(), upstream_got);
    });
    Daemon d(policy(listen_port, up_port, R"(, "relay": "threads")"));
    pid_t w = 0;
    unique_fd c;
    ASSERT_NO_FATAL_FAILURE(start(d, w, c));
    std::string banner(6, '\0');
    ASSERT_TRUE(read_exact(c.get(), banner.data(), banner.size()));
    EXPECT_EQ(banner, "banner");
    // The client speaks after the server's banner: the connection moves to a thread pair.
    ASSERT_TRUE(write_all(c.get(), "hi", 2));
    ASSERT_TRUE(wait_until([&] { return receiving(w).size() == 2; }))
        << "no thread pair serves the connection";
    threaded = true;
    std::string rest;
    ASSERT_TRUE(read_to_eof(c.get(), rest)) << "the upstream's FIN reaches the client";
    EXPECT_EQ(rest, "");
    const std::string late(1 << 20, 'L');
    ASSERT_TRUE(write_all(c.get(), late.data(), late.size())) << "the client may still send";
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    server.join();
    EXPECT_EQ(upstream_got, late);
}

// Sequential conversations are served by the same parked threads: the worker never has more
// threads than its loop thread and the bound's pairs, the threads serving the first connection
// serve later ones, and once idle the parked threads expire. A pair created per connection would
// show 1 + 2 * N different threads.
TEST_F(ThreadRelay, SequentialConnectionsReuseParkedThreads) {
    Daemon d(policy(listen_port, echo_port, R"(, "relay": "threads", "relay_threads": 2)"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto workers = d.wait_workers(1);
    ASSERT_EQ(workers.size(), 1u);
    const pid_t w = workers[0];
    constexpr int kConnections = 40;
    std::vector<std::set<pid_t>> serving;
    std::set<pid_t> every_tid;
    size_t most = 0;
    for (int i = 0; i < kConnections; ++i) {
        SCOPED_TRACE("connection " + std::to_string(i));
        unique_fd c = connect_tcp(listen_port, 20s);
        ASSERT_TRUE(c);
        set_timeouts(c.get(), 20s);
        ASSERT_TRUE(exchange(c.get(), "ping " + std::to_string(i) + "\n"));
        ASSERT_TRUE(exchange(c.get(), "pong " + std::to_string(i) + "\n"));
        std::set<pid_t> now;
        ASSERT_TRUE(wait_until([&] { return (now = receiving(w)).size() == 2; }))
            << "a thread pair blocks in recv; " << now.size() << " do";
        serving.push_back(now);
        const auto tasks = tasks_of(w);
        most = std::max(most, tasks.size());
        every_tid.insert(tasks.begin(), tasks.end());
        // The client ends it: its FIN reaches the echo server, whose FIN comes back.
        ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
        std::string rest;
        ASSERT_TRUE(read_to_eof(c.get(), rest));
        EXPECT_EQ(rest, "");
    }
    EXPECT_LE(most, 5u) << "the loop thread and at most two pairs' threads";
    EXPECT_LE(every_tid.size(), 5u) << "threads were created for later connections";
    size_t reused = 0;
    for (size_t i = 1; i < serving.size(); ++i)
        if (std::ranges::any_of(serving[i], [&](pid_t t) { return serving[0].contains(t); }))
            ++reused;
    EXPECT_GT(reused, 0u) << "no thread of the first connection served a later one";
    // Each ended pair was reaped (only a pair's second end wakes the loop): one at a time never
    // reaches the bound of 2.
    EXPECT_EQ(d.log().find("relay_threads bound"), std::string::npos) << d.log();
    // Idle, the parked threads expire and the worker is back to its loop thread.
    EXPECT_TRUE(wait_until([&] { return tasks_of(w).size() == 1; })) << tasks_of(w).size();
}

// A connection moves to threads only when its client speaks again after an answer: one exchange
// and a close, or a request with the client's FIN right behind it, stay on the event engine, and
// the worker never starts a thread for them. The first conversation does.
TEST_F(ThreadRelay, OnlyConversationsGetThreads) {
    Daemon d(policy(listen_port, echo_port, R"(, "relay": "threads")"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const auto workers = d.wait_workers(1);
    ASSERT_EQ(workers.size(), 1u);
    const pid_t w = workers[0];
    for (int i = 0; i < 20; ++i) {
        SCOPED_TRACE("connection " + std::to_string(i));
        unique_fd c = connect_tcp(listen_port, 20s);
        ASSERT_TRUE(c);
        set_timeouts(c.get(), 20s);
        const std::string request = "request " + std::to_string(i);
        if (i % 2 == 0)
            ASSERT_TRUE(exchange(c.get(), request));
        else
            ASSERT_TRUE(write_all(c.get(), request.data(), request.size()));
        ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
        std::string rest;
        ASSERT_TRUE(read_to_eof(c.get(), rest));
        EXPECT_EQ(rest, i % 2 == 0 ? "" : request);
        EXPECT_EQ(thread_count(w), 1u)
            << "a thread was started for a connection that did not converse";
    }
    unique_fd c = connect_tcp(listen_port, 20s);
    ASSERT_TRUE(c);
    set_timeouts(c.get(), 20s);
    ASSERT_TRUE(exchange(c.get(), "first\n"));
    EXPECT_EQ(thread_count(w), 1u) << "one exchange is no conversation yet";
    ASSERT_TRUE(exchange(c.get(), "second\n"));
    EXPECT_TRUE(wait_until([&] { return receiving(w).size() == 2; }))
        << "the conversation got no thread pair";
    // What the threads move after the hand-off arrives intact, both ways.
    EXPECT_TRUE(exchange(c.get(), std::string(1 << 20, 'z')));
}

// The hand-off after the event engine has spliced: a first exchange of 4 MiB each way fills the
// copy buffer, so both directions move through pipes, which go back to the pool at the hand-off;
// the second exchange moves the connection to threads, and its 4 MiB arrive intact both ways. The
// upstream answers each message once it has all of it, so the first exchange is no conversation.
TEST_F(ThreadRelay, HandOffAfterSplicedBulkKeepsEveryByte) {
    constexpr size_t kMessage = 4 << 20;
    const uint16_t up_port = free_port();
    unique_fd ls = listen_tcp(up_port);
    std::thread server([&] {
        unique_fd c(::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) return;
        set_timeouts(c.get(), 20s);
        std::vector<char> msg(kMessage);
        for (int i = 0; i < 2; ++i)
            if (!read_exact(c.get(), msg.data(), msg.size()) ||
                !write_all(c.get(), msg.data(), msg.size()))
                return;
        std::string rest;
        read_to_eof(c.get(), rest);  // open until the client ends: its pair blocks in recv()
    });
    Daemon d(policy(listen_port, up_port, R"(, "relay": "threads")"));
    pid_t w = 0;
    unique_fd c;
    ASSERT_NO_FATAL_FAILURE(start(d, w, c));
    std::vector<char> back(kMessage);
    for (uint64_t seed : {1, 2}) {
        SCOPED_TRACE("message " + std::to_string(seed));
        std::vector<char> msg(kMessage);
        fill_pattern(msg, seed);
        ASSERT_TRUE(write_all(c.get(), msg.data(), msg.size()));
        ASSERT_TRUE(read_exact(c.get(), back.data(), back.size()));
        EXPECT_TRUE(back == msg) << "corrupted";
        if (seed == 1) {
            EXPECT_EQ(thread_count(w), 1u) << "no conversation yet";
            const auto fds = fd_targets(w);
            EXPECT_TRUE(std::ranges::any_of(fds, [](const std::string& f) {
                return f.find("pipe:") != std::string::npos;
            })) << "the bulk was not spliced (the worker holds no pipe)";
        }
    }
    EXPECT_TRUE(wait_until([&] { return receiving(w).size() == 2; }))
        << "the second message did not move the connection to a thread pair";
    c.reset();
    server.join();
}

// The hand-off while the upstream streams: the server sends 32 MiB without pausing while the
// client sends a numbered 16-byte note after every 512 KiB it receives. Each note may find the
// event engine with nothing pending and move the connection to threads in the middle of the
// stream, with the upstream's next bytes still queued in its socket; whenever it happens, every
// byte of the stream and every note arrives once and in order. A last exchange after the stream
// is a conversation turn in any case, so the connection ends on a thread pair.
TEST_F(ThreadRelay, HandOffWhileTheUpstreamStreamsKeepsBothDirectionsInOrder) {
    constexpr size_t kChunk = 64 << 10, kStream = 32 << 20, kNoteEvery = 512 << 10;
    constexpr size_t kNotes = kStream / kNoteEvery;
    const uint16_t up_port = free_port();
    unique_fd ls = listen_tcp(up_port);
    std::atomic<size_t> notes_in_order{0};
    std::thread server([&] {
        unique_fd c(::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) return;
        set_timeouts(c.get(), 30s);
        std::thread writer([&] {
            std::vector<char> chunk(kChunk);
            for (size_t i = 0; i < kStream / kChunk; ++i) {
                fill_pattern(chunk, i);
                if (!write_all(c.get(), chunk.data(), chunk.size())) return;
            }
        });
        char note[16];
        for (size_t i = 0; i < kNotes && read_exact(c.get(), note, sizeof note); ++i)
            if (std::string(note, sizeof note) == note_text(i)) ++notes_in_order;
        writer.join();
        // The last exchange: an answer to "end?", then the client's FIN.
        char end[4];
        if (read_exact(c.get(), end, 4) && write_all(c.get(), "bye!", 4)) {
            std::string rest;
            read_to_eof(c.get(), rest);
        }
    });
    Daemon d(policy(listen_port, up_port, R"(, "relay": "threads")"));
    pid_t w = 0;
    unique_fd c;
    ASSERT_NO_FATAL_FAILURE(start(d, w, c));
    // A small receive buffer fills while the client checks a chunk, so the relay often holds
    // bytes toward it when a note arrives: a hand-off then would strand them.
    const int rcvbuf = 16 << 10;
    ASSERT_EQ(::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    std::vector<char> got(kChunk), want(kChunk);
    size_t notes = 0;
    for (size_t i = 0; i < kStream / kChunk; ++i) {
        ASSERT_TRUE(read_exact(c.get(), got.data(), got.size())) << "chunk " << i;
        fill_pattern(want, i);
        ASSERT_TRUE(got == want) << "chunk " << i << " corrupted or out of order";
        if ((i + 1) * kChunk % kNoteEvery == 0) {
            const std::string note = note_text(notes++);
            ASSERT_TRUE(write_all(c.get(), note.data(), note.size()));
        }
    }
    // Reported, not asserted: whether a note found a moment with nothing pending mid-stream.
    const bool during = receiving(w).size() == 2;
    RecordProperty("handed_off_during_stream", during ? "yes" : "no");
    std::printf("[          ] handed off during the stream: %s\n", during ? "yes" : "no");
    ASSERT_TRUE(write_all(c.get(), "end?", 4));
    char bye[4];
    ASSERT_TRUE(read_exact(c.get(), bye, 4));
    EXPECT_EQ(std::string(bye, 4), "bye!");
    EXPECT_TRUE(wait_until([&] { return receiving(w).size() == 2; }))
        << "the connection did not end on a thread pair";
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    std::string rest;
    EXPECT_TRUE(read_to_eof(c.get(), rest));
    server.join();
    EXPECT_EQ(notes_in_order.load(), kNotes) << "a note was lost, changed or reordered";
}

}  // namespace
