// The stream-to-raw kind's packet filters with real raw sockets: pf-proxyd in namespace P runs two
// proxies injecting through the veth device to namespace S, one with a `filter` and one without.
// Servers in S bound to the wildcard address see every packet that arrives. Through the filtered
// proxy only the packets every rule admits arrive; the others (one class per drop reason, IPv4 and
// IPv6) never do, and status (JSON and table) and the metrics endpoint count each by its reason.
// The same packets through the unfiltered proxy do arrive, so their absence above is the filter's
// doing. The deployed outgoing tool's command line applies the same rules with its values.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "harness.hpp"
#include "netns.hpp"
#include "proxy_status.hpp"
#include "raw_packets.hpp"

using namespace pfp::test;
using pfp::unique_fd;
using json = nlohmann::json;

namespace {

constexpr uint16_t kPort = 5000;

class PacketFilterInjection : public ::testing::Test {
  protected:
    void SetUp() override {
        PFP_REQUIRE_NETNS();
        p_ = std::make_unique<NetNs>("p");
        s_ = std::make_unique<NetNs>("s");
        veth_ = std::make_unique<Veth>(*p_, "vp", *s_, "vs");
        // Global-unicast test addresses (outside every reserved range), plus private ones that the
        // reserved rule must stop.
        for (const char* a : {"198.51.99.1/24", "10.88.0.1/24"})
            p_->ip({"addr", "add", a, "dev", "vp"});
        for (const char* a : {"2a00:88::1/64", "fd00:88::1/64"})
            p_->ip({"addr", "add", a, "dev", "vp", "nodad"});
        for (const char* a : {"198.51.99.2/24", "198.51.99.3/24", "10.88.0.2/24"})
            s_->ip({"addr", "add", a, "dev", "vs"});
        for (const char* a : {"2a00:88::2/64", "2a00:88::3/64", "fd00:88::2/64"})
            s_->ip({"addr", "add", a, "dev", "vs", "nodad"});
        // Packets with a foreign source are still delivered in S (no reverse-path check).
        s_->run([] {
            for (const char* dev : {"all", "vs"}) {
                const std::string path =
                    std::string("/proc/sys/net/ipv4/conf/") + dev + "/rp_filter";
                std::FILE* f = std::fopen(path.c_str(), "w");
                if (!f || std::fputs("0", f) < 0 || std::fclose(f) != 0)
                    throw std::runtime_error("cannot write " + path);
            }
            return 0;
        });
        udp4_ = udp_any(AF_INET);
        udp6_ = udp_any(AF_INET6);
        filtered_ = dir_.path() + "/filtered.sock";
        open_ = dir_.path() + "/open.sock";
        metrics_ = dir_.path() + "/metrics.sock";
        daemon_ = start_daemon(
            *p_, R"({"user": "nobody", "drain_timeout": "1s", "metrics": "unix:)" + metrics_ +
                     R"(", "proxies": [)"
                     R"({"name": "filtered", "listen": "unix:)" +
                     filtered_ +
                     R"(", "upstream": "raw:vp", "filter": {)"
                     R"("destinations": ["198.51.99.2", "2a00:88::2", "10.88.0.2", "fd00:88::2"],)"
                     R"( "sources": ["198.51.99.1", "2a00:88::1"], "drop_reserved": true,)"
                     R"( "source_ports": ["443", "4000-4001"]}},)"
                     R"({"name": "open", "listen": "unix:)" +
                     open_ + R"(", "upstream": "raw:vp"}]})");
        ASSERT_TRUE(daemon_->wait_ready(10s)) << daemon_->log();
    }

    unique_fd udp_any(int family) const {
        return s_->run([family] {
            const pfp::SockAddr a = make_addr(family == AF_INET ? "0.0.0.0" : "::", kPort);
            unique_fd fd(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            const int one = 1;
            if (family == AF_INET6)
                ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            if (!fd || ::bind(fd.get(), a.get(), a.len) < 0)
                throw std::runtime_error(std::string("udp bind: ") + std::strerror(errno));
            set_timeouts(fd.get(), 5s);
            return fd;
        });
    }

    static unique_fd connect_stream(const std::string& path) {
        unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
        set_timeouts(fd.get(), 5s);
        return fd;
    }

    // Payloads that arrive on `fd` up to and including `marker` (the rest of the stream's
    // packets were injected before it, in order). Empty on timeout.
    static std::set<std::string> receive_until(int fd, const std::string& marker) {
        std::set<std::string> got;
        char buf[2048];
        for (;;) {
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n < 0) return {};
            got.emplace(buf, static_cast<size_t>(n));
            if (got.count(marker)) return got;
        }
    }

    // GET /metrics over the metrics endpoint's Unix socket: the body.
    std::string metrics() const {
        unique_fd c = connect_stream(metrics_);
        if (!c) return "";
        const std::string req = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
        std::string out;
        if (!write_all(c.get(), req.data(), req.size()) || !read_to_eof(c.get(), out)) return "";
        const size_t body = out.find("\r\n\r\n");
        return body == std::string::npos ? "" : out.substr(body + 4);
    }

    std::unique_ptr<NetNs> p_, s_;
    std::unique_ptr<Veth> veth_;
    unique_fd udp4_, udp6_;
    TempDir dir_;
    std::string filtered_, open_, metrics_;
    std::unique_ptr<Daemon> daemon_;
};

struct Sample {
    const char* src;
    const char* dst;
    uint16_t sport;
    const char* payload;
};

// Each packet the filter must drop, by reason (the first rule it fails).
const Sample kDropped[] = {
    {"198.51.99.1", "198.51.99.3", 4000, "v4-destination"},
    {"2a00:88::1", "2a00:88::3", 4000, "v6-destination"},
    {"198.51.99.9", "198.51.99.2", 4000, "v4-source"},
    {"2a00:88::9", "2a00:88::2", 4000, "v6-source"},
    {"198.51.99.1", "10.88.0.2", 4000, "v4-reserved"},
    {"2a00:88::1", "fd00:88::2", 4000, "v6-reserved"},
    {"198.51.99.1", "198.51.99.2", 22, "v4-port"},
    {"2a00:88::1", "2a00:88::2", 4002, "v6-port"},
};

TEST_F(PacketFilterInjection, DroppedPacketsNeverArriveAndAreCountedByReason) {
    unique_fd c = connect_stream(filtered_);
    ASSERT_TRUE(c) << daemon_->log();
    Bytes stream;
    const auto add = [&stream](const Bytes& p) { stream.insert(stream.end(), p.begin(), p.end()); };
    add(udp_packet("198.51.99.1", "198.51.99.2", "v4-pass", 4000));
    add(udp_packet("2a00:88::1", "2a00:88::2", "v6-pass", 443));
    for (const Sample& s : kDropped) add(udp_packet(s.src, s.dst, s.payload, s.sport));
    add(udp_packet("198.51.99.1", "198.51.99.2", "v4-last", 4001));
    add(udp_packet("2a00:88::1", "2a00:88::2", "v6-last", 4001));
    ASSERT_TRUE(write_all(c.get(), stream.data(), stream.size()));

    // At the far end: the admitted packets, and nothing else, before the last of each family.
    EXPECT_EQ(receive_until(udp4_.get(), "v4-last"), (std::set<std::string>{"v4-pass", "v4-last"}))
        << daemon_->log();
    EXPECT_EQ(receive_until(udp6_.get(), "v6-last"), (std::set<std::string>{"v6-pass", "v6-last"}))
        << daemon_->log();
    EXPECT_TRUE(daemon_->wait_log("was dropped by the filter (destination)", 5s)) << daemon_->log();

    // Counted by reason (workers report about once a second).
    json k;
    ASSERT_TRUE(wait_until([&] {
        const json now = proxy_counters(*daemon_, "filtered");
        if (!now.contains("packet") || now["packet"]["packets_in"] != 12) return false;
        k = now;
        return true;
    })) << proxy_counters(*daemon_, "filtered").dump()
        << daemon_->log();
    const json& p = k["packet"];
    EXPECT_EQ(p["packets_out"], 4) << p;
    EXPECT_EQ(p["dropped_destination"], 2) << p;
    EXPECT_EQ(p["dropped_source"], 2) << p;
    EXPECT_EQ(p["dropped_reserved"], 2) << p;
    EXPECT_EQ(p["dropped_port"], 2) << p;
    EXPECT_EQ(p["dropped_malformed"], 0) << p;
    EXPECT_EQ(p["send_errors"], 0) << p;
    EXPECT_EQ(p["streams"], 1) << p;
    EXPECT_EQ(p["streams_active"], 1) << p;
    EXPECT_EQ(k["denied"], 8) << k;
    EXPECT_EQ(k["bytes_up"], stream.size()) << k;  // bytes in: the whole stream

    // The table says the same in words.
    const CommandResult table =
        run_command({bin_dir() + "/pf-proxyctl", "--control", daemon_->control_path(), "status"});
    EXPECT_NE(table.output.find("filtered: packets 12 in, 4 out; verdicts 0 drop, 0 accept; "
                                "dropped: 0 stream down, 2 destination, 2 source, 2 reserved, 2 "
                                "port, 0 malformed, 0 send errors"),
              std::string::npos)
        << table.output;

    // And the metrics endpoint, by reason.
    const std::string body = metrics();
    const std::string labels = R"({proxy="filtered",kind="stream-to-raw",)";
    for (const std::string& line :
         {"pfproxy_packets_total" + labels + R"(direction="in"} 12)",
          "pfproxy_packets_total" + labels + R"(direction="out"} 4)",
          "pfproxy_packets_dropped_total" + labels + R"(reason="destination"} 2)",
          "pfproxy_packets_dropped_total" + labels + R"(reason="source"} 2)",
          "pfproxy_packets_dropped_total" + labels + R"(reason="reserved"} 2)",
          "pfproxy_packets_dropped_total" + labels + R"(reason="port"} 2)"})
        EXPECT_NE(body.find(line + "\n"), std::string::npos) << line << "\n" << body;

    // The same packets without a filter do reach S: the ones above were stopped by the filter.
    unique_fd o = connect_stream(open_);
    ASSERT_TRUE(o);
    Bytes again;
    for (const Sample& s : kDropped) {
        const Bytes b = udp_packet(s.src, s.dst, s.payload, s.sport);
        again.insert(again.end(), b.begin(), b.end());
    }
    ASSERT_TRUE(write_all(o.get(), again.data(), again.size()));
    std::set<std::string> v4 = receive_until(udp4_.get(), "v4-port");
    std::set<std::string> v6 = receive_until(udp6_.get(), "v6-port");
    EXPECT_EQ(v4, (std::set<std::string>{"v4-destination", "v4-source", "v4-reserved", "v4-port"}))
        << daemon_->log();
    EXPECT_EQ(v6, (std::set<std::string>{"v6-destination", "v6-source", "v6-reserved", "v6-port"}))
        << daemon_->log();
}

// The deployed outgoing tool's command line sets the deployed tool's filter: source = the first
// eth*/ens* interface's IPv4 address (here a veth named eth5 in P), no reserved destinations,
// source ports {80, 443} and 1024-61439. Routed injection (raw:route) from P to S.
TEST_F(PacketFilterInjection, SeedOutgoingCommandDropsWhatTheDeployedToolDrops) {
    Veth eth(*p_, "eth5", *s_, "x5");
    p_->ip({"addr", "add", "198.51.98.1/24", "dev", "eth5"});
    const std::string path = dir_.path() + "/outgoing.sock";
    auto cmd = p_->run([&] {
        return std::make_unique<RunningCommand>(std::vector<std::string>{
            bin_dir() + "/vsock-to-ip-raw-outgoing", "--vsock-addr", "unix:" + path});
    });
    ASSERT_TRUE(cmd->wait_err("ready", 10s)) << cmd->err();
    EXPECT_TRUE(cmd->wait_out("Egress address: 198.51.98.1 (eth5)\n", 5s)) << cmd->out();
    unique_fd c = connect_stream(path);
    ASSERT_TRUE(c) << cmd->err();
    Bytes stream;
    const auto add = [&stream](const Bytes& p) { stream.insert(stream.end(), p.begin(), p.end()); };
    add(udp_packet("198.51.98.1", "198.51.99.2", "egress-443", 443));
    add(udp_packet("198.51.99.1", "198.51.99.2", "other-source", 4000));
    add(udp_packet("198.51.98.1", "10.88.0.2", "reserved", 4000));
    add(udp_packet("198.51.98.1", "198.51.99.2", "port-1023", 1023));
    add(udp_packet("198.51.98.1", "198.51.99.2", "port-61440", 61440));
    add(udp_packet("198.51.98.1", "198.51.99.2", "egress-61439", 61439));
    ASSERT_TRUE(write_all(c.get(), stream.data(), stream.size()));
    EXPECT_EQ(receive_until(udp4_.get(), "egress-61439"),
              (std::set<std::string>{"egress-443", "egress-61439"}))
        << cmd->err();
    EXPECT_TRUE(cmd->wait_err("dropped by the filter (source)", 5s)) << cmd->err();
    c.reset();  // else the stop waits the drain timeout for this stream
    EXPECT_TRUE(cmd->wait_err("4 dropped by the filter", 5s)) << cmd->err();
    EXPECT_EQ(cmd->terminate(), 0) << cmd->err();
}

}  // namespace
