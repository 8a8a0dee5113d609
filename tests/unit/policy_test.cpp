// The policy parser: the model it builds, and every diagnostic exactly as `pf-proxyd --check`
// prints it (FILE:LINE:COL: /json/pointer: message (hint)). Policies are multi-line raw strings so
// the line:column in each expectation can be checked by eye; columns count bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/allow_list.hpp"
#include "common/endpoint.hpp"
#include "common/worker_kind.hpp"
#include "policy/diagnostics.hpp"
#include "policy/model.hpp"
#include "policy/parse.hpp"
#include "policy/source_map.hpp"

namespace pfp::policy {
namespace {

using std::chrono::milliseconds;

// All diagnostics of `text` (named p.json), or "<valid>".
std::string errors(std::string_view text) {
    try {
        (void)parse_policy(text, "p.json");
    } catch (const policy_error& e) {
        return e.what();
    }
    return "<valid>";
}

// The endpoint parser's own message, which the policy repeats verbatim.
std::string endpoint_message(std::string_view text) {
    try {
        (void)parse_endpoint(text);
    } catch (const endpoint_error& e) {
        return e.what();
    }
    return "<valid>";
}

// One proxy; name on line 4 (value at column 15), listen on line 5 (column 17), upstream on
// line 6 (column 19); each extra member gets its own line from line 7, key at column 7.
std::string proxy_policy(std::string_view name, std::string_view listen, std::string_view upstream,
                         const std::vector<std::string>& extra = {}) {
    std::string s = "{\n  \"proxies\": [\n    {\n";
    s += "      \"name\": " + std::string(name) + ",\n";
    s += "      \"listen\": " + std::string(listen) + ",\n";
    s += "      \"upstream\": " + std::string(upstream);
    for (const auto& member : extra) s += ",\n      " + member;
    s += "\n    }\n  ]\n}\n";
    return s;
}

// The usual proxy with extra members from line 7.
std::string with(const std::vector<std::string>& extra) {
    return proxy_policy(R"("web")", R"("tcp:127.0.0.1:8080")", R"("tcp:127.0.0.1:9000")", extra);
}

constexpr std::string_view kDurationExpected =
    R"(expected a duration (a number of seconds or a string such as "250ms", "10s", "5m", )"
    R"("1h"))";
// A valid proxy entry on one line.
constexpr std::string_view kProxy =
    R"({"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2"})";
constexpr std::string_view kProxyKeyList =
    "name, listen, listen_family, ipv6_only, upstream, base_address, send_original_destination, "
    "header, "
    "proxy_protocol, "
    "allow, "
    "allowed_cids, allowed_sources, socket_mode, socket_owner, socket_group, workers, "
    "max_connections, backlog, connect_timeout, header_timeout, idle_timeout, tcp_nodelay, "
    "keepalive, splice, busy_poll, relay, relay_threads, "
    "log_connections, statistics, restart, max_flows, batch, on_stream_down, fail_open, "
    "queue_maxlen, gso, nflog_threshold, nflog_timeout, nflog_buffer, "
    "filter, route_mtu, tunnel, psk_file, psk_env, mtu, socket_buffer, kcp";

// ---- Diagnostic formatting ----------------------------------------------------------------------

TEST(PolicyDiagnostic, FormatsPositionPointerMessage) {
    EXPECT_EQ((Diagnostic{"p.json", 3, 7, "/proxies/0/workers", "bad", ""}.str()),
              "p.json:3:7: /proxies/0/workers: bad");
}

TEST(PolicyDiagnostic, AppendsHintInParentheses) {
    EXPECT_EQ((Diagnostic{"p.json", 3, 7, "/x", "unknown key \"x\"", "did you mean \"y\"?"}.str()),
              "p.json:3:7: /x: unknown key \"x\" (did you mean \"y\"?)");
}

TEST(PolicyDiagnostic, RootPointerPrintsAsRoot) {
    EXPECT_EQ((Diagnostic{"p.json", 1, 1, "", "expected an object", ""}.str()),
              "p.json:1:1: (root): expected an object");
}

TEST(PolicyDiagnostic, NoPositionPrintsFileAndMessage) {
    EXPECT_EQ((Diagnostic{"/etc/p.json", 0, 0, "", "cannot open", ""}.str()),
              "/etc/p.json: cannot open");
    // A pointer whose position is unknown is still worth printing.
    EXPECT_EQ((Diagnostic{"p.json", 0, 0, "/user", "bad", ""}.str()), "p.json: /user: bad");
}

TEST(PolicyDiagnostic, ControlCharactersCannotForgeLines) {
    EXPECT_EQ((Diagnostic{"p\n.json", 1, 2, "/a\nb", "x\x1b[31my", ""}.str()),
              "p\\x0a.json:1:2: /a\\x0ab: x\\x1b[31my");
}

TEST(PolicyDiagnostic, PolicyErrorJoinsLines) {
    const policy_error e({Diagnostic{"p.json", 1, 1, "", "one", ""},
                          Diagnostic{"p.json", 2, 3, "/a", "two", "did you mean \"b\"?"}});
    EXPECT_STREQ(e.what(), "p.json:1:1: (root): one\np.json:2:3: /a: two (did you mean \"b\"?)");
    ASSERT_EQ(e.diagnostics().size(), 2u);
    EXPECT_EQ(e.diagnostics()[1].pointer, "/a");
}

// ---- Source map ---------------------------------------------------------------------------------

TEST(PolicySourceMap, ValueAndKeyPositions) {
    const SourceMap map(R"json({
  "a": [10, {"b": true}],
  "c/d": {"e~f": null}
})json");
    EXPECT_TRUE(map.complete());
    EXPECT_EQ(map.value(""), (SourcePos{1, 1}));
    EXPECT_EQ(map.value("/a"), (SourcePos{2, 8}));
    EXPECT_EQ(map.key("/a"), (SourcePos{2, 3}));
    EXPECT_EQ(map.value("/a/0"), (SourcePos{2, 9}));
    EXPECT_EQ(map.value("/a/1"), (SourcePos{2, 13}));
    EXPECT_EQ(map.value("/a/1/b"), (SourcePos{2, 19}));
    EXPECT_EQ(map.key("/a/1/b"), (SourcePos{2, 14}));
    EXPECT_EQ(map.value("/c~1d/e~0f"), (SourcePos{3, 18}));  // RFC 6901 escapes
    EXPECT_FALSE(map.key("/a/0").known());                   // array elements have no key
    EXPECT_FALSE(map.key("").known());
}

TEST(PolicySourceMap, MissingOrMalformedPointersAreUnknown) {
    const SourceMap map(R"({"a": [1, 2], "b": 3})");
    for (const char* p : {"a", "/x", "/a/2", "/a/01", "/a/-", "/a/", "/b/0", "/~2", "/a/1/z",
                          "/a/99999999999999999999999"}) {
        EXPECT_FALSE(map.value(p).known()) << p;
    }
}

TEST(PolicySourceMap, ColumnsCountBytes) {
    // "é" is two bytes: the value sits at byte column 8 although it is the 7th character.
    EXPECT_EQ(SourceMap("{\"\xc3\xa9\": 1}").value("/\xc3\xa9"), (SourcePos{1, 8}));
    // A byte order mark counts too (nlohmann skips it, so the text is still valid).
    const SourceMap bom("\xef\xbb\xbf{\"a\": 1}");
    EXPECT_TRUE(bom.complete());
    EXPECT_EQ(bom.value("/a"), (SourcePos{1, 10}));
}

TEST(PolicySourceMap, EscapedKeysAreDecoded) {
    const SourceMap map(R"({"\u0061\n\"": 1, "\ud83d\ude00": 2})");
    EXPECT_EQ(map.value("/a\n\""), (SourcePos{1, 16}));
    EXPECT_EQ(map.value("/\xf0\x9f\x98\x80"), (SourcePos{1, 35}));
}

TEST(PolicySourceMap, DuplicateKeysPointAtTheSecond) {
    const SourceMap map(R"json({
  "a": 1,
  "b": {"x": 1, "\u0078": 2},
  "a": 3
})json");
    ASSERT_EQ(map.duplicates().size(), 2u);
    EXPECT_EQ(map.duplicates()[0].pointer, "/b/x");
    EXPECT_EQ(map.duplicates()[0].name, "x");
    EXPECT_EQ(map.duplicates()[0].first, (SourcePos{3, 9}));
    EXPECT_EQ(map.duplicates()[0].second, (SourcePos{3, 17}));
    EXPECT_EQ(map.duplicates()[1].pointer, "/a");
    EXPECT_EQ(map.duplicates()[1].second, (SourcePos{4, 3}));
    // Lookups find the last value, the one nlohmann keeps.
    EXPECT_EQ(map.value("/a"), (SourcePos{4, 8}));
}

TEST(PolicySourceMap, DeepNestingNeedsNoStack) {
    const std::string deep = std::string(200'000, '[') + std::string(200'000, ']');
    const SourceMap map(deep);
    EXPECT_TRUE(map.complete());
    EXPECT_EQ(map.value("/0/0/0"), (SourcePos{1, 4}));
}

TEST(PolicySourceMap, SurvivesAnyInput) {
    for (const std::string& text :
         {std::string(""), std::string("{"), std::string("[1,"), std::string("\"\\u12"),
          std::string("{\"a\":}"), std::string("\"\\ud800\\u0041\""), std::string("-"),
          std::string("1 2"), std::string("tru"), std::string("{\"a\" 1}"),
          std::string("\0\xff\"", 3), std::string("[\"\\"), std::string("{\"a\":1,}")}) {
        const SourceMap map(text);
        EXPECT_FALSE(map.complete()) << text;
        (void)map.value("/a");
        (void)map.at_offset(text.size() + 10);
    }
}

TEST(PolicySourceMap, OffsetsPastTheEndClampToTheEnd) {
    const SourceMap map("ab\ncd\n");
    EXPECT_EQ(map.at_offset(0), (SourcePos{1, 1}));
    EXPECT_EQ(map.at_offset(2), (SourcePos{1, 3}));  // the newline itself ends line 1
    EXPECT_EQ(map.at_offset(4), (SourcePos{2, 2}));
    EXPECT_EQ(map.at_offset(6), (SourcePos{3, 1}));
    EXPECT_EQ(map.at_offset(1000), (SourcePos{3, 1}));
}

// ---- Valid policies -----------------------------------------------------------------------------

TEST(PolicyParse, MinimalPolicyGetsDefaults) {
    const Policy p = parse_policy(
        R"({"user": "nobody", "proxies": [{"name": "web", "listen": "tcp:127.0.0.1:8080", "upstream": "tcp:127.0.0.1:9000"}]})",
        "minimal.json");
    EXPECT_EQ(p.path, "minimal.json");
    EXPECT_EQ(p.user, "nobody");
    EXPECT_FALSE(p.group.has_value());
    EXPECT_EQ(p.drain_timeout, milliseconds(30'000));
    ASSERT_EQ(p.proxies.size(), 1u);
    const Proxy& web = p.proxies[0];
    EXPECT_EQ(web.name, "web");
    EXPECT_EQ(web.kind, WorkerKind::tcp_forward);
    EXPECT_EQ(to_string(web.listen), "tcp:127.0.0.1:8080");
    EXPECT_EQ(to_string(web.upstream), "tcp:127.0.0.1:9000");
    EXPECT_EQ(web.workers, 1);
    EXPECT_EQ(web.max_connections, 10'000);
    EXPECT_EQ(web.backlog, 4096);
    EXPECT_EQ(web.connect_timeout, milliseconds(10'000));
    EXPECT_EQ(web.idle_timeout, milliseconds(3'600'000));  // an hour unless written
    EXPECT_TRUE(web.tcp_nodelay);
    EXPECT_EQ(web.keepalive, Keepalive{});
    EXPECT_TRUE(web.keepalive.enabled);
    EXPECT_TRUE(web.splice);
    EXPECT_EQ(web.restart, RestartPolicy{});
    EXPECT_EQ(web.pointer, "/proxies/0");
    // The relay options.
    EXPECT_EQ(web.upstream_mode, UpstreamMode::fixed);
    EXPECT_FALSE(web.upstream.original_port);
    EXPECT_FALSE(web.send_original_destination);
    EXPECT_EQ(web.header, HeaderFormat::standard);
    EXPECT_FALSE(web.proxy_protocol);
    EXPECT_TRUE(web.allow.empty());
    EXPECT_TRUE(web.allowed_cids.empty());
    EXPECT_TRUE(web.allowed_sources.empty());
    EXPECT_EQ(web.unix_socket, UnixSocketFile{});
    EXPECT_EQ(web.unix_socket.mode, 0660u);
    EXPECT_FALSE(web.unix_socket.owner.has_value());
    EXPECT_FALSE(web.unix_socket.group.has_value());
    EXPECT_FALSE(web.log_connections);
    EXPECT_FALSE(web.statistics);
}

TEST(PolicyParse, EveryField) {
    const Policy p = parse_policy(R"json({
  "user": "pfproxy",
  "group": "pfproxy-grp",
  "drain_timeout": "45s",
  "proxies": [
    {
      "name": "web-1.a_b",
      "listen": "tcp:[::1]:8443",
      "upstream": "tcp:10.0.0.2:443",
      "workers": 64,
      "max_connections": 1000000,
      "backlog": 65535,
      "connect_timeout": 2.5,
      "idle_timeout": "5m",
      "tcp_nodelay": false,
      "keepalive": {"idle": "30s", "interval": 5, "count": 127},
      "splice": false,
      "restart": {"backoff_initial": "250ms", "backoff_max": "1m", "healthy_after": "2h",
                  "max_failures": 1000}
    },
    {"name": "b", "listen": "tcp:127.0.0.1:81", "upstream": "tcp:127.0.0.1:82", "keepalive": false},
    {"name": "c", "listen": "tcp:127.0.0.1:82", "upstream": "tcp:127.0.0.1:83",
     "keepalive": {"count": 1}, "workers": 1, "max_connections": 1, "backlog": 1,
     "idle_timeout": 0, "restart": {"backoff_initial": "1s", "backoff_max": "1s"}}
  ]
})json",
                                  "every.json");
    EXPECT_EQ(p.user, "pfproxy");
    EXPECT_EQ(p.group, "pfproxy-grp");
    EXPECT_EQ(p.drain_timeout, milliseconds(45'000));
    ASSERT_EQ(p.proxies.size(), 3u);

    const Proxy& a = p.proxies[0];
    EXPECT_EQ(a.name, "web-1.a_b");
    EXPECT_EQ(a.kind, WorkerKind::tcp_forward);
    EXPECT_EQ(to_string(a.listen), "tcp:[::1]:8443");
    EXPECT_EQ(to_string(a.upstream), "tcp:10.0.0.2:443");
    EXPECT_EQ(a.workers, 64);
    EXPECT_EQ(a.max_connections, 1'000'000);
    EXPECT_EQ(a.backlog, 65535);
    EXPECT_EQ(a.connect_timeout, milliseconds(2500));
    EXPECT_EQ(a.idle_timeout, milliseconds(300'000));
    EXPECT_FALSE(a.tcp_nodelay);
    EXPECT_EQ(a.keepalive, (Keepalive{true, milliseconds(30'000), milliseconds(5000), 127}));
    EXPECT_FALSE(a.splice);
    EXPECT_EQ(a.restart, (RestartPolicy{milliseconds(250), milliseconds(60'000),
                                        milliseconds(7'200'000), 1000}));
    EXPECT_EQ(a.pointer, "/proxies/0");

    const Proxy& b = p.proxies[1];
    EXPECT_FALSE(b.keepalive.enabled);
    EXPECT_EQ(b.keepalive.idle, Keepalive{}.idle);
    EXPECT_EQ(b.pointer, "/proxies/1");

    const Proxy& c = p.proxies[2];
    EXPECT_EQ(c.keepalive, (Keepalive{true, Keepalive{}.idle, Keepalive{}.interval, 1}));
    EXPECT_EQ(c.workers, 1);
    EXPECT_EQ(c.max_connections, 1);
    EXPECT_EQ(c.backlog, 1);
    EXPECT_EQ(c.idle_timeout, milliseconds(0));
    EXPECT_EQ(c.restart.backoff_initial, milliseconds(1000));
    EXPECT_EQ(c.restart.backoff_max, milliseconds(1000));
    EXPECT_EQ(c.pointer, "/proxies/2");
}

TEST(PolicyParse, UserAndGroupAreOptional) {
    const Policy p = parse_policy(with({}), "p.json");
    EXPECT_FALSE(p.user.has_value());
    EXPECT_FALSE(p.group.has_value());
}

// ---- Durations ----------------------------------------------------------------------------------

milliseconds idle_timeout_of(const std::string& value) {
    return parse_policy(with({"\"idle_timeout\": " + value}), "p.json").proxies.at(0).idle_timeout;
}

TEST(PolicyDuration, AcceptedForms) {
    const std::pair<const char*, int64_t> cases[] = {
        {"0", 0},
        {"10", 10'000},
        {"1.5", 1500},
        {"0.001", 1},
        {"0.25", 250},
        {"604800", 604'800'000},  // 7 days, the maximum
        {"1e1", 10'000},
        {R"("250ms")", 250},
        {R"("10s")", 10'000},
        {R"("5m")", 300'000},
        {R"("1h")", 3'600'000},
        {R"("1.5s")", 1500},
        {R"("0.5m")", 30'000},
        {R"("0.25h")", 900'000},
        {R"("0.00005m")", 3},
        {R"("2.000000000000s")", 2000},
        {R"("007s")", 7000},
        {R"("0ms")", 0},
        {R"("168h")", 604'800'000},
        {R"("10080m")", 604'800'000},
    };
    for (const auto& [text, ms] : cases) {
        EXPECT_EQ(idle_timeout_of(text), milliseconds(ms)) << text;
    }
}

TEST(PolicyDuration, RejectedForms) {
    const std::string forms = std::string(kDurationExpected) + ", got ";
    const std::pair<const char*, std::string> cases[] = {
        {R"("10")", forms + R"("10")"},
        {R"("10 s")", forms + R"("10 s")"},
        {R"(" 10s")", forms + R"(" 10s")"},
        {R"("10S")", forms + R"("10S")"},
        {R"("1d")", forms + R"("1d")"},
        {R"("-5s")", forms + R"("-5s")"},
        {R"(".5s")", forms + R"(".5s")"},
        {R"("5.s")", forms + R"("5.s")"},
        {R"("1e3ms")", forms + R"("1e3ms")"},
        {R"("1h30m")", forms + R"("1h30m")"},
        {R"("")", forms + R"("")"},
        {"true", forms.substr(0, forms.size() - 6) + ", got boolean"},
        {"null", forms.substr(0, forms.size() - 6) + ", got null"},
        {"[1]", forms.substr(0, forms.size() - 6) + ", got array"},
        {"-1", "expected a duration >= 0, got -1"},
        {"-0.5", "expected a duration >= 0, got -0.5"},
        {"604800.001", "expected a duration of at most 7 days, got 604800.001"},
        {"1e300", "expected a duration of at most 7 days, got 1e+300"},
        {R"("169h")", R"(expected a duration of at most 7 days, got "169h")"},
        {R"("604800001ms")", R"(expected a duration of at most 7 days, got "604800001ms")"},
        {R"("99999999999999999999h")",
         R"(expected a duration of at most 7 days, got "99999999999999999999h")"},
        {R"("1.5ms")", R"(expected a whole number of milliseconds, got "1.5ms")"},
        {R"("0.0001s")", R"(expected a whole number of milliseconds, got "0.0001s")"},
        {R"("1.0000000001h")", R"(expected a whole number of milliseconds, got "1.0000000001h")"},
        {"0.0005", "expected a whole number of milliseconds, got 0.0005"},
    };
    for (const auto& [text, message] : cases) {
        EXPECT_EQ(errors(with({std::string("\"idle_timeout\": ") + text})),
                  "p.json:7:23: /proxies/0/idle_timeout: " + message)
            << text;
    }
}

// header_timeout: a destination-header relay's; anywhere else it is an error naming why.
TEST(PolicyHeaderTimeout, OnlyADestinationHeaderRelayTakesIt) {
    EXPECT_EQ(
        errors(with({R"("header_timeout": "2s")"})),
        "p.json:7:25: /proxies/0/header_timeout: header_timeout applies only to a "
        "\"destination-header\" upstream (the one relay that reads a header from its client)");
    const std::string rx = R"({"proxies": [{"name": "rx", "listen": "vsock:any:1200",
        "upstream": "destination-header", "allow": ["10.0.0.0/8:443"], "header_timeout": "750ms"}]})";
    EXPECT_EQ(parse_policy(rx, "p.json").proxies.at(0).header_timeout, milliseconds(750));
    const std::string fallback = R"({"proxies": [{"name": "rx", "listen": "vsock:any:1200",
        "upstream": "destination-header", "allow": ["10.0.0.0/8:443"]}]})";
    EXPECT_EQ(parse_policy(fallback, "p.json").proxies.at(0).header_timeout, milliseconds(5000));
    EXPECT_EQ(errors(R"({"proxies": [{"name": "rx", "listen": "vsock:any:1200",
        "upstream": "destination-header", "allow": ["10.0.0.0/8:443"], "header_timeout": 0}]})"),
              "p.json:2:90: /proxies/0/header_timeout: expected a duration > 0, got 0");
}

TEST(PolicyDuration, ZeroIsRejectedWhereAPositiveDurationIsNeeded) {
    EXPECT_EQ(errors(with({R"("connect_timeout": 0)"})),
              "p.json:7:26: /proxies/0/connect_timeout: expected a duration > 0, got 0");
    EXPECT_EQ(errors(with({R"("connect_timeout": "0ms")"})),
              "p.json:7:26: /proxies/0/connect_timeout: expected a duration > 0, got \"0ms\"");
    EXPECT_EQ(errors(with({R"("keepalive": {"idle": 0})"})),
              "p.json:7:29: /proxies/0/keepalive/idle: expected a duration > 0, got 0");
    EXPECT_EQ(errors(with({R"("keepalive": {"interval": "0s"})"})),
              "p.json:7:33: /proxies/0/keepalive/interval: expected a duration > 0, got \"0s\"");
    EXPECT_EQ(errors(with({R"("restart": {"healthy_after": "0s"})"})),
              "p.json:7:36: /proxies/0/restart/healthy_after: expected a duration > 0, got \"0s\"");
    EXPECT_EQ(errors(with({R"("restart": {"backoff_initial": 0})"})),
              "p.json:7:38: /proxies/0/restart/backoff_initial: expected a duration > 0, got 0");
}

TEST(PolicyDuration, DrainTimeout) {
    const std::string zero = R"({"drain_timeout": 0, "proxies": [)" + std::string(kProxy) + "]}";
    EXPECT_EQ(parse_policy(zero, "p.json").drain_timeout, milliseconds(0));
    EXPECT_EQ(
        errors(R"json({
  "drain_timeout": "forever",
  "proxies": [{"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2"}]
})json"),
        "p.json:2:20: /drain_timeout: " + std::string(kDurationExpected) + R"(, got "forever")");
}

TEST(PolicyDuration, BackoffMaxMustNotBeBelowBackoffInitial) {
    EXPECT_EQ(errors(with({R"("restart": {"backoff_initial": "2s", "backoff_max": "1s"})"})),
              "p.json:7:59: /proxies/0/restart/backoff_max: expected a duration >= "
              "backoff_initial (2s), got \"1s\"");
    // Only backoff_initial written: compared with the default backoff_max, and said so.
    EXPECT_EQ(errors(with({R"("restart": {"backoff_initial": "1m"})"})),
              "p.json:7:38: /proxies/0/restart/backoff_initial: expected a duration <= "
              "backoff_max (30s, the default), got \"1m\"");
    // backoff_max written but invalid: that is the one error, not a comparison with a default.
    EXPECT_EQ(errors(with({R"("restart": {"backoff_initial": "1m", "backoff_max": "x"})"})),
              "p.json:7:59: /proxies/0/restart/backoff_max: " + std::string(kDurationExpected) +
                  ", got \"x\"");
    // Only backoff_max written, below the default backoff_initial of 100ms.
    EXPECT_EQ(errors(with({R"("restart": {"backoff_max": 0.05})"})),
              "p.json:7:34: /proxies/0/restart/backoff_max: expected a duration >= "
              "backoff_initial (100ms), got 0.05");
}

// ---- Wrong types and ranges ---------------------------------------------------------------------

TEST(PolicyErrors, WrongTypeNamesExpectationAndType) {
    EXPECT_EQ(errors(R"json({
  "proxies": [
    {
      "name": "web",
      "listen": "tcp:127.0.0.1:8080",
      "upstream": "tcp:127.0.0.1:9000",
      "workers": "4"
    }
  ]
})json"),
              "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got string");
}

TEST(PolicyErrors, IntegerRanges) {
    const std::pair<const char*, const char*> cases[] = {
        {R"("workers": 0)", "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got 0"},
        {R"("workers": 65)", "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got 65"},
        {R"("workers": -1)", "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got -1"},
        {R"("workers": 2.5)", "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got 2.5"},
        {R"("workers": 2.0)", "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got 2.0"},
        {R"("workers": 18446744073709551615)",
         "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got 18446744073709551615"},
        {R"("workers": true)",
         "p.json:7:18: /proxies/0/workers: expected an integer 1-64, got boolean"},
        {R"("max_connections": 1000001)",
         "p.json:7:26: /proxies/0/max_connections: expected an integer 1-1000000, got 1000001"},
        {R"("max_connections": 0)",
         "p.json:7:26: /proxies/0/max_connections: expected an integer 1-1000000, got 0"},
        {R"("backlog": 65536)",
         "p.json:7:18: /proxies/0/backlog: expected an integer 1-65535, got 65536"},
        {R"("backlog": null)",
         "p.json:7:18: /proxies/0/backlog: expected an integer 1-65535, got null"},
        {R"("keepalive": {"count": 128})",
         "p.json:7:30: /proxies/0/keepalive/count: expected an integer 1-127, got 128"},
        {R"("keepalive": {"count": 0})",
         "p.json:7:30: /proxies/0/keepalive/count: expected an integer 1-127, got 0"},
        {R"("restart": {"max_failures": 0})",
         "p.json:7:35: /proxies/0/restart/max_failures: expected an integer 1-1000, got 0"},
        {R"("restart": {"max_failures": 1001})",
         "p.json:7:35: /proxies/0/restart/max_failures: expected an integer 1-1000, got 1001"},
    };
    for (const auto& [member, message] : cases)
        EXPECT_EQ(errors(with({member})), message) << member;
}

TEST(PolicyErrors, BooleansAndObjects) {
    const std::pair<const char*, const char*> cases[] = {
        {R"("tcp_nodelay": "yes")",
         "p.json:7:22: /proxies/0/tcp_nodelay: expected a boolean (true or false), got \"yes\""},
        {R"("splice": 1)",
         "p.json:7:17: /proxies/0/splice: expected a boolean (true or false), got 1"},
        {R"("keepalive": "on")",
         "p.json:7:20: /proxies/0/keepalive: expected a boolean or an object {idle, interval, "
         "count}, got string"},
        {R"("restart": [])",
         "p.json:7:18: /proxies/0/restart: expected an object {backoff_initial, backoff_max, "
         "healthy_after, max_failures}, got array"},
    };
    for (const auto& [member, message] : cases)
        EXPECT_EQ(errors(with({member})), message) << member;
}

TEST(PolicyErrors, Names) {
    const std::string rule =
        "p.json:4:15: /proxies/0/name: expected a name of 1-64 characters [A-Za-z0-9_.-] "
        "starting with a letter or digit, got ";
    const auto named = [](const std::string& name) {
        return errors(proxy_policy(name, R"("tcp:127.0.0.1:8080")", R"("tcp:127.0.0.1:9000")"));
    };
    EXPECT_EQ(named(R"("-web")"), rule + R"("-web")");
    EXPECT_EQ(named(R"(".web")"), rule + R"(".web")");
    EXPECT_EQ(named(R"("")"), rule + R"("")");
    EXPECT_EQ(named(R"("we b")"), rule + R"("we b")");
    EXPECT_EQ(named(R"("web/1")"), rule + R"("web/1")");
    EXPECT_EQ(named(R"("w\u00e9b")"), rule +
                                          "\"w\xc3\xa9"
                                          "b\"");
    EXPECT_EQ(named("42"), rule + "number");
    EXPECT_EQ(named("\"" + std::string(65, 'x') + "\""),
              rule + "\"" + std::string(64, 'x') + "...\"");
    EXPECT_EQ(errors(proxy_policy("\"" + std::string(64, 'x') + "\"", R"("tcp:127.0.0.1:8080")",
                                  R"("tcp:127.0.0.1:9000")")),
              "<valid>");
    EXPECT_EQ(named(R"("0_a.B-c")"), "<valid>");
}

TEST(PolicyErrors, UserAndGroup) {
    EXPECT_EQ(errors(R"json({
  "user": "",
  "group": 7,
  "proxies": [{"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2"}]
})json"),
              "p.json:2:11: /user: expected a non-empty string, got \"\"\n"
              "p.json:3:12: /group: expected a non-empty string, got number");
    // An embedded NUL would make getpwnam() look up "nobody" while the file says more.
    EXPECT_EQ(errors(R"json({
  "user": "nobody\u0000root",
  "proxies": [{"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2"}]
})json"),
              "p.json:2:11: /user: expected a string without control characters, got "
              "\"nobody\\u0000root\"");
}

// ---- Structure ----------------------------------------------------------------------------------

TEST(PolicyErrors, RootMustBeAnObjectWithProxies) {
    EXPECT_EQ(errors("[]"), "p.json:1:1: (root): expected an object, got array");
    EXPECT_EQ(errors("\n  \"text\""), "p.json:2:3: (root): expected an object, got string");
    EXPECT_EQ(errors(R"json({
  "user": "nobody"
})json"),
              "p.json:1:1: (root): missing required key \"proxies\"");
    EXPECT_EQ(errors(R"json({
  "proxies": []
})json"),
              "p.json:2:14: /proxies: expected at least one proxy, got an empty array");
    EXPECT_EQ(errors(R"json({
  "proxies": {"name": "web"}
})json"),
              "p.json:2:14: /proxies: expected an array of proxies, got object");
    EXPECT_EQ(errors(R"json({
  "proxies": [
    "web"
  ]
})json"),
              "p.json:3:5: /proxies/0: expected a proxy object, got string");
}

TEST(PolicyErrors, MissingRequiredKeysPointAtTheObject) {
    EXPECT_EQ(errors(R"json({
  "proxies": [
    {"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2"},
    {
      "listen": "tcp:127.0.0.1:3"
    }
  ]
})json"),
              "p.json:4:5: /proxies/1: missing required key \"name\"\n"
              "p.json:4:5: /proxies/1: missing required key \"upstream\"");
}

// ---- Unknown keys -------------------------------------------------------------------------------

TEST(PolicyErrors, UnknownKeySuggestsTheKnownOne) {
    EXPECT_EQ(errors(R"json({
  "user": "nobody",
  "proxies": [
    {
      "name": "web",
      "listen": "tcp:127.0.0.1:8080",
      "upstrem": "tcp:127.0.0.1:9000"
    }
  ]
})json"),
              "p.json:4:5: /proxies/0: missing required key \"upstream\"\n"
              "p.json:7:7: /proxies/0/upstrem: unknown key \"upstrem\" (did you mean "
              "\"upstream\"?)");
}

TEST(PolicyErrors, UnknownKeyHints) {
    const std::string list = ", expected one of: " + std::string(kProxyKeyList);
    const std::pair<const char*, std::string> cases[] = {
        // Case-insensitive match.
        {R"("Splice": true)",
         R"(p.json:7:7: /proxies/0/Splice: unknown key "Splice" (did you mean "splice"?))"},
        // Two substitutions.
        {R"("workerz2": 1)",
         R"(p.json:7:7: /proxies/0/workerz2: unknown key "workerz2" (did you mean "workers"?))"},
        // A transposition is one edit.
        {R"("blacklog": 1)",
         R"(p.json:7:7: /proxies/0/blacklog: unknown key "blacklog" (did you mean "backlog"?))"},
        {R"("tpc_nodelay": true)",
         R"(p.json:7:7: /proxies/0/tpc_nodelay: unknown key "tpc_nodelay" )"
         R"((did you mean "tcp_nodelay"?))"},
        // Nested objects have their own key sets.
        {R"("keepalive": {"intervall": 5})",
         R"(p.json:7:21: /proxies/0/keepalive/intervall: unknown key "intervall" )"
         R"((did you mean "interval"?))"},
        {R"("restart": {"max_failure": 5})",
         R"(p.json:7:19: /proxies/0/restart/max_failure: unknown key "max_failure" )"
         R"((did you mean "max_failures"?))"},
        // Nothing close: list what is allowed instead.
        {R"("timeout": 5)", R"(p.json:7:7: /proxies/0/timeout: unknown key "timeout")" + list},
        {R"("keepalive": {"probes": 5})",
         "p.json:7:21: /proxies/0/keepalive/probes: unknown key \"probes\", expected one of: "
         "idle, interval, count"},
        // Keys are escaped in pointers (RFC 6901) and quoted in messages.
        {R"("a/b~c\n": 1)", R"(p.json:7:7: /proxies/0/a~1b~0c\x0a: unknown key "a/b~c\n")" + list},
    };
    for (const auto& [member, message] : cases)
        EXPECT_EQ(errors(with({member})), message) << member;
}

TEST(PolicyErrors, UnknownTopLevelKeys) {
    EXPECT_EQ(errors(R"json({
  "uesr": "nobody",
  "Group": "nogroup",
  "drain": 5,
  "proxies": [{"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2"}]
})json"),
              "p.json:2:3: /uesr: unknown key \"uesr\" (did you mean \"user\"?)\n"
              "p.json:3:3: /Group: unknown key \"Group\" (did you mean \"group\"?)\n"
              "p.json:4:3: /drain: unknown key \"drain\", expected one of: user, group, "
              "drain_timeout, metrics, control_users, control_groups, resolver, resolve_min, "
              "resolve_max, proxies");
}

TEST(PolicyErrors, LongKeysAreShortenedInDiagnostics) {
    const std::string key(300, 'k');
    EXPECT_EQ(
        errors("{\n  \"" + key + "\": 1,\n  \"proxies\": [" + std::string(kProxy) + "]\n}"),
        "p.json:2:3: /" + std::string(255, 'k') + "...: unknown key \"" + std::string(64, 'k') +
            "...\", expected one of: user, group, drain_timeout, " +
            "metrics, control_users, control_groups, resolver, resolve_min, resolve_max, proxies");
}

// ---- Endpoints ----------------------------------------------------------------------------------

TEST(PolicyErrors, EndpointParseErrorsUseTheEndpointMessage) {
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("tcp:1.2.3.4")", R"("tcp:127.0.0.1:0")")),
              "p.json:5:17: /proxies/0/listen: " + endpoint_message("tcp:1.2.3.4") + "\n" +
                  "p.json:6:19: /proxies/0/upstream: " + endpoint_message("tcp:127.0.0.1:0"));
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("127.0.0.1:80")", R"("tcp:127.0.0.1:1")")),
              "p.json:5:17: /proxies/0/listen: " + endpoint_message("127.0.0.1:80"));
    EXPECT_EQ(errors(proxy_policy(R"("web")", "8080", R"("tcp:127.0.0.1:1")")),
              "p.json:5:17: /proxies/0/listen: expected an endpoint string such as "
              "\"tcp:127.0.0.1:8080\", got number");
}

TEST(PolicyErrors, UnsupportedSchemes) {
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("udp:127.0.0.1:53")", R"("tcp:127.0.0.1:1")")),
              "p.json:6:19: /proxies/0/upstream: a udp listener with a tcp upstream carries each "
              "stream over datagrams: write \"tunnel\": \"kcp\" (kind kcp-server)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("systemd:web")", R"("vsock:3:80")")),
              "p.json:5:17: /proxies/0/listen: a \"systemd:NAME\" listener needs listen_family "
              "(\"tcp\", \"udp\", \"unix\" or \"vsock\"): the kind of proxy depends on it");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("tcp:127.0.0.1:1")", R"("udp:127.0.0.1:53")")),
              "p.json:6:19: /proxies/0/upstream: a tcp listener with a udp upstream carries each "
              "stream over datagrams: write \"tunnel\": \"kcp\" (kind kcp-client)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("nfqueue:3")", R"("systemd:api")")),
              "p.json:6:19: /proxies/0/upstream: a systemd endpoint is not supported yet "
              "(supported: vsock, unix, fc-vsock)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("vsock:any:80")", R"("nfqueue:3")")),
              "p.json:6:19: /proxies/0/upstream: an nfqueue endpoint is not supported yet "
              "(supported: tcp, vsock, unix, fc-vsock, raw)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("tcp:127.0.0.1:1")", R"("raw:route")")),
              "p.json:6:19: /proxies/0/upstream: a raw upstream needs a vsock, unix or fc-vsock "
              "listener, not tcp");
}

// ---- Worker kinds -------------------------------------------------------------------------------

// The one proxy of a policy that holds only `entry`.
Proxy only(std::string_view entry) {
    return parse_policy("{\"proxies\": [" + std::string(entry) + "]}", "p.json").proxies.at(0);
}

// A proxy "web" with this listener and upstream (unquoted) and extra members from line 7.
// An allow list for the entries whose client chooses the destination (deny by default).
constexpr const char* kAllowSome = R"("allow": ["0.0.0.0/0:443"])";

std::string relay(std::string_view listen, std::string_view upstream,
                  const std::vector<std::string>& extra = {}) {
    return proxy_policy(R"("web")", "\"" + std::string(listen) + "\"",
                        "\"" + std::string(upstream) + "\"", extra);
}

// The allow-list parser's own messages, which the policy repeats verbatim.
std::string allow_message(std::string_view text) {
    try {
        (void)parse_allow_entry(text);
    } catch (const allow_list_error& e) {
        return e.what();
    }
    return "<valid>";
}
std::string cidr_message(std::string_view text) {
    try {
        (void)parse_cidr(text);
    } catch (const allow_list_error& e) {
        return e.what();
    }
    return "<valid>";
}

// The four entries of the issue, each exactly as written there.
TEST(PolicyKinds, IssueEgressIsIpToVsockTransparent) {
    const Proxy p = only(
        R"({"name":"egress","listen":"tcp:127.0.0.1:1200","upstream":"vsock:3:1200","send_original_destination":true})");
    EXPECT_EQ(p.kind, WorkerKind::ip_to_vsock_transparent);
    EXPECT_EQ(to_string(p.listen), "tcp:127.0.0.1:1200");
    EXPECT_EQ(p.upstream_mode, UpstreamMode::fixed);
    EXPECT_EQ(to_string(p.upstream), "vsock:3:1200");
    EXPECT_TRUE(p.send_original_destination);
    EXPECT_EQ(p.header, HeaderFormat::standard);
    EXPECT_FALSE(p.proxy_protocol);
    EXPECT_TRUE(p.allow.empty());
}

TEST(PolicyKinds, IssueEgressHostIsVsockToIpTransparent) {
    const Proxy p = only(
        R"({"name":"egress-host","listen":"vsock:any:1200","upstream":"destination-header","allow":["0.0.0.0/0:443"]})");
    EXPECT_EQ(p.kind, WorkerKind::vsock_to_ip_transparent);
    EXPECT_EQ(to_string(p.listen), "vsock:any:1200");
    EXPECT_EQ(p.upstream_mode, UpstreamMode::destination_header);
    EXPECT_EQ(p.allow, std::vector<std::string>{"0.0.0.0/0:443"});
    EXPECT_FALSE(p.send_original_destination);
    EXPECT_EQ(p.header, HeaderFormat::standard);
}

TEST(PolicyKinds, IssuePortsIsTransparentPortToVsock) {
    const Proxy p =
        only(R"({"name":"ports","listen":"tcp:0.0.0.0:1200","upstream":"vsock:88:original-port"})");
    EXPECT_EQ(p.kind, WorkerKind::transparent_port_to_vsock);
    EXPECT_EQ(p.upstream_mode, UpstreamMode::fixed);
    EXPECT_EQ(p.upstream.scheme, Scheme::vsock);
    EXPECT_EQ(p.upstream.cid, 88u);
    EXPECT_TRUE(p.upstream.original_port);
    EXPECT_EQ(to_string(p.upstream), "vsock:88:original-port");
    EXPECT_FALSE(p.send_original_destination);
}

TEST(PolicyKinds, IssueG2gIsVsockToVsock) {
    const Proxy p = only(
        R"({"name":"g2g","listen":"vsock:any:3000","upstream":"vsock:7:22","allowed_cids":[5]})");
    EXPECT_EQ(p.kind, WorkerKind::vsock_to_vsock);
    EXPECT_EQ(to_string(p.listen), "vsock:any:3000");
    EXPECT_EQ(to_string(p.upstream), "vsock:7:22");
    EXPECT_EQ(p.allowed_cids, std::vector<uint32_t>{5});
    EXPECT_FALSE(p.statistics);
}

TEST(PolicyKinds, EveryListenerAndUpstreamCombination) {
    struct Case {
        const char* listen;
        const char* upstream;
        bool send_original_destination;
        WorkerKind kind;
    };
    const Case cases[] = {
        {"tcp:127.0.0.1:1", "tcp:127.0.0.1:2", false, WorkerKind::tcp_forward},
        {"tcp:[::1]:1", "vsock:3:2", false, WorkerKind::ip_to_vsock},
        {"tcp:127.0.0.1:1", "unix:/run/u.sock", false, WorkerKind::ip_to_vsock},
        {"tcp:127.0.0.1:1", "unix:@abstract", false, WorkerKind::ip_to_vsock},
        {"tcp:127.0.0.1:1", "fc-vsock:/run/fc.sock:5000", false, WorkerKind::ip_to_vsock},
        {"tcp:127.0.0.1:1", "vsock:host:2", true, WorkerKind::ip_to_vsock_transparent},
        {"tcp:127.0.0.1:1", "unix:/run/u.sock", true, WorkerKind::ip_to_vsock_transparent},
        {"tcp:127.0.0.1:1", "fc-vsock:/run/fc.sock:5000", true,
         WorkerKind::ip_to_vsock_transparent},
        {"tcp:127.0.0.1:1", "vsock:3:original-port", false, WorkerKind::transparent_port_to_vsock},
        {"vsock:any:1", "tcp:10.0.0.1:2", false, WorkerKind::vsock_to_ip},
        {"unix:/run/u.sock", "tcp:10.0.0.1:2", false, WorkerKind::vsock_to_ip},
        {"fc-vsock:/run/fc.sock:1", "tcp:[2001:db8::1]:2", false, WorkerKind::vsock_to_ip},
        {"vsock:3:1", "destination-header", false, WorkerKind::vsock_to_ip_transparent},
        {"unix:@egress", "destination-header", false, WorkerKind::vsock_to_ip_transparent},
        {"fc-vsock:/run/fc.sock:1", "destination-header", false,
         WorkerKind::vsock_to_ip_transparent},
        {"vsock:any:1", "vsock:2:2", false, WorkerKind::vsock_to_vsock},
        {"unix:/run/u.sock", "fc-vsock:/run/fc.sock:2", false, WorkerKind::vsock_to_vsock},
        {"fc-vsock:/run/fc.sock:1", "unix:/run/u.sock", false, WorkerKind::vsock_to_vsock},
    };
    for (const auto& c : cases) {
        std::vector<std::string> extra;
        if (c.send_original_destination) extra.push_back(R"("send_original_destination": true)");
        if (std::string_view(c.upstream) == "destination-header") extra.push_back(kAllowSome);
        const std::string text = relay(c.listen, c.upstream, extra);
        SCOPED_TRACE(text);
        const Proxy p = parse_policy(text, "p.json").proxies.at(0);
        EXPECT_EQ(kind_name(p.kind), kind_name(c.kind));
        EXPECT_EQ(p.send_original_destination, c.send_original_destination);
    }
}

// The kind is derived from Endpoint::original_port whatever the scheme.
TEST(PolicyKinds, FcVsockOriginalPortIsTransparentPortToVsock) {
    EXPECT_EQ(endpoint_message("fc-vsock:/run/fc.sock:original-port"), "<valid>");
    const Proxy p =
        parse_policy(relay("tcp:0.0.0.0:1200", "fc-vsock:/run/fc.sock:original-port"), "p.json")
            .proxies.at(0);
    EXPECT_EQ(p.kind, WorkerKind::transparent_port_to_vsock);
    EXPECT_TRUE(p.upstream.original_port);
    EXPECT_EQ(errors(relay("unix:/run/u.sock", "fc-vsock:/run/fc.sock:original-port")),
              "p.json:6:19: /proxies/0/upstream: an original-port upstream needs a tcp listener, "
              "not unix (the port comes from SO_ORIGINAL_DST, which only a redirected TCP "
              "connection has)");
}

TEST(PolicyKinds, OriginalDestinationIsTcpForwardWithATcpListener) {
    const Proxy p =
        parse_policy(relay("tcp:0.0.0.0:80", "original-destination", {kAllowSome}), "p.json")
            .proxies.at(0);
    EXPECT_EQ(p.kind, WorkerKind::tcp_forward);
    EXPECT_EQ(p.upstream_mode, UpstreamMode::original_destination);
    EXPECT_EQ(errors(relay("vsock:any:80", "original-destination", {kAllowSome})),
              "p.json:6:19: /proxies/0/upstream: \"original-destination\" needs a tcp listener, "
              "not vsock (the destination comes from SO_ORIGINAL_DST, which only a redirected TCP "
              "connection has)");
    EXPECT_EQ(errors(relay("tcp:0.0.0.0:80", "original-destination",
                           {kAllowSome, R"("send_original_destination": true)"})),
              "p.json:8:36: /proxies/0/send_original_destination: send_original_destination "
              "applies only to a tcp listener with a vsock, unix or fc-vsock upstream");
}

TEST(PolicyKinds, BaseAddressIsTcpForwardWithATcpUpstream) {
    const Proxy p = parse_policy(relay("tcp:127.0.0.1:7000", "tcp:10.1.0.0:80",
                                       {R"("base_address": true)", kAllowSome}),
                                 "p.json")
                        .proxies.at(0);
    EXPECT_EQ(p.kind, WorkerKind::tcp_forward);
    EXPECT_EQ(p.upstream_mode, UpstreamMode::base_address);
    EXPECT_EQ(to_string(p.upstream), "tcp:10.1.0.0:80");
    // false is the default, accepted anywhere.
    EXPECT_EQ(errors(relay("vsock:any:1", "vsock:3:2", {R"("base_address": false)"})), "<valid>");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:7000", "vsock:3:2", {R"("base_address": true)"})),
              "p.json:7:23: /proxies/0/base_address: base_address applies only to a tcp: upstream "
              "(its IP address is the base the original port is added to)");
    EXPECT_EQ(
        errors(relay("vsock:any:1", "tcp:10.1.0.0:80", {R"("base_address": true)", kAllowSome})),
        "p.json:6:19: /proxies/0/upstream: a base_address upstream needs a tcp listener, "
        "not vsock (the destination comes from SO_ORIGINAL_DST, which only a redirected "
        "TCP connection has)");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:7000", "tcp:10.1.0.0:80", {R"("base_address": 1)"})),
              "p.json:7:23: /proxies/0/base_address: expected a boolean (true or false), got 1");
}

// Where the client chooses the destination, a proxy without `allow` is refused: the message names
// the proxy and both ways to fix it.
TEST(PolicyErrors, DenyByDefaultWithoutAllow) {
    const std::string fix =
        " says, and has no allow list: add \"allow\" with the destinations it may reach (such "
        "as [\"10.0.0.0/8:443\"]), or \"allow\": \"any\" for an open relay";
    EXPECT_EQ(errors(relay("vsock:any:1", "destination-header")),
              "p.json:3:5: /proxies/0: proxy \"web\" connects wherever the client's destination "
              "header" +
                  fix);
    EXPECT_EQ(errors(relay("tcp:0.0.0.0:80", "original-destination")),
              "p.json:3:5: /proxies/0: proxy \"web\" connects wherever the client's original "
              "destination (SO_ORIGINAL_DST)" +
                  fix);
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:7000", "tcp:10.1.0.0:80", {R"("base_address": true)"})),
              "p.json:3:5: /proxies/0: proxy \"web\" connects wherever the client's original port "
              "(base_address)" +
                  fix);
    // A fixed upstream is its own destination: no allow list needed.
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:10.0.0.1:443")), "<valid>");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "tcp:10.0.0.1:443")), "<valid>");
}

TEST(PolicyErrors, AllowAnyIsAnOpenRelayWrittenOnPurpose) {
    for (const auto& [listen, upstream, extra] :
         {std::tuple{"vsock:any:1", "destination-header", ""},
          {"tcp:0.0.0.0:80", "original-destination", ""},
          {"tcp:127.0.0.1:7000", "tcp:10.1.0.0:80", R"("base_address": true)"}}) {
        std::vector<std::string> keys{R"("allow": "any")"};
        if (*extra) keys.emplace_back(extra);
        const std::string text = relay(listen, upstream, keys);
        SCOPED_TRACE(text);
        const Proxy p = parse_policy(text, "p.json").proxies.at(0);
        EXPECT_TRUE(p.allow_any);
        EXPECT_EQ(p.allow, (std::vector<std::string>{"0.0.0.0/0:*", "[::]/0:*"}));
    }
    // A list is not an open relay, even a broad one.
    EXPECT_FALSE(parse_policy(relay("vsock:any:1", "destination-header",
                                    {R"("allow": ["0.0.0.0/0:*", "[::]/0:*"])"}),
                              "p.json")
                     .proxies.at(0)
                     .allow_any);
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:10.0.0.1:443", {R"("allow": "any")"})),
              "p.json:7:16: /proxies/0/allow: \"any\" applies only where the client chooses the "
              "destination (\"destination-header\", \"original-destination\" or base_address); a "
              "fixed upstream needs no allow list");
    EXPECT_EQ(errors(relay("vsock:any:1", "destination-header", {R"("allow": "all")"})),
              "p.json:7:16: /proxies/0/allow: expected an array of allow entries such as "
              "[\"10.0.0.0/8:443\"] or the word \"any\", got \"all\"");
    // A change between "any" and the same list written out is a change of configuration.
    const Proxy any =
        parse_policy(relay("vsock:any:1", "destination-header", {R"("allow": "any")"}), "p.json")
            .proxies.at(0);
    const Proxy listed = parse_policy(relay("vsock:any:1", "destination-header",
                                            {R"("allow": ["0.0.0.0/0:*", "[::]/0:*"])"}),
                                      "p.json")
                             .proxies.at(0);
    EXPECT_FALSE(same_configuration(any, listed));
}

TEST(PolicyKinds, DestinationHeaderNeedsAVsockLikeListener) {
    EXPECT_EQ(errors(relay("tcp:0.0.0.0:80", "destination-header")),
              "p.json:6:19: /proxies/0/upstream: \"destination-header\" needs a vsock, unix or "
              "fc-vsock listener, not tcp");
}

TEST(PolicyKinds, OriginalPortNeedsATcpListener) {
    const std::string message =
        "p.json:6:19: /proxies/0/upstream: an original-port upstream needs a tcp listener, not "
        "vsock (the port comes from SO_ORIGINAL_DST, which only a redirected TCP connection has)";
    EXPECT_EQ(errors(relay("vsock:any:80", "vsock:3:original-port")), message);
    // Both mistakes at once: each is reported where it was made.
    EXPECT_EQ(errors(relay("vsock:any:80", "vsock:3:original-port",
                           {R"("send_original_destination": true)"})),
              message +
                  "\np.json:7:36: /proxies/0/send_original_destination: send_original_destination "
                  "applies only to a tcp listener with a vsock, unix or fc-vsock upstream");
}

TEST(PolicyKinds, OriginalPortIsNotAListenerPort) {
    EXPECT_EQ(errors(relay("vsock:any:original-port", "vsock:3:80")),
              "p.json:5:17: /proxies/0/listen: original-port applies only to an upstream (a "
              "listener needs a port of its own)");
}

TEST(PolicyKinds, SendOriginalDestination) {
    const std::string sod = R"("send_original_destination": true)";
    const std::string only_tcp_to_vsock =
        "p.json:7:36: /proxies/0/send_original_destination: send_original_destination applies "
        "only to a tcp listener with a vsock, unix or fc-vsock upstream";
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "tcp:127.0.0.1:2", {sod})), only_tcp_to_vsock);
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:127.0.0.1:2", {sod})), only_tcp_to_vsock);
    EXPECT_EQ(errors(relay("vsock:any:1", "vsock:3:2", {sod})), only_tcp_to_vsock);
    EXPECT_EQ(errors(relay("unix:/run/u.sock", "destination-header", {sod})), only_tcp_to_vsock);
    // The listener alone rules it out, even when the upstream did not parse.
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:1.2.3.4", {sod})),
              "p.json:6:19: /proxies/0/upstream: " + endpoint_message("tcp:1.2.3.4") + "\n" +
                  only_tcp_to_vsock);
    EXPECT_EQ(errors(relay("tcp:0.0.0.0:1200", "vsock:88:original-port", {sod})),
              "p.json:7:36: /proxies/0/send_original_destination: send_original_destination "
              "cannot be combined with an original-port upstream");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2", {R"("send_original_destination": 1)"})),
              "p.json:7:36: /proxies/0/send_original_destination: expected a boolean (true or "
              "false), got 1");
    // false is the default, and fine anywhere.
    EXPECT_EQ(
        errors(relay("vsock:any:1", "tcp:127.0.0.1:2", {R"("send_original_destination": false)"})),
        "<valid>");
}

TEST(PolicyKinds, UpstreamWords) {
    EXPECT_EQ(errors(relay("vsock:any:1", "destination_header")),
              "p.json:6:19: /proxies/0/upstream: " + endpoint_message("destination_header") +
                  " (did you mean \"destination-header\"?)");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "Original-Destination")),
              "p.json:6:19: /proxies/0/upstream: " + endpoint_message("Original-Destination") +
                  " (did you mean \"original-destination\"?)");
    EXPECT_EQ(errors(relay("vsock:any:1", "header")),
              "p.json:6:19: /proxies/0/upstream: " + endpoint_message("header"));
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("vsock:any:1")", "null")),
              "p.json:6:19: /proxies/0/upstream: expected an endpoint string such as "
              "\"tcp:127.0.0.1:8080\", \"destination-header\" or \"original-destination\", got "
              "null");
}

// ---- Relay options ------------------------------------------------------------------------------

TEST(PolicyParse, EveryRelayOption) {
    const Policy p = parse_policy(R"json({
  "proxies": [
    {"name": "in", "listen": "tcp:0.0.0.0:1200", "upstream": "unix:/run/in.sock",
     "send_original_destination": true, "header": "oyster-v4",
     "allowed_sources": ["10.0.0.0/8", "[2001:db8::]/32", "192.168.1.5"], "log_connections": true},
    {"name": "g2g", "listen": "unix:/run/g2g.sock", "upstream": "vsock:7:22", "socket_mode": "0600",
     "socket_owner": "app", "socket_group": "app-grp", "statistics": true, "proxy_protocol": true},
    {"name": "out", "listen": "vsock:any:1300", "upstream": "tcp:10.0.0.2:443",
     "allow": ["10.0.0.0/8:443", "[2001:db8::]/32:1024-65535"], "allowed_cids": [3, 4294967295, 0]},
    {"name": "fc", "listen": "fc-vsock:/run/fc.sock:5000", "upstream": "destination-header",
     "allow": ["0.0.0.0/0:443"], "header": "standard", "socket_mode": "640", "log_connections": false, "statistics": false},
    {"name": "local", "listen": "tcp:127.0.0.1:80", "upstream": "tcp:127.0.0.1:8080",
     "allow": ["127.0.0.1:8080"], "proxy_protocol": false}
  ]
})json",
                                  "p.json");
    ASSERT_EQ(p.proxies.size(), 5u);

    const Proxy& in = p.proxies[0];
    EXPECT_EQ(in.kind, WorkerKind::ip_to_vsock_transparent);
    EXPECT_TRUE(in.send_original_destination);
    EXPECT_EQ(in.header, HeaderFormat::oyster_v4);
    EXPECT_EQ(in.allowed_sources,
              (std::vector<std::string>{"10.0.0.0/8", "[2001:db8::]/32", "192.168.1.5"}));
    EXPECT_TRUE(in.log_connections);
    EXPECT_FALSE(in.proxy_protocol);

    const Proxy& g2g = p.proxies[1];
    EXPECT_EQ(g2g.kind, WorkerKind::vsock_to_vsock);
    EXPECT_EQ(g2g.unix_socket, (UnixSocketFile{"app", "app-grp", 0600}));
    EXPECT_TRUE(g2g.statistics);
    EXPECT_TRUE(g2g.proxy_protocol);

    const Proxy& out = p.proxies[2];
    EXPECT_EQ(out.kind, WorkerKind::vsock_to_ip);
    EXPECT_EQ(out.allow,
              (std::vector<std::string>{"10.0.0.0/8:443", "[2001:db8::]/32:1024-65535"}));
    EXPECT_EQ(out.allowed_cids, (std::vector<uint32_t>{3, 4294967295u, 0}));

    const Proxy& fc = p.proxies[3];
    EXPECT_EQ(fc.kind, WorkerKind::vsock_to_ip_transparent);
    EXPECT_EQ(fc.upstream_mode, UpstreamMode::destination_header);
    EXPECT_EQ(fc.header, HeaderFormat::standard);
    EXPECT_EQ(fc.unix_socket, (UnixSocketFile{std::nullopt, std::nullopt, 0640}));
    EXPECT_FALSE(fc.log_connections);
    EXPECT_FALSE(fc.statistics);

    const Proxy& local = p.proxies[4];
    EXPECT_EQ(local.kind, WorkerKind::tcp_forward);
    EXPECT_EQ(local.allow, std::vector<std::string>{"127.0.0.1:8080"});
}

TEST(PolicyErrors, Header) {
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2", {R"("header": "standard")"})),
              "p.json:7:17: /proxies/0/header: header applies only with send_original_destination "
              "or a \"destination-header\" upstream");
    EXPECT_EQ(errors(relay("vsock:any:1", "destination-header",
                           {kAllowSome, R"("header": "oyster_v4")"})),
              "p.json:8:17: /proxies/0/header: expected \"standard\" or \"oyster-v4\", got "
              "\"oyster_v4\" (did you mean \"oyster-v4\"?)");
    EXPECT_EQ(errors(relay("vsock:any:1", "destination-header", {kAllowSome, R"("header": "v4")"})),
              "p.json:8:17: /proxies/0/header: expected \"standard\" or \"oyster-v4\", got \"v4\"");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2",
                           {R"("send_original_destination": true)", R"("header": 4)"})),
              "p.json:8:17: /proxies/0/header: expected \"standard\" or \"oyster-v4\", got number");
    // Whether header applies is unknown when the upstream did not parse: only that is reported.
    EXPECT_EQ(errors(relay("vsock:any:1", "destination", {R"("header": "standard")"})),
              "p.json:6:19: /proxies/0/upstream: " + endpoint_message("destination"));
}

TEST(PolicyErrors, ProxyProtocol) {
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2",
                           {R"("send_original_destination": true)", R"("proxy_protocol": true)"})),
              "p.json:8:25: /proxies/0/proxy_protocol: proxy_protocol cannot be combined with "
              "send_original_destination (the peer expects the transparent header first)");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2", {R"("proxy_protocol": "v2")"})),
              "p.json:7:25: /proxies/0/proxy_protocol: expected a boolean (true or false), got "
              "\"v2\"");
    for (const auto& [listen, upstream] : {std::pair{"tcp:127.0.0.1:1", "tcp:127.0.0.1:2"},
                                           {"tcp:127.0.0.1:1", "vsock:3:2"},
                                           {"tcp:127.0.0.1:1", "vsock:3:original-port"},
                                           {"vsock:any:1", "tcp:127.0.0.1:2"},
                                           {"vsock:any:1", "destination-header"},
                                           {"vsock:any:1", "vsock:3:2"}}) {
        std::vector<std::string> extra{R"("proxy_protocol": true)"};
        if (std::string_view(upstream) == "destination-header") extra.emplace_back(kAllowSome);
        EXPECT_EQ(errors(relay(listen, upstream, extra)), "<valid>") << listen << " " << upstream;
    }
}

TEST(PolicyErrors, AllowAppliesToTcpDestinations) {
    const std::string others =
        "allow applies only to relays that connect to TCP destinations (tcp-forward, "
        "vsock-to-ip, vsock-to-ip-transparent), not ";
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2", {R"("allow": ["0.0.0.0/0:*"])"})),
              "p.json:7:16: /proxies/0/allow: " + others + "ip-to-vsock");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2",
                           {R"("send_original_destination": true)", R"("allow": [])"})),
              "p.json:8:16: /proxies/0/allow: " + others + "ip-to-vsock-transparent");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:original-port", {R"("allow": 1)"})),
              "p.json:7:16: /proxies/0/allow: " + others + "transparent-port-to-vsock");
    EXPECT_EQ(errors(relay("vsock:any:1", "vsock:3:2", {R"("allow": ["0.0.0.0/0:*"])"})),
              "p.json:7:16: /proxies/0/allow: " + others + "vsock-to-vsock");
}

TEST(PolicyErrors, AllowEntries) {
    EXPECT_EQ(
        errors(relay("vsock:any:1", "destination-header",
                     {R"("allow": ["10.0.0.0/33:443", 443, "0.0.0.0/0:443", "10.0.0.1/8:*"])"})),
        "p.json:7:17: /proxies/0/allow/0: " + allow_message("10.0.0.0/33:443") + "\n" +
            "p.json:7:36: /proxies/0/allow/1: expected an allow entry such as "
            "\"10.0.0.0/8:443\", got number\n"
            "p.json:7:58: /proxies/0/allow/3: " +
            allow_message("10.0.0.1/8:*"));
    EXPECT_EQ(errors(relay("vsock:any:1", "destination-header", {R"("allow": [])"})),
              "p.json:7:16: /proxies/0/allow: expected at least one allow entry, got an empty "
              "array (leave allow out for a fixed upstream)");
    EXPECT_EQ(errors(relay("vsock:any:1", "destination-header", {R"("allow": "0.0.0.0/0:443")"})),
              "p.json:7:16: /proxies/0/allow: expected an array of allow entries such as "
              "[\"10.0.0.0/8:443\"] or the word \"any\", got \"0.0.0.0/0:443\"");
    EXPECT_EQ(errors(relay("vsock:any:1", "destination-header", {R"("allow": 443)"})),
              "p.json:7:16: /proxies/0/allow: expected an array of allow entries such as "
              "[\"10.0.0.0/8:443\"], got number");
}

TEST(PolicyErrors, AllowMustAdmitAFixedUpstream) {
    // The default protected ranges apply: a broad entry does not unlock loopback.
    EXPECT_EQ(errors(with({R"("allow": ["0.0.0.0/0:*"])"})),
              "p.json:7:16: /proxies/0/allow: the upstream \"tcp:127.0.0.1:9000\" is not allowed "
              "by this list (loopback destination not explicitly allowed)");
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:10.0.0.2:443", {R"("allow": ["10.0.0.0/8:80"])"})),
              "p.json:7:16: /proxies/0/allow: the upstream \"tcp:10.0.0.2:443\" is not allowed by "
              "this list (not in the allow list)");
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:[::1]:443", {R"("allow": ["[::]/0:443"])"})),
              "p.json:7:16: /proxies/0/allow: the upstream \"tcp:[::1]:443\" is not allowed by "
              "this list (loopback destination not explicitly allowed)");
    EXPECT_EQ(errors(with({R"("allow": ["127.0.0.0/8:9000"])"})), "<valid>");
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:10.0.0.2:443", {R"("allow": ["10.0.0.0/8:443"])"})),
              "<valid>");
}

TEST(PolicyErrors, AllowedCids) {
    EXPECT_EQ(errors(relay("vsock:any:1", "vsock:3:2",
                           {R"("allowed_cids": [3, -1, 4294967296, "5", 3, 2.5, null])"})),
              "p.json:7:27: /proxies/0/allowed_cids/1: expected a CID 0-4294967295, got -1\n"
              "p.json:7:31: /proxies/0/allowed_cids/2: expected a CID 0-4294967295, got "
              "4294967296\n"
              "p.json:7:43: /proxies/0/allowed_cids/3: expected a CID 0-4294967295, got string\n"
              "p.json:7:48: /proxies/0/allowed_cids/4: duplicate CID 3 (first at 7:24)\n"
              "p.json:7:51: /proxies/0/allowed_cids/5: expected a CID 0-4294967295, got 2.5\n"
              "p.json:7:56: /proxies/0/allowed_cids/6: expected a CID 0-4294967295, got null");
    EXPECT_EQ(errors(relay("vsock:any:1", "vsock:3:2", {R"("allowed_cids": [])"})),
              "p.json:7:23: /proxies/0/allowed_cids: expected at least one CID, got an empty "
              "array (to admit every peer, leave allowed_cids out)");
    EXPECT_EQ(errors(relay("vsock:any:1", "vsock:3:2", {R"("allowed_cids": 5)"})),
              "p.json:7:23: /proxies/0/allowed_cids: expected an array of CIDs such as [3, 5], "
              "got number");
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "vsock:3:2", {R"("allowed_cids": [5])"})),
              "p.json:7:23: /proxies/0/allowed_cids: allowed_cids applies only to vsock "
              "listeners, not tcp");
    EXPECT_EQ(errors(relay("unix:/run/u.sock", "vsock:3:2", {R"("allowed_cids": [5])"})),
              "p.json:7:23: /proxies/0/allowed_cids: allowed_cids applies only to vsock "
              "listeners, not unix");
    EXPECT_EQ(errors(relay("fc-vsock:/run/fc.sock:1", "vsock:3:2", {R"("allowed_cids": [5])"})),
              "p.json:7:23: /proxies/0/allowed_cids: allowed_cids applies only to vsock "
              "listeners, not fc-vsock");
}

TEST(PolicyErrors, AllowedSources) {
    EXPECT_EQ(
        errors(relay("tcp:0.0.0.0:1", "vsock:3:2",
                     {R"("allowed_sources": ["10.0.0.0/33", "10.0.0.0/8", false, "10.0.0.1/8"])"})),
        "p.json:7:27: /proxies/0/allowed_sources/0: " + cidr_message("10.0.0.0/33") + "\n" +
            "p.json:7:56: /proxies/0/allowed_sources/2: expected a CIDR such as "
            "\"10.0.0.0/8\", got boolean\n"
            "p.json:7:63: /proxies/0/allowed_sources/3: " +
            cidr_message("10.0.0.1/8"));
    EXPECT_EQ(errors(relay("tcp:0.0.0.0:1", "vsock:3:2", {R"("allowed_sources": [])"})),
              "p.json:7:26: /proxies/0/allowed_sources: expected at least one CIDR, got an empty "
              "array (to admit every client, leave allowed_sources out)");
    EXPECT_EQ(errors(relay("tcp:0.0.0.0:1", "vsock:3:2", {R"("allowed_sources": {})"})),
              "p.json:7:26: /proxies/0/allowed_sources: expected an array of CIDRs such as "
              "[\"10.0.0.0/8\"], got object");
    EXPECT_EQ(
        errors(relay("vsock:any:1", "tcp:10.0.0.1:2", {R"("allowed_sources": ["10.0.0.0/8"])"})),
        "p.json:7:26: /proxies/0/allowed_sources: allowed_sources applies only to tcp "
        "and udp listeners, not vsock");
}

TEST(PolicyErrors, UnixSocketFile) {
    const std::vector<std::string> all = {R"("socket_mode": "0600")", R"("socket_owner": "app")",
                                          R"("socket_group": "app")"};
    EXPECT_EQ(errors(relay("tcp:127.0.0.1:1", "unix:/run/u.sock", all)),
              "p.json:7:22: /proxies/0/socket_mode: socket_mode applies only to unix and "
              "fc-vsock listeners, not tcp\n"
              "p.json:8:23: /proxies/0/socket_owner: socket_owner applies only to unix and "
              "fc-vsock listeners, not tcp\n"
              "p.json:9:23: /proxies/0/socket_group: socket_group applies only to unix and "
              "fc-vsock listeners, not tcp");
    EXPECT_EQ(errors(relay("vsock:any:1", "unix:/run/u.sock", {all[0]})),
              "p.json:7:22: /proxies/0/socket_mode: socket_mode applies only to unix and "
              "fc-vsock listeners, not vsock");
    EXPECT_EQ(errors(relay("unix:@pf", "vsock:3:2", {all[1]})),
              "p.json:7:23: /proxies/0/socket_owner: socket_owner does not apply to an abstract "
              "unix socket (it has no file)");
    EXPECT_EQ(errors(relay("unix:/run/u.sock", "vsock:3:2",
                           {R"("socket_owner": "")", R"("socket_group": "a\u0000b")"})),
              "p.json:7:23: /proxies/0/socket_owner: expected a non-empty string, got \"\"\n"
              "p.json:8:23: /proxies/0/socket_group: expected a string without control "
              "characters, got \"a\\u0000b\"");
    const std::string expected =
        R"(expected an octal mode "000"-"777" or "0000"-"0777" such as "0660", got )";
    for (const auto& [value, got] :
         std::initializer_list<std::pair<const char*, const char*>>{{R"("0888")", R"("0888")"},
                                                                    {R"("1777")", R"("1777")"},
                                                                    {R"("66")", R"("66")"},
                                                                    {R"("00660")", R"("00660")"},
                                                                    {R"("0o660")", R"("0o660")"},
                                                                    {R"("rw-")", R"("rw-")"},
                                                                    {R"("")", R"("")"},
                                                                    {"660", "660"},
                                                                    {"true", "boolean"},
                                                                    {"[]", "array"}}) {
        EXPECT_EQ(errors(relay("fc-vsock:/run/fc.sock:1", "tcp:10.0.0.1:2",
                               {std::string(R"("socket_mode": )") + value})),
                  "p.json:7:22: /proxies/0/socket_mode: " + expected + got)
            << value;
    }
    for (const auto& [value, mode] : std::initializer_list<std::pair<const char*, unsigned>>{
             {"000", 0}, {"0000", 0}, {"777", 0777}, {"0777", 0777}, {"0640", 0640}}) {
        const Proxy p = parse_policy(relay("unix:/run/u.sock", "vsock:3:2",
                                           {std::string(R"("socket_mode": ")") + value + "\""}),
                                     "p.json")
                            .proxies.at(0);
        EXPECT_EQ(p.unix_socket.mode, mode) << value;
    }
}

TEST(PolicyErrors, StatisticsAndLogConnections) {
    EXPECT_EQ(errors(with({R"("statistics": true)"})),
              "p.json:7:21: /proxies/0/statistics: statistics applies only to vsock-to-vsock, "
              "kcp-client, kcp-server relays, not tcp-forward");
    EXPECT_EQ(
        errors(relay("vsock:any:1", "destination-header", {R"("statistics": true)", kAllowSome})),
        "p.json:7:21: /proxies/0/statistics: statistics applies only to vsock-to-vsock, "
        "kcp-client, kcp-server relays, not vsock-to-ip-transparent");
    EXPECT_EQ(errors(with({R"("statistics": false)", R"("log_connections": true)"})), "<valid>");
    EXPECT_EQ(errors(with({R"("statistics": 1)", R"("log_connections": "yes")"})),
              "p.json:7:21: /proxies/0/statistics: expected a boolean (true or false), got 1\n"
              "p.json:8:26: /proxies/0/log_connections: expected a boolean (true or false), got "
              "\"yes\"");
}

TEST(PolicyErrors, NewKeysHaveHints) {
    const std::pair<const char*, std::string> cases[] = {
        {R"("allowed_cid": [5])",
         R"(p.json:7:7: /proxies/0/allowed_cid: unknown key "allowed_cid" )"
         R"((did you mean "allowed_cids"?))"},
        {R"("proxy-protocol": true)",
         R"(p.json:7:7: /proxies/0/proxy-protocol: unknown key "proxy-protocol" )"
         R"((did you mean "proxy_protocol"?))"},
        {R"("Statistics": true)", R"(p.json:7:7: /proxies/0/Statistics: unknown key "Statistics" )"
                                  R"((did you mean "statistics"?))"},
        {R"("send_original_destinaton": true)",
         R"(p.json:7:7: /proxies/0/send_original_destinaton: unknown key )"
         R"("send_original_destinaton" (did you mean "send_original_destination"?))"},
        {R"("socket_mod": "0660")",
         R"(p.json:7:7: /proxies/0/socket_mod: unknown key "socket_mod" )"
         R"((did you mean "socket_mode"?))"},
        {R"("headers": "standard")",
         R"(p.json:7:7: /proxies/0/headers: unknown key "headers" (did you mean "header"?))"},
    };
    for (const auto& [member, message] : cases) {
        EXPECT_EQ(errors(with({member})), message) << member;
    }
}

// When the listener or upstream is wrong, the options that depend on it are neither accepted nor
// reported as not applying: only what is known is reported.
TEST(PolicyErrors, UnknownKindRulesNothingOut) {
    EXPECT_EQ(errors(relay("vsock:any:1", "tcp:1.2.3.4",
                           {R"("allow": ["0.0.0.0/0:*"])", R"("statistics": true)"})),
              "p.json:6:19: /proxies/0/upstream: " + endpoint_message("tcp:1.2.3.4"));
    EXPECT_EQ(errors(relay("vsock:nope:1", "vsock:3:2",
                           {R"("allowed_cids": [5, 5])", R"("socket_mode": "0600")"})),
              "p.json:5:17: /proxies/0/listen: " + endpoint_message("vsock:nope:1") + "\n" +
                  "p.json:7:27: /proxies/0/allowed_cids/1: duplicate CID 5 (first at 7:24)");
}

TEST(PolicyErrors, EveryRelayErrorIsReportedAtOnce) {
    EXPECT_EQ(errors(R"json({
  "proxies": [
    {"name": "a", "listen": "tcp:127.0.0.1:1200", "upstream": "vsock:3:1200",
     "send_original_destination": true, "proxy_protocol": true, "allow": ["0.0.0.0/0:443"]},
    {"name": "b", "listen": "vsock:any:1200", "upstream": "destination-header",
     "allowed_sources": ["10.0.0.0/8"], "allow": ["10.0.0.0/8:x"], "header": "oyster"},
    {"name": "c", "listen": "vsock:any:1201", "upstream": "original-destination",
     "statistics": true},
    {"name": "d", "listen": "tcp:0.0.0.0:1202", "upstream": "original-destination"}
  ]
})json"),
              "p.json:4:59: /proxies/0/proxy_protocol: proxy_protocol cannot be combined with "
              "send_original_destination (the peer expects the transparent header first)\n"
              "p.json:4:74: /proxies/0/allow: allow applies only to relays that connect to TCP "
              "destinations (tcp-forward, vsock-to-ip, vsock-to-ip-transparent), not "
              "ip-to-vsock-transparent\n"
              "p.json:6:25: /proxies/1/allowed_sources: allowed_sources applies only to tcp "
              "and udp listeners, not vsock\n"
              "p.json:6:51: /proxies/1/allow/0: " +
                  allow_message("10.0.0.0/8:x") +
                  "\n"
                  "p.json:6:78: /proxies/1/header: expected \"standard\" or \"oyster-v4\", got "
                  "\"oyster\"\n"
                  "p.json:7:59: /proxies/2/upstream: \"original-destination\" needs a tcp "
                  "listener, not vsock (the destination comes from SO_ORIGINAL_DST, which only a "
                  "redirected TCP connection has)\n"
                  "p.json:9:5: /proxies/3: proxy \"d\" connects wherever the client's original "
                  "destination (SO_ORIGINAL_DST) says, and has no allow list: add \"allow\" with "
                  "the destinations it may reach (such as [\"10.0.0.0/8:443\"]), or \"allow\": "
                  "\"any\" for an open relay");
}

// ---- Cross-entry checks -------------------------------------------------------------------------

TEST(PolicyErrors, DuplicateProxyNames) {
    EXPECT_EQ(errors(R"json({
  "proxies": [
    {"name": "web", "listen": "tcp:127.0.0.1:8080", "upstream": "tcp:127.0.0.1:9000"},
    {"name": "api", "listen": "tcp:127.0.0.1:8081", "upstream": "tcp:127.0.0.1:9001"},
    {"name": "web", "listen": "tcp:127.0.0.1:8082", "upstream": "tcp:127.0.0.1:9002"}
  ]
})json"),
              "p.json:5:14: /proxies/2/name: duplicate proxy name \"web\" (first at 3:14)");
}

TEST(PolicyErrors, DuplicateListenEndpointsCompareCanonically) {
    EXPECT_EQ(errors(R"json({
  "proxies": [
    {"name": "web", "listen": "tcp:[::1]:8080", "upstream": "tcp:127.0.0.1:9000"},
    {"name": "api", "listen": "tcp:[0:0::1]:8080", "upstream": "tcp:127.0.0.1:9001"},
    {"name": "ops", "listen": "tcp:[::1]:8081", "upstream": "tcp:127.0.0.1:9001"}
  ]
})json"),
              "p.json:4:31: /proxies/1/listen: duplicate listen endpoint \"tcp:[::1]:8080\" "
              "(first at 3:31)");
}

TEST(PolicyErrors, DuplicateVsockAndSocketFileListeners) {
    EXPECT_EQ(errors(R"json({
  "proxies": [
    {"name": "a", "listen": "vsock:any:1200", "upstream": "tcp:10.0.0.1:80"},
    {"name": "b", "listen": "vsock:4294967295:1200", "upstream": "tcp:10.0.0.1:81"},
    {"name": "d", "listen": "fc-vsock:/run/fc.sock:5000", "upstream": "tcp:10.0.0.1:83"},
    {"name": "e", "listen": "unix:/run/fc.sock_5000", "upstream": "tcp:10.0.0.1:84"},
    {"name": "f", "listen": "fc-vsock:/run/fc.sock:5000", "upstream": "tcp:10.0.0.1:85"},
    {"name": "g", "listen": "unix:/run/fc.sock", "upstream": "tcp:10.0.0.1:86"}
  ]
})json"),
              "p.json:4:29: /proxies/1/listen: duplicate listen endpoint \"vsock:any:1200\" "
              "(first at 3:29)\n"
              "p.json:6:29: /proxies/3/listen: listen endpoint \"unix:/run/fc.sock_5000\" is the "
              "same socket file as \"fc-vsock:/run/fc.sock:5000\" (first at 5:29)\n"
              "p.json:7:29: /proxies/4/listen: duplicate listen endpoint "
              "\"fc-vsock:/run/fc.sock:5000\" (first at 5:29)");
}

// ---- Duplicate keys -----------------------------------------------------------------------------

TEST(PolicyErrors, DuplicateKeysPointAtTheSecondOccurrence) {
    EXPECT_EQ(errors(R"json({
  "user": "nobody",
  "proxies": [
    {
      "name": "web",
      "listen": "tcp:127.0.0.1:8080",
      "upstream": "tcp:127.0.0.1:9000",
      "name": "web2"
    }
  ],
  "us\u0065r": "root"
})json"),
              "p.json:8:7: /proxies/0/name: duplicate key \"name\" (first at 5:7)\n"
              "p.json:11:3: /user: duplicate key \"user\" (first at 2:3)");
}

// ---- Many errors at once ------------------------------------------------------------------------

TEST(PolicyErrors, EveryErrorIsReportedInFileOrder) {
    EXPECT_EQ(errors(R"json({
  "user": "nobody",
  "drain_timeout": "30 seconds",
  "proxies": [
    {
      "name": "web",
      "listen": "tcp:127.0.0.1:8080",
      "upstrem": "tcp:127.0.0.1:9000",
      "workers": 0
    },
    {
      "name": "web",
      "listen": "tcp:127.0.0.1:8080",
      "upstream": "udp:127.0.0.1:53",
      "keepalive": {"idle": "1x", "count": 500},
      "restart": {"backoff_initial": "10s", "backoff_max": "5s"}
    }
  ],
  "colour": "blue"
})json"),
              "p.json:3:20: /drain_timeout: expected a duration (a number of seconds or a string "
              "such as \"250ms\", \"10s\", \"5m\", \"1h\"), got \"30 seconds\"\n"
              "p.json:5:5: /proxies/0: missing required key \"upstream\"\n"
              "p.json:8:7: /proxies/0/upstrem: unknown key \"upstrem\" (did you mean "
              "\"upstream\"?)\n"
              "p.json:9:18: /proxies/0/workers: expected an integer 1-64, got 0\n"
              "p.json:12:15: /proxies/1/name: duplicate proxy name \"web\" (first at 6:15)\n"
              "p.json:13:17: /proxies/1/listen: duplicate listen endpoint "
              "\"tcp:127.0.0.1:8080\" (first at 7:17)\n"
              "p.json:14:19: /proxies/1/upstream: a tcp listener with a udp upstream carries each "
              "stream over datagrams: write \"tunnel\": \"kcp\" (kind kcp-client)\n"
              "p.json:15:29: /proxies/1/keepalive/idle: expected a duration (a number of seconds "
              "or a string such as \"250ms\", \"10s\", \"5m\", \"1h\"), got \"1x\"\n"
              "p.json:15:44: /proxies/1/keepalive/count: expected an integer 1-127, got 500\n"
              "p.json:16:60: /proxies/1/restart/backoff_max: expected a duration >= "
              "backoff_initial (10s), got \"5s\"\n"
              "p.json:19:3: /colour: unknown key \"colour\", expected one of: user, group, "
              "drain_timeout, metrics, control_users, control_groups, resolver, resolve_min, "
              "resolve_max, proxies");
}

TEST(PolicyErrors, DiagnosticsCarryTheirParts) {
    try {
        (void)parse_policy(with({R"("workers": 0)", R"("splice": "no")"}), "p.json");
        FAIL() << "no error";
    } catch (const policy_error& e) {
        ASSERT_EQ(e.diagnostics().size(), 2u);
        const Diagnostic& d = e.diagnostics()[0];
        EXPECT_EQ(d.file, "p.json");
        EXPECT_EQ(d.line, 7);
        EXPECT_EQ(d.column, 18);
        EXPECT_EQ(d.pointer, "/proxies/0/workers");
        EXPECT_EQ(d.message, "expected an integer 1-64, got 0");
        EXPECT_EQ(d.hint, "");
        EXPECT_EQ(e.diagnostics()[1].line, 8);
    }
}

TEST(PolicyErrors, TooManyErrorsAreCapped) {
    std::string text = "{\n";
    for (int i = 0; i < 150; ++i) text += "  \"k" + std::to_string(i) + "\": 1,\n";
    text += "  \"proxies\": 1\n}\n";
    const std::string all = errors(text);
    EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 100);
    EXPECT_TRUE(all.ends_with("\np.json: too many errors, 51 more not shown")) << all;
}

// ---- Syntax errors ------------------------------------------------------------------------------

TEST(PolicySyntax, MissingComma) {
    EXPECT_EQ(errors(R"json({
  "user": "nobody",
  "proxies": [
    {"name": "web" "listen": "tcp:127.0.0.1:8080"}
  ]
})json"),
              "p.json:4:20: /proxies/0: syntax error: unexpected string, expected ',' or '}'");
    EXPECT_EQ(errors(R"json({
  "proxies": [
    {"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2", "workers": 2}
    {"name": "b"}
  ]
})json"),
              "p.json:4:5: /proxies: syntax error: unexpected '{', expected ',' or ']'");
}

TEST(PolicySyntax, TrailingComma) {
    EXPECT_EQ(errors(R"json({
  "user": "nobody",
})json"),
              "p.json:3:1: (root): syntax error: unexpected '}', expected a quoted key");
    EXPECT_EQ(errors(R"json({
  "proxies": [1,
  ]
})json"),
              "p.json:3:3: /proxies: syntax error: unexpected ']', expected a value");
}

TEST(PolicySyntax, BareWords) {
    EXPECT_EQ(errors(R"json({
  "user": nobody
})json"),
              "p.json:2:11: /user: syntax error: invalid literal \"nobody\"");
    EXPECT_EQ(errors(R"json({
  user: "nobody"
})json"),
              "p.json:2:3: (root): syntax error: invalid literal \"user\", expected a quoted key");
    EXPECT_EQ(errors(R"json({
  "splice": True
})json"),
              "p.json:2:13: /splice: syntax error: invalid literal \"True\"");
}

TEST(PolicySyntax, ValuesAndSeparators) {
    EXPECT_EQ(errors(R"json({
  "workers" 4
})json"),
              "p.json:2:13: /workers: syntax error: unexpected number, expected ':'");
    EXPECT_EQ(errors(R"json({
  "workers": 4}
}})json"),
              "p.json:3:1: (root): syntax error: unexpected '}', expected end of input");
    EXPECT_EQ(errors(R"json({
  "a": -x
})json"),
              "p.json:2:9: /a: syntax error: invalid number, expected digit after '-'");
    EXPECT_EQ(errors(R"json({
  "a": [1, 1e999]
})json"),
              "p.json:2:12: /a: syntax error: number 1e999 is out of range");
    EXPECT_EQ(errors(R"json({
  // comment
})json"),
              "p.json:2:3: (root): syntax error: invalid literal, expected a quoted key");
}

TEST(PolicySyntax, Strings) {
    EXPECT_EQ(errors("{\n  \"user\": \"no\tbody\"\n}"),
              "p.json:2:14: /user: syntax error: invalid string: control character U+0009 (HT) "
              "must be escaped to \\u0009 or \\t");
    EXPECT_EQ(errors("{\n  \"user\": \"\xff\"\n}"),
              "p.json:2:12: /user: syntax error: invalid string: ill-formed UTF-8 byte");
    EXPECT_EQ(errors("{\n  \"user\": \"nobody\n}"),
              "p.json:2:18: /user: syntax error: invalid string: control character U+000A (LF) "
              "must be escaped to \\u000A or \\n");
}

TEST(PolicySyntax, EndOfInput) {
    EXPECT_EQ(errors(""),
              "p.json:1:1: (root): syntax error: unexpected end of input, expected a value");
    EXPECT_EQ(errors("  \n"),
              "p.json:2:1: (root): syntax error: unexpected end of input, expected a value");
    EXPECT_EQ(errors("{\n  \"proxies\": [\n"),
              "p.json:3:1: /proxies: syntax error: unexpected end of input, expected a value");
    EXPECT_EQ(errors("{\n  \"user\": \"nobody"),
              "p.json:2:18: /user: syntax error: invalid string: missing closing quote");
}

TEST(PolicySyntax, NulBytesAreRefused) {
    // nlohmann would stop at the NUL and silently ignore everything after it.
    const std::string text = R"({"proxies": [)" + std::string(kProxy) + "]}" + '\0' + "junk";
    EXPECT_EQ(errors(text), "p.json:1:89: (root): syntax error: unexpected NUL byte");
    EXPECT_EQ(errors(std::string("{\"user\": \"a\0b\"}", 15)),
              "p.json:1:12: /user: syntax error: unexpected NUL byte");
    // An earlier error is still the first one reported.
    EXPECT_EQ(errors(std::string("{x\0", 3)),
              "p.json:1:2: (root): syntax error: invalid literal \"x\", expected a quoted key");
}

TEST(PolicySyntax, ByteOrderMarkIsAccepted) {
    const Policy p = parse_policy(
        "\xef\xbb\xbf{\"proxies\": [{\"name\": \"a\", \"listen\": \"tcp:127.0.0.1:1\", "
        "\"upstream\": \"tcp:127.0.0.1:2\"}]}",
        "p.json");
    EXPECT_EQ(p.proxies.size(), 1u);
    EXPECT_EQ(errors("\xef\xbb\xbf{\"workers\": 1}"),
              "p.json:1:4: (root): missing required key \"proxies\"\n"
              "p.json:1:5: /workers: unknown key \"workers\", expected one of: user, group, "
              "drain_timeout, metrics, control_users, control_groups, resolver, resolve_min, "
              "resolve_max, proxies");
}

// ---- Files --------------------------------------------------------------------------------------

class PolicyLoad : public testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/policy_test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::remove((dir_ + "/p.json").c_str());
        rmdir(dir_.c_str());
    }
    std::string write(const std::string& text) {
        const std::string path = dir_ + "/p.json";
        std::ofstream(path, std::ios::binary) << text;
        return path;
    }
    static std::string load_error(const std::string& path) {
        try {
            (void)load_policy(path);
        } catch (const policy_error& e) {
            return e.what();
        }
        return "<valid>";
    }
    std::string dir_;
};

TEST_F(PolicyLoad, ReadsAFile) {
    const std::string path = write(with({}));
    const Policy p = load_policy(path);
    EXPECT_EQ(p.path, path);
    ASSERT_EQ(p.proxies.size(), 1u);
    EXPECT_EQ(p.proxies[0].name, "web");
}

TEST_F(PolicyLoad, DiagnosticsNameTheFile) {
    const std::string path = write(with({R"("workers": 0)"}));
    EXPECT_EQ(load_error(path),
              path + ":7:18: /proxies/0/workers: expected an integer 1-64, got 0");
}

TEST_F(PolicyLoad, MissingFile) {
    EXPECT_EQ(load_error(dir_ + "/missing.json"),
              dir_ + "/missing.json: cannot open the policy: No such file or directory");
}

TEST_F(PolicyLoad, Directory) {
    EXPECT_EQ(load_error(dir_), dir_ + ": cannot read the policy: Is a directory");
}

TEST_F(PolicyLoad, OversizedFile) {
    const std::string path = write(std::string(16 * 1024 * 1024 + 1, ' '));
    EXPECT_EQ(load_error(path), path + ": the policy is larger than 16 MiB");
}

// ---- Socket activation: "systemd:NAME" + listen_family
// --------------------------------------------

TEST(PolicyActivation, ListenFamilyChoosesTheKind) {
    Policy p = parse_policy(proxy_policy(R"("web")", R"("systemd:web")", R"("vsock:3:80")",
                                         {R"("listen_family": "tcp")"}),
                            "p.json");
    ASSERT_EQ(p.proxies.size(), 1u);
    EXPECT_EQ(p.proxies[0].kind, WorkerKind::ip_to_vsock);
    EXPECT_EQ(p.proxies[0].listen.scheme, Scheme::systemd);
    EXPECT_EQ(p.proxies[0].listen.name, "web");
    EXPECT_EQ(p.proxies[0].listen_family, Scheme::tcp);
    p = parse_policy(proxy_policy(R"("v")", R"("systemd:v")", R"("vsock:3:80")",
                                  {R"("listen_family": "vsock")", R"("allowed_cids": [1])"}),
                     "p.json");
    EXPECT_EQ(p.proxies[0].kind, WorkerKind::vsock_to_vsock);
    EXPECT_EQ(p.proxies[0].allowed_cids, std::vector<uint32_t>{1});
    p = parse_policy(proxy_policy(R"("u")", R"("systemd:u")", R"("tcp:127.0.0.1:80")",
                                  {R"("listen_family": "unix")"}),
                     "p.json");
    EXPECT_EQ(p.proxies[0].kind, WorkerKind::vsock_to_ip);
}

TEST(PolicyActivation, ListenFamilyErrors) {
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("tcp:127.0.0.1:80")", R"("tcp:127.0.0.1:81")",
                                  {R"("listen_family": "tcp")"})),
              "p.json:7:24: /proxies/0/listen_family: listen_family applies only to a "
              "\"systemd:NAME\" listener (the tcp endpoint names its own)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("systemd:web")", R"("tcp:127.0.0.1:81")",
                                  {R"("listen_family": "tpc")"})),
              "p.json:7:24: /proxies/0/listen_family: expected \"tcp\", \"udp\", \"unix\" or "
              "\"vsock\", got \"tpc\" (did you mean \"tcp\"?)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("systemd:web")", R"("tcp:127.0.0.1:81")",
                                  {R"("listen_family": "udp")"})),
              "p.json:6:19: /proxies/0/upstream: a udp listener with a tcp upstream carries each "
              "stream over datagrams: write \"tunnel\": \"kcp\" (kind kcp-server)");
    // systemd made the socket file: its mode belongs in the .socket unit.
    EXPECT_EQ(errors(proxy_policy(R"("u")", R"("systemd:u")", R"("tcp:127.0.0.1:80")",
                                  {R"("listen_family": "unix")", R"("socket_mode": "0600")"})),
              "p.json:8:22: /proxies/0/socket_mode: socket_mode does not apply to a socket "
              "systemd passes (set SocketMode=, SocketUser= and SocketGroup= in the .socket "
              "unit)");
    // Checked like a listener pf-proxyd opens: allowed_sources is for TCP.
    EXPECT_EQ(errors(proxy_policy(
                  R"("v")", R"("systemd:v")", R"("tcp:127.0.0.1:80")",
                  {R"("listen_family": "vsock")", R"("allowed_sources": ["10.0.0.0/8"])"})),
              "p.json:8:26: /proxies/0/allowed_sources: allowed_sources applies only to tcp "
              "and udp listeners, not vsock");
}

TEST(PolicyActivation, SameConfigurationIgnoresOnlyThePointer) {
    const std::string text =
        proxy_policy(R"("web")", R"("tcp:127.0.0.1:80")", R"("tcp:127.0.0.1:81")");
    Policy a = parse_policy(text, "a.json");
    Policy b = parse_policy(text, "b.json");
    b.proxies[0].pointer = "/proxies/7";
    EXPECT_TRUE(same_configuration(a.proxies[0], b.proxies[0]));
    b.proxies[0].idle_timeout = milliseconds(5);
    EXPECT_FALSE(same_configuration(a.proxies[0], b.proxies[0]));
    Policy c = parse_policy(
        proxy_policy(R"("web")", R"("tcp:127.0.0.1:80")", R"("tcp:127.0.0.1:82")"), "c.json");
    EXPECT_FALSE(same_configuration(a.proxies[0], c.proxies[0]));
    Policy d = parse_policy(
        proxy_policy(R"("web")", R"("tcp:127.0.0.2:80")", R"("tcp:127.0.0.1:81")"), "d.json");
    EXPECT_FALSE(same_configuration(a.proxies[0], d.proxies[0]));
}

// ---- Metrics and control socket access ----------------------------------------------------------

// One top-level member on line 2 (key at column 3), then one proxy on line 3.
std::string top(const std::string& member) {
    return "{\n  " + member + ",\n  \"proxies\": [" + std::string(kProxy) + "]\n}\n";
}

TEST(PolicyTopLevel, MetricsAndControlAccess) {
    const Policy none = parse_policy(top(R"("user": "nobody")"), "p.json");
    EXPECT_FALSE(none.metrics);
    EXPECT_TRUE(none.control_users.empty());
    EXPECT_TRUE(none.control_groups.empty());

    const Policy tcp = parse_policy(top(R"("metrics": "tcp:127.0.0.1:9100")"), "p.json");
    ASSERT_TRUE(tcp.metrics);
    EXPECT_EQ(to_string(*tcp.metrics), "tcp:127.0.0.1:9100");
    const Policy unix_file =
        parse_policy(top(R"("metrics": "unix:/run/pf-proxy/metrics.sock")"), "p.json");
    ASSERT_TRUE(unix_file.metrics);
    EXPECT_EQ(unix_file.metrics->scheme, Scheme::unix_stream);
    EXPECT_EQ(unix_file.metrics->path, "/run/pf-proxy/metrics.sock");

    const Policy access = parse_policy(R"({
  "control_users": ["alice", "monitoring"],
  "control_groups": ["pf-proxy-admin"],
  "proxies": [{"name": "a", "listen": "tcp:127.0.0.1:1", "upstream": "tcp:127.0.0.1:2"}]
})",
                                       "p.json");
    EXPECT_EQ(access.control_users, (std::vector<std::string>{"alice", "monitoring"}));
    EXPECT_EQ(access.control_groups, (std::vector<std::string>{"pf-proxy-admin"}));
    EXPECT_TRUE(parse_policy(top(R"("control_users": [])"), "p.json").control_users.empty());
}

TEST(PolicyTopLevel, MetricsErrors) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"("metrics": 9100)",
         "p.json:2:14: /metrics: expected an endpoint string such as \"tcp:127.0.0.1:8080\", got "
         "number"},
        {R"("metrics": "vsock:any:9100")",
         "p.json:2:14: /metrics: a vsock endpoint cannot serve metrics (allowed: tcp, unix)"},
        {R"("metrics": "fc-vsock:/run/v.sock:9100")",
         "p.json:2:14: /metrics: an fc-vsock endpoint cannot serve metrics (allowed: tcp, "
         "unix)"},
        {R"("metrics": "udp:127.0.0.1:9100")",
         "p.json:2:14: /metrics: a udp endpoint cannot serve metrics (allowed: tcp, unix)"},
        {R"("metrics": "unix:@metrics")",
         "p.json:2:14: /metrics: expected a unix: endpoint with a path such as "
         "\"unix:/run/pf-proxy/metrics.sock\", got \"unix:@metrics\""},
        {R"("metrics": "tcp:127.0.0.1")",
         "p.json:2:14: /metrics: " + endpoint_message("tcp:127.0.0.1")},
        // The same socket as a proxy's listener (kProxy listens on tcp:127.0.0.1:1).
        {R"("metrics": "tcp:127.0.0.1:1")",
         "p.json:2:14: /metrics: the metrics endpoint \"tcp:127.0.0.1:1\" is also a proxy's "
         "listener (at 3:39)"},
    };
    for (const auto& [member, message] : cases) EXPECT_EQ(errors(top(member)), message) << member;
}

TEST(PolicyTopLevel, ControlAccessErrors) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"("control_users": "alice")",
         "p.json:2:20: /control_users: expected an array of names, got string"},
        {R"("control_groups": {"wheel": true})",
         "p.json:2:21: /control_groups: expected an array of names, got object"},
        {R"("control_users": ["alice", 7])",
         "p.json:2:30: /control_users/1: expected a non-empty string, got number"},
        {R"("control_users": [""])",
         "p.json:2:21: /control_users/0: expected a non-empty string, got \"\""},
        {R"("control_groups": ["adm\u0000in"])",
         "p.json:2:22: /control_groups/0: expected a string without control characters, got "
         "\"adm\\u0000in\""},
        {R"("control_users": ["alice", "bob", "alice"])",
         "p.json:2:37: /control_users/2: duplicate name \"alice\" (first at 2:21)"},
    };
    for (const auto& [member, message] : cases) EXPECT_EQ(errors(top(member)), message) << member;
}

TEST(PolicyTopLevel, NearMissesOfTheNewKeys) {
    EXPECT_EQ(errors(top(R"("metric": "tcp:127.0.0.1:9100")")),
              "p.json:2:3: /metric: unknown key \"metric\" (did you mean \"metrics\"?)");
    EXPECT_EQ(errors(top(R"("control_user": ["alice"])")),
              "p.json:2:3: /control_user: unknown key \"control_user\" (did you mean "
              "\"control_users\"?)");
}

}  // namespace

}  // namespace pfp::policy
