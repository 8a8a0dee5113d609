// A reload (SIGHUP) that changes a packet kind's upstream applies: the listener (or the queue) is
// kept, the new generation uses the new upstream. stream-to-raw moves from one device to another
// (namespaces S and T each own 10.88.0.2 behind their own veth, so where a packet arrives says
// which device injected it); nfqueue-to-stream moves from one Unix stream to another, and the
// queued packets follow.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <fstream>
#include <string>

#include "harness.hpp"
#include "netns.hpp"
#include "raw_packets.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr uint16_t kPort = 5000;

unique_fd udp_in(const NetNs& ns) {
    return ns.run([] {
        const pfp::SockAddr a = make_addr("0.0.0.0", kPort);
        unique_fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!fd || ::bind(fd.get(), a.get(), a.len) < 0)
            throw std::runtime_error(std::string("udp bind: ") + std::strerror(errno));
        return fd;
    });
}

// The next datagram on fd within `wait` ("" if none).
std::string receive(int fd, std::chrono::milliseconds wait) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) != 1) return "";
    char buf[2048];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
}

unique_fd connect_unix(const std::string& path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
    set_timeouts(fd.get(), 5s);
    return fd;
}

std::string raw_policy(const std::string& sock, const std::string& device) {
    return R"({"user": "nobody", "drain_timeout": "1s", "proxies": [{"name": "inject", )"
           R"("listen": "unix:)" +
           sock + R"(", "upstream": "raw:)" + device + R"("}]})";
}

TEST(PacketReload, StreamToRawUpstreamChangeMovesInjectionToTheNewDevice) {
    PFP_REQUIRE_NETNS();
    NetNs p("p"), s("s"), t("t");
    Veth to_s(p, "vp", s, "vs"), to_t(p, "vq", t, "vt");
    p.ip({"addr", "add", "10.88.0.1/24", "dev", "vp"});
    p.ip({"addr", "add", "10.88.0.1/24", "dev", "vq"});
    s.ip({"addr", "add", "10.88.0.2/24", "dev", "vs"});
    t.ip({"addr", "add", "10.88.0.2/24", "dev", "vt"});
    unique_fd in_s = udp_in(s), in_t = udp_in(t);
    TempDir dir;
    const std::string sock = dir.path() + "/raw.sock";
    auto d = start_daemon(p, raw_policy(sock, "vp"));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();
    {
        unique_fd c = connect_unix(sock);
        const Bytes pkt = udp_packet("10.88.0.1", "10.88.0.2", "via-vp");
        ASSERT_TRUE(c && write_all(c.get(), pkt.data(), pkt.size()));
        EXPECT_EQ(receive(in_s.get(), 5s), "via-vp") << d->log();
    }  // the stream ends, so the old generation drains at once

    ASSERT_TRUE(d->rewrite_policy(raw_policy(sock, "vq")));
    d->signal(SIGHUP);
    ASSERT_TRUE(d->wait_log("0 unchanged, 1 changed, 0 added, 0 removed", 10s)) << d->log();
    ASSERT_TRUE(d->wait_log("all 1 proxies ready (policy generation 2)", 10s)) << d->log();
    EXPECT_EQ(d->log().find("in use"), std::string::npos) << d->log();

    // Once the old generation has gone (it had no stream open), the next stream is the new one's.
    ASSERT_TRUE(d->wait_log("(generation 1) exited", 10s)) << d->log();
    unique_fd c = connect_unix(sock);
    const Bytes pkt = udp_packet("10.88.0.1", "10.88.0.2", "via-vq");
    ASSERT_TRUE(c && write_all(c.get(), pkt.data(), pkt.size()));
    EXPECT_EQ(receive(in_t.get(), 5s), "via-vq") << d->log();
    EXPECT_EQ(receive(in_s.get(), 200ms), "") << "the old device injected it";
}

std::string queue_policy(const std::string& upstream, const std::string& keys = "") {
    return R"({"user": "nobody", "drain_timeout": "1s", "proxies": [{"name": "reader", )"
           R"("listen": "nfqueue:7", "upstream": "unix:)" +
           upstream + "\"" + keys + "}]}";
}

// Reads the stream until `marker` is in what came (the packet's UDP payload); false on timeout.
bool stream_carries(int fd, const std::string& marker) {
    std::string got;
    char buf[4096];
    while (got.find(marker) == std::string::npos) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) return false;
        got.append(buf, static_cast<size_t>(n));
    }
    return true;
}

TEST(PacketReload, NfqueueToStreamUpstreamChangeKeepsTheQueueAndUsesTheNewStream) {
    PFP_REQUIRE_NETNS();
    UdpQueuedPair net(7);
    TempDir dir;
    const std::string one = dir.path() + "/one.sock", two = dir.path() + "/two.sock";
    unique_fd l1 = listen_unix(one), l2 = listen_unix(two);
    set_timeouts(l1.get(), 10s);
    set_timeouts(l2.get(), 10s);
    auto d = start_daemon(net.a, queue_policy(one));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();
    unique_fd s1(::accept4(l1.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(s1) << d->log();
    set_timeouts(s1.get(), 5s);
    ASSERT_TRUE(d->wait_log("connected", 10s)) << d->log();
    net.send_to_b("first-stream");
    EXPECT_TRUE(stream_carries(s1.get(), "first-stream")) << d->log();

    ASSERT_TRUE(d->rewrite_policy(queue_policy(two)));
    d->signal(SIGHUP);
    ASSERT_TRUE(d->wait_log("0 unchanged, 1 changed, 0 added, 0 removed", 10s)) << d->log();
    ASSERT_TRUE(d->wait_log("all 1 proxies ready (policy generation 2)", 10s)) << d->log();
    unique_fd s2(::accept4(l2.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(s2) << d->log();
    set_timeouts(s2.get(), 5s);
    // Once the old generation has gone, every queued packet goes to the new stream.
    ASSERT_TRUE(d->wait_log("(generation 1) exited", 10s)) << d->log();
    net.send_to_b("second-stream");
    EXPECT_TRUE(stream_carries(s2.get(), "second-stream")) << d->log();
}

// The queue's kernel settings are made when the supervisor binds it, with a capability it drops
// after start-up: a reload that changes one (here gso) while keeping the queue is refused with the
// key named, and the running reader goes on serving the queue.
TEST(PacketReload, AReloadCannotChangeAKeptQueuesKernelSettings) {
    PFP_REQUIRE_NETNS();
    UdpQueuedPair net(7);
    TempDir dir;
    const std::string one = dir.path() + "/one.sock";
    unique_fd l1 = listen_unix(one);
    set_timeouts(l1.get(), 10s);
    auto d = start_daemon(net.a, queue_policy(one));
    ASSERT_TRUE(d->wait_ready(10s)) << d->log();
    unique_fd s1(::accept4(l1.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(s1) << d->log();
    set_timeouts(s1.get(), 5s);
    const pid_t reader = worker_of(*d, "reader");
    ASSERT_GT(reader, 0);

    ASSERT_TRUE(d->rewrite_policy(queue_policy(one, R"(, "gso": true)")));
    d->signal(SIGHUP);
    ASSERT_TRUE(
        d->wait_log("proxy \"reader\": gso cannot change (from false to true) while it "
                    "keeps its listener on nfqueue:7",
                    10s))
        << d->log();
    EXPECT_NE(d->log().find("refused"), std::string::npos) << d->log();
    EXPECT_EQ(worker_of(*d, "reader"), reader) << "the reader was replaced";
    net.send_to_b("still-read");
    EXPECT_TRUE(stream_carries(s1.get(), "still-read")) << d->log();
}

}  // namespace
