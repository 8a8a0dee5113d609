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
    "name, listen, upstream, workers, max_connections, backlog, connect_timeout, idle_timeout, "
    "tcp_nodelay, keepalive, splice, restart";

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
    EXPECT_EQ(web.idle_timeout, milliseconds(0));
    EXPECT_TRUE(web.tcp_nodelay);
    EXPECT_EQ(web.keepalive, Keepalive{});
    EXPECT_TRUE(web.keepalive.enabled);
    EXPECT_TRUE(web.splice);
    EXPECT_EQ(web.restart, RestartPolicy{});
    EXPECT_EQ(web.pointer, "/proxies/0");
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
              "drain_timeout, proxies");
}

TEST(PolicyErrors, LongKeysAreShortenedInDiagnostics) {
    const std::string key(300, 'k');
    EXPECT_EQ(errors("{\n  \"" + key + "\": 1,\n  \"proxies\": [" + std::string(kProxy) + "]\n}"),
              "p.json:2:3: /" + std::string(255, 'k') + "...: unknown key \"" +
                  std::string(64, 'k') + "...\", expected one of: user, group, drain_timeout, " +
                  "proxies");
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
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("unix:/run/web.sock")", R"("tcp:127.0.0.1:1")")),
              "p.json:5:17: /proxies/0/listen: a unix endpoint is not supported yet "
              "(supported: tcp)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("tcp:127.0.0.1:1")", R"("udp:127.0.0.1:53")")),
              "p.json:6:19: /proxies/0/upstream: a udp endpoint is not supported yet "
              "(supported: tcp)");
    EXPECT_EQ(errors(proxy_policy(R"("web")", R"("nfqueue:3")", R"("vsock:3:5000")")),
              "p.json:5:17: /proxies/0/listen: an nfqueue endpoint is not supported yet "
              "(supported: tcp)\n"
              "p.json:6:19: /proxies/0/upstream: a vsock endpoint is not supported yet "
              "(supported: tcp)");
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
      "upstream": "unix:/run/api.sock",
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
              "p.json:14:19: /proxies/1/upstream: a unix endpoint is not supported yet "
              "(supported: tcp)\n"
              "p.json:15:29: /proxies/1/keepalive/idle: expected a duration (a number of seconds "
              "or a string such as \"250ms\", \"10s\", \"5m\", \"1h\"), got \"1x\"\n"
              "p.json:15:44: /proxies/1/keepalive/count: expected an integer 1-127, got 500\n"
              "p.json:16:60: /proxies/1/restart/backoff_max: expected a duration >= "
              "backoff_initial (10s), got \"5s\"\n"
              "p.json:19:3: /colour: unknown key \"colour\", expected one of: user, group, "
              "drain_timeout, proxies");
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
              "drain_timeout, proxies");
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

}  // namespace
}  // namespace pfp::policy
