// Policy entries of the packet kinds: nfqueue-to-stream and stream-to-raw are derived from their
// listener and upstream, take the queue keys only with an nfqueue listener, run one worker, and
// refuse an fc-vsock upstream for the queue reader; stream-only keys are refused with a one-line
// error naming the key and the proxy; `filter` goes with a raw: upstream only.
#include <gtest/gtest.h>

#include <string>

#include "policy/parse.hpp"
#include "tests/unit/policy_errors.hpp"

namespace pfp::policy {
namespace {

std::string entry(const std::string& listen, const std::string& upstream,
                  const std::string& extra = "") {
    return R"({"proxies": [{"name": "p", "listen": ")" + listen + R"(", "upstream": ")" + upstream +
           "\"" + extra + "}]}";
}

TEST(PacketPolicy, KindsAndQueueOptions) {
    Policy p = parse_policy(entry("nfqueue:7", "vsock:3:1200",
                                  R"(, "on_stream_down": "accept", "fail_open": true,)"
                                  R"( "queue_maxlen": 4096, "gso": true)"),
                            "p.json");
    EXPECT_EQ(p.proxies.at(0).kind, WorkerKind::nfqueue_to_stream);
    EXPECT_TRUE(p.proxies[0].accept_when_stream_down);
    EXPECT_TRUE(p.proxies[0].fail_open);
    EXPECT_EQ(p.proxies[0].queue_maxlen, 4096u);
    EXPECT_TRUE(p.proxies[0].gso);
    EXPECT_EQ(p.proxies[0].listen.queue, 7);
    // A tcp: upstream: the same kind, the stream goes over TCP.
    p = parse_policy(entry("nfqueue:7", "tcp:127.0.0.1:1200"), "p.json");
    EXPECT_EQ(p.proxies.at(0).kind, WorkerKind::nfqueue_to_stream);
    EXPECT_EQ(p.proxies[0].upstream.scheme, Scheme::tcp);
    p = parse_policy(entry("unix:/run/raw.sock", "raw:eth0"), "p.json");
    EXPECT_EQ(p.proxies.at(0).kind, WorkerKind::stream_to_raw);
    EXPECT_FALSE(p.proxies[0].accept_when_stream_down);
    EXPECT_EQ(p.proxies[0].upstream.name, "eth0");
    EXPECT_EQ(p.proxies[0].route_mtu, 0u);
    p = parse_policy(entry("unix:/run/raw.sock", "raw:eth0", R"(, "route_mtu": 1500)"), "p.json");
    EXPECT_EQ(p.proxies.at(0).route_mtu, 1500u);
    EXPECT_FALSE(p.proxies[0].route_mtu_auto);
    p = parse_policy(entry("unix:/run/raw.sock", "raw:route", R"(, "route_mtu": "auto")"),
                     "p.json");
    EXPECT_TRUE(p.proxies.at(0).route_mtu_auto);
    EXPECT_EQ(p.proxies[0].route_mtu, 0u);
}

// route_mtu: stream-to-raw only, 1280 (IPv6's minimum; at most 57 segments per 64 KiB packet) to
// 65535, or "auto".
TEST(PacketPolicy, RouteMtuErrors) {
    for (const std::string bad : {"576", "65536", R"("path")", "1500.5", "true"})
        EXPECT_EQ(errors(entry("unix:/run/raw.sock", "raw:eth0", ", \"route_mtu\": " + bad)),
                  "p.json:1:97: /proxies/0/route_mtu: expected an integer 1280-65535 or "
                  "\"auto\", got " +
                      bad);
    EXPECT_EQ(errors(entry("nfqueue:1", "vsock:3:1", R"(, "route_mtu": 1500)")),
              "p.json:1:89: /proxies/0/route_mtu: route_mtu applies only to stream-to-raw (a raw: "
              "upstream), not nfqueue-to-stream");
}

TEST(PacketPolicy, Errors) {
    EXPECT_EQ(errors(entry("tcp:127.0.0.1:1", "tcp:127.0.0.1:2", R"(, "on_stream_down": "drop")")),
              "p.json:1:106: /proxies/0/on_stream_down: on_stream_down applies only to nfqueue "
              "listeners, not tcp");
    EXPECT_EQ(errors(entry("nfqueue:1", "vsock:3:1", R"(, "on_stream_down": "pass")")),
              "p.json:1:94: /proxies/0/on_stream_down: expected \"drop\" or \"accept\", got "
              "\"pass\"");
    EXPECT_EQ(errors(entry("nfqueue:1", "vsock:3:1", R"(, "workers": 2)")),
              "p.json:1:87: /proxies/0/workers: expected 1: nfqueue-to-stream runs one worker (one "
              "stream, one queue reader)");
    EXPECT_EQ(errors(entry("vsock:any:1", "raw:route", R"(, "workers": 2)")),
              "p.json:1:89: /proxies/0/workers: expected 1: stream-to-raw runs one worker (one "
              "stream, one queue reader)");
    EXPECT_EQ(errors(entry("nfqueue:1", "fc-vsock:/run/fc.sock:5")),
              "p.json:1:63: /proxies/0/upstream: an nfqueue listener writes to a vsock:, unix: or "
              "tcp: upstream, not fc-vsock (its reader never reads from the stream, and fc-vsock "
              "answers CONNECT)");
    EXPECT_EQ(errors(entry("nfqueue:1", "udp:127.0.0.1:1")),
              "p.json:1:63: /proxies/0/upstream: a udp upstream needs a udp or tcp listener, "
              "not nfqueue");
    EXPECT_EQ(errors(entry("nfqueue:70000", "vsock:3:1")).find("queue number must be 0-65535") !=
                  std::string::npos,
              true);
}

TEST(PacketPolicy, StreamOnlyKeysAreRefused) {
    for (const char* key : {"max_connections", "backlog", "connect_timeout", "tcp_nodelay",
                            "keepalive", "splice", "proxy_protocol", "idle_timeout"}) {
        const std::string value =
            std::string(key) == "connect_timeout" || std::string(key) == "idle_timeout" ? "\"5s\""
            : std::string(key) == "max_connections" || std::string(key) == "backlog"    ? "10"
                                                                                        : "true";
        for (const auto& [listen, upstream] :
             {std::pair{"nfqueue:1", "vsock:3:1"}, std::pair{"vsock:any:1", "raw:route"}}) {
            const std::string e =
                errors(entry(listen, upstream, ", \"" + std::string(key) + "\": " + value));
            EXPECT_NE(e.find("/proxies/0/" + std::string(key) + ": " + key + " applies only to "),
                      std::string::npos)
                << e;
            EXPECT_NE(e.find("proxy \"p\""), std::string::npos) << e;
            EXPECT_EQ(e.find('\n'), std::string::npos) << e;  // one line
        }
    }
    EXPECT_EQ(errors(entry("vsock:any:1", "raw:route", R"(, "splice": false)")),
              "p.json:1:88: /proxies/0/splice: splice applies only to stream relays, not "
              "stream-to-raw (proxy \"p\" carries packets, not connections)");
}

TEST(PacketPolicy, Filter) {
    const Policy p = parse_policy(
        entry("vsock:any:1200", "raw:route",
              R"(, "filter": {"destinations": ["10.0.0.5", "fd00::5"], "sources": ["192.0.2.2"],)"
              R"( "drop_reserved": true, "source_ports": ["80", "443", "1024-61439"]})"),
        "p.json");
    const Proxy& x = p.proxies.at(0);
    EXPECT_EQ(x.filter_destinations, (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
    EXPECT_EQ(x.filter_sources, (std::vector<std::string>{"192.0.2.2"}));
    EXPECT_TRUE(x.filter_drop_reserved);
    EXPECT_EQ(x.filter_source_ports, (std::vector<std::string>{"80", "443", "1024-61439"}));
    // A changed filter is a changed configuration (a reload restarts the worker).
    Proxy y = x;
    y.filter_drop_reserved = false;
    EXPECT_FALSE(same_configuration(x, y));

    EXPECT_EQ(errors(entry("nfqueue:1", "vsock:3:1", R"(, "filter": {"drop_reserved": true})")),
              "p.json:1:86: /proxies/0/filter: filter applies only to stream-to-raw (a raw: "
              "upstream), not nfqueue-to-stream");
    EXPECT_EQ(
        errors(entry("vsock:any:1", "raw:route", R"(, "filter": {"sources": ["10.0.0.300"]})")),
        "p.json:1:101: /proxies/0/filter/sources/0: expected an IP address such as "
        "\"203.0.113.7\", got \"10.0.0.300\"");
    EXPECT_EQ(errors(entry("vsock:any:1", "raw:route", R"(, "filter": {"source_ports": ["2-1"]})")),
              "p.json:1:106: /proxies/0/filter/source_ports/0: expected a port or port range such "
              "as \"1024-61439\", got \"2-1\"");
    EXPECT_EQ(errors(entry("vsock:any:1", "raw:route", R"(, "filter": {"destinations": []})")),
              "p.json:1:105: /proxies/0/filter/destinations: expected an array of 1 to 8 IP "
              "addresses such as [\"10.0.0.5\"], got 0 elements");
    EXPECT_NE(errors(entry("vsock:any:1", "raw:route", R"(, "filter": {"port": 1})"))
                  .find("unknown key \"port\""),
              std::string::npos);
}

// nflog:GROUP makes nflog-to-stream; it gives no verdicts, so the queue keys are refused there with
// the reason, and fc-vsock (which answers CONNECT) is refused as for nfqueue.
TEST(PacketPolicy, NflogListenerMakesNflogToStreamWithoutVerdictKeys) {
    Policy p = parse_policy(entry("nflog:7", "unix:/run/raw.sock"), "p.json");
    EXPECT_EQ(p.proxies.at(0).kind, WorkerKind::nflog_to_stream);
    EXPECT_EQ(p.proxies.at(0).listen.queue, 7);
    for (const std::string key : {"on_stream_down", "fail_open", "queue_maxlen"}) {
        const std::string value = key == "on_stream_down" ? "\"accept\""
                                  : key == "fail_open"    ? "true"
                                                          : "10";
        const std::string e = errors(entry("nflog:7", "vsock:3:1", ", \"" + key + "\": " + value));
        EXPECT_NE(e.find("/proxies/0/" + key + ": " + key +
                         " does not apply to an nflog listener: nflog gives no verdicts"),
                  std::string::npos)
            << e;
    }
    // gso: nflog hands GSO packets over whole anyway.
    EXPECT_EQ(errors(entry("nflog:7", "vsock:3:1", R"(, "gso": true)")),
              "p.json:1:81: /proxies/0/gso: gso does not apply to an nflog listener: nflog always "
              "hands GSO packets over whole");
    EXPECT_NE(errors(entry("nflog:1", "fc-vsock:/run/fc.sock:5"))
                  .find("an nflog listener writes to a vsock:, unix: or tcp: upstream, not "
                        "fc-vsock"),
              std::string::npos);
    EXPECT_NE(errors(entry("nflog:70000", "vsock:3:1")).find("group number must be 0-65535"),
              std::string::npos);
}

// The nflog group's batching keys: defaults that send each packet at once, values within the
// kernel's ranges, errors naming the key; refused for any other listener.
TEST(PacketPolicy, NflogBatchingKeys) {
    Policy p = parse_policy(entry("nflog:7", "unix:/run/raw.sock"), "p.json");
    EXPECT_EQ(p.proxies.at(0).nflog_threshold, 1u);
    EXPECT_EQ(p.proxies[0].nflog_timeout, std::chrono::milliseconds(0));
    EXPECT_EQ(p.proxies[0].nflog_buffer, 0u);
    p = parse_policy(entry("nflog:7", "unix:/run/raw.sock",
                           R"(, "nflog_threshold": 20, "nflog_timeout": "1.5s",)"
                           R"( "nflog_buffer": 65536)"),
                     "p.json");
    EXPECT_EQ(p.proxies.at(0).nflog_threshold, 20u);
    EXPECT_EQ(p.proxies[0].nflog_timeout, std::chrono::milliseconds(1500));
    EXPECT_EQ(p.proxies[0].nflog_buffer, 65536u);
    EXPECT_EQ(parse_policy(entry("nflog:7", "unix:/s", R"(, "nflog_timeout": 0.25)"), "p.json")
                  .proxies.at(0)
                  .nflog_timeout,
              std::chrono::milliseconds(250));

    const auto error_of = [](const std::string& extra) {
        return errors(entry("nflog:1", "unix:/s", ", " + extra));
    };
    EXPECT_EQ(error_of(R"("nflog_threshold": 0)"),
              "p.json:1:91: /proxies/0/nflog_threshold: expected an integer 1-65535, got 0");
    EXPECT_EQ(error_of(R"("nflog_buffer": 4096)"),
              "p.json:1:88: /proxies/0/nflog_buffer: expected an integer 8192-131072, got 4096");
    EXPECT_EQ(error_of(R"("nflog_timeout": "2m")"),
              "p.json:1:89: /proxies/0/nflog_timeout: expected a duration of at most 60s, got "
              "\"2m\"");
    EXPECT_EQ(error_of(R"("nflog_timeout": "15ms")"),
              "p.json:1:89: /proxies/0/nflog_timeout: expected a multiple of 10ms (the kernel "
              "counts hundredths of a second), got \"15ms\"");
    for (const std::string key : {"nflog_threshold", "nflog_timeout", "nflog_buffer"}) {
        const std::string e = errors(entry("nfqueue:7", "vsock:3:1", ", \"" + key + "\": 10"));
        EXPECT_NE(e.find("/proxies/0/" + key + ": " + key +
                         " applies only to nflog listeners, not nfqueue"),
                  std::string::npos)
            << e;
    }
}

}  // namespace
}  // namespace pfp::policy
