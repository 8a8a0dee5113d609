// The status snapshot's three renderings: JSON (round trip, strict reading), the table
// pf-proxyctl prints, and the Prometheus text format (parsed back and checked value by value).
#include "supervisor/status.hpp"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace pfp::supervisor {
namespace {

using json = nlohmann::json;

DaemonStatus sample() {
    DaemonStatus s;
    s.version = "0.1.0";
    s.pid = 4242;
    s.policy = "/etc/pf-proxy/policy.json";
    s.policy_generation = 3;
    s.state = "running";
    s.uptime_seconds = 7384.25;  // 2h 3m 4.25s

    ProxyStatus web;
    web.name = "web";
    web.kind = "tcp-forward";
    web.listen = "tcp:127.0.0.1:8080";
    web.upstream = "tcp:127.0.0.1:9000";
    web.state = "running";
    web.generation = 2;
    web.restarts = 1;
    web.last_exit = "killed by SIGSYS (seccomp violation)";
    web.workers = {{101, 0, 2, "running"}, {102, 1, 2, "running"}};
    web.counters = {.accepted = 120,
                    .active = 3,
                    .bytes_up = 1536,
                    .bytes_down = 5ull << 30,
                    .connect_failures = 4,
                    .accept_errors = 1,
                    .denied = 2,
                    .datagram = std::nullopt,
                    .packet = std::nullopt,
                    .tunnel = std::nullopt};

    ProxyStatus api;
    api.name = "api";
    api.kind = "vsock-to-ip";
    api.listen = "vsock:any:5000";
    api.upstream = "tcp:10.0.0.1:443";
    api.state = "stopped";
    api.generation = 1;
    api.counters.accepted = UINT64_MAX;  // counters are u64 end to end
    s.proxies = {web, api};
    return s;
}

std::string from_json_error(const json& j) {
    try {
        (void)status_from_json(j);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "<valid>";
}

// ---- JSON ---------------------------------------------------------------------------------------

TEST(StatusJson, RoundTrips) {
    const DaemonStatus s = sample();
    EXPECT_EQ(status_from_json(to_json(s)), s);
    // And through text, as pf-proxyctl receives it.
    EXPECT_EQ(status_from_json(json::parse(to_json(s).dump())), s);
    EXPECT_EQ(status_from_json(to_json(DaemonStatus{})), DaemonStatus{});
}

TEST(StatusJson, MemberNames) {
    const json j = to_json(sample());
    EXPECT_EQ(j["policy_generation"], 3);
    EXPECT_EQ(j["uptime_seconds"], 7384.25);
    EXPECT_EQ(j["proxies"][0]["workers"][1]["pid"], 102);
    EXPECT_EQ(j["proxies"][0]["counters"]["bytes_down"], 5ull << 30);
    EXPECT_EQ(j["proxies"][0]["last_exit"], "killed by SIGSYS (seccomp violation)");
    EXPECT_EQ(j["proxies"][1]["counters"]["accepted"], UINT64_MAX);
    EXPECT_TRUE(j["proxies"][1]["workers"].is_array());
}

TEST(StatusJson, StrictReading) {
    const json good = to_json(sample());
    const auto without = [&](const json::json_pointer& p) {
        json j = good;
        j[p.parent_pointer()].erase(p.back());
        return j;
    };
    const auto with = [&](const json::json_pointer& p, const json& v) {
        json j = good;
        j[p] = v;
        return j;
    };
    EXPECT_EQ(from_json_error(json::array()), "status: the status must be an object, got array");
    EXPECT_EQ(from_json_error(without("/version"_json_pointer)),
              "status: member \"version\" is missing");
    EXPECT_EQ(from_json_error(without("/proxies/1/counters/denied"_json_pointer)),
              "status: member \"proxies[1].counters.denied\" is missing");
    EXPECT_EQ(from_json_error(without("/proxies/0/workers/1/state"_json_pointer)),
              "status: member \"proxies[0].workers[1].state\" is missing");
    EXPECT_EQ(from_json_error(with("/pid"_json_pointer, "4242")),
              "status: member \"pid\" must be an integer -1..2147483647, got string");
    EXPECT_EQ(from_json_error(with("/policy_generation"_json_pointer, 1.5)),
              "status: member \"policy_generation\" must be an integer 0..2147483647, got 1.5");
    EXPECT_EQ(from_json_error(with("/proxies/0/counters/active"_json_pointer, -1)),
              "status: member \"proxies[0].counters.active\" must be an unsigned integer, got -1");
    EXPECT_EQ(from_json_error(with("/proxies/0/restarts"_json_pointer, nullptr)),
              "status: member \"proxies[0].restarts\" must be an unsigned integer, got null");
    EXPECT_EQ(from_json_error(with("/proxies/0/workers"_json_pointer, json::object())),
              "status: member \"proxies[0].workers\" must be an array, got object");
    EXPECT_EQ(from_json_error(with("/proxies/0/counters"_json_pointer, 7)),
              "status: \"proxies[0].counters\" must be an object, got number");
    EXPECT_EQ(from_json_error(with("/uptime_seconds"_json_pointer, -2)),
              "status: member \"uptime_seconds\" must be a number >= 0, got -2");
    EXPECT_EQ(from_json_error(with("/proxies/0/state"_json_pointer, true)),
              "status: member \"proxies[0].state\" must be a string, got true");
    // Members a newer pf-proxyd may add are not an error.
    EXPECT_EQ(status_from_json(with("/proxies/0/colour"_json_pointer, "red")), sample());
}

// ---- Table --------------------------------------------------------------------------------------

TEST(StatusTable, AlignedColumns) {
    EXPECT_EQ(render_table(sample()),
              "pf-proxyd 0.1.0, pid 4242, running, policy /etc/pf-proxy/policy.json (generation "
              "3), up 2h 3m\n"
              "PROXY  KIND         STATE    GEN  PIDS     RESTARTS  ACTIVE                 TOTAL  "
              "     UP     DOWN  DENIED  ERRORS  LAST EXIT\n"
              "web    tcp-forward  running    2  101,102         1       3                   120  "
              "1.5 KiB  5.0 GiB       2       5  killed by SIGSYS (seccomp violation)\n"
              "api    vsock-to-ip  stopped    1  -               0       0  18446744073709551615  "
              "    0 B      0 B       0       0  -\n");
}

TEST(StatusTable, NoProxies) {
    DaemonStatus s = sample();
    s.proxies.clear();
    s.uptime_seconds = 59.9;
    s.state = "stopping";
    EXPECT_EQ(render_table(s),
              "pf-proxyd 0.1.0, pid 4242, stopping, policy /etc/pf-proxy/policy.json (generation "
              "3), up 59s\nno proxies\n");
}

// The cell of `column` in the first proxy's row: columns are found by the header's positions.
std::string cell_of(const std::string& table, const std::string& column) {
    std::istringstream in(table);
    std::string header_line, head, row;
    std::getline(in, header_line);
    std::getline(in, head);
    std::getline(in, row);
    const size_t at = head.find(column);
    size_t end = at + column.size();
    // Right-aligned cells end where their header ends; left-aligned ones start where it starts.
    const bool right = row[end - 1] != ' ' && (end >= row.size() || row[end] == ' ');
    if (right) {
        size_t start = row.rfind("  ", end - 1);
        return row.substr(start + 2, end - start - 2);
    }
    return row.substr(at, row.find("  ", at) - at);
}

TEST(StatusTable, HumanUnits) {
    const std::vector<std::pair<uint64_t, std::string>> cases = {
        {0, "0 B"},
        {1023, "1023 B"},
        {1024, "1.0 KiB"},
        {1536, "1.5 KiB"},
        {1048575, "1.0 MiB"},  // 1023.999 KiB: not "1024.0 KiB"
        {10ull << 20, "10.0 MiB"},
        {(3ull << 40) + (1ull << 39), "3.5 TiB"},
        {UINT64_MAX, "16.0 EiB"},
    };
    for (const auto& [bytes, text] : cases) {
        DaemonStatus s = sample();
        s.proxies.resize(1);
        s.proxies[0].counters.bytes_up = bytes;
        EXPECT_EQ(cell_of(render_table(s), "UP"), text) << bytes;
    }
    const std::vector<std::pair<double, std::string>> uptimes = {
        {0, "0s"},        {61, "1m 1s"}, {3600, "1h 0m"},
        {90061, "1d 1h"}, {-5, "0s"},    {1e300, "37037d 0h"}};
    for (const auto& [seconds, text] : uptimes) {
        DaemonStatus s = sample();
        s.uptime_seconds = seconds;
        const std::string table = render_table(s);
        EXPECT_EQ(table.substr(0, table.find('\n')).substr(table.find(", up ") + 5), text);
    }
}

TEST(StatusTable, FieldsStayOnOneLine) {
    DaemonStatus s = sample();
    s.proxies.resize(1);
    s.proxies[0].last_exit = "bad\n\x1b[31mred";
    s.policy = "/tmp/a\tb";
    const std::string table = render_table(s);
    EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 3);
    EXPECT_NE(table.find("policy /tmp/a\\x09b"), std::string::npos);
    EXPECT_NE(table.find("bad\\x0a\\x1b[31mred\n"), std::string::npos);
}

// ---- Prometheus ---------------------------------------------------------------------------------

struct Family {
    std::string help, type;
    std::map<std::string, std::string> samples;  // canonical labels ("" or k="v",...) -> value
};

// A strict reader of text format 0.0.4 for what render_prometheus writes: HELP and TYPE once per
// family, before its samples, every sample of a family together. Label values are unescaped and
// written back canonically, so a test can look samples up by their labels.
std::map<std::string, Family> parse_exposition(const std::string& text) {
    std::map<std::string, Family> out;
    EXPECT_TRUE(text.ends_with('\n'));
    std::istringstream in(text);
    std::string line, current;
    std::set<std::string> finished;
    const std::regex name_re("[a-zA-Z_:][a-zA-Z0-9_:]*");
    while (std::getline(in, line)) {
        if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
            const bool help = line[2] == 'H';
            const std::string rest = line.substr(7);
            const std::string name = rest.substr(0, rest.find(' '));
            EXPECT_TRUE(std::regex_match(name, name_re)) << line;
            if (name != current) {
                EXPECT_TRUE(help) << "HELP must come first: " << line;
                EXPECT_FALSE(finished.count(name)) << "family repeated: " << line;
                if (!current.empty()) finished.insert(current);
                current = name;
            }
            Family& f = out[name];
            std::string& field = help ? f.help : f.type;
            EXPECT_TRUE(field.empty()) << "twice: " << line;
            field = rest.substr(name.size() + 1);
            continue;
        }
        if (line.empty() || line[0] == '#') {
            ADD_FAILURE() << "not a sample: " << line;
            continue;
        }
        size_t i = 0;
        while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
        const std::string name = line.substr(0, i);
        EXPECT_EQ(name, current) << "sample outside its family: " << line;
        std::string labels;
        if (line[i] == '{') {
            ++i;
            while (line[i] != '}') {
                const size_t eq = line.find('=', i);
                const std::string key = line.substr(i, eq - i);
                EXPECT_TRUE(std::regex_match(key, name_re)) << line;
                EXPECT_EQ(line[eq + 1], '"') << line;
                std::string value;
                for (i = eq + 2; line[i] != '"'; ++i) {
                    if (line[i] == '\\') {
                        const char c = line[++i];
                        EXPECT_TRUE(c == '\\' || c == '"' || c == 'n') << line;
                        value += c == 'n' ? '\n' : c;
                    } else {
                        value += line[i];
                    }
                }
                ++i;
                if (line[i] == ',') ++i;
                labels += (labels.empty() ? "" : ",") + key + "=" + value;
            }
            ++i;
        }
        EXPECT_EQ(line[i], ' ') << line;
        const std::string value = line.substr(i + 1);
        EXPECT_FALSE(value.empty() || value.find(' ') != std::string::npos) << line;
        EXPECT_FALSE(out[name].type.empty()) << "no TYPE before " << line;
        EXPECT_TRUE(out[name].samples.emplace(labels, value).second) << "repeated: " << line;
    }
    return out;
}

TEST(StatusPrometheus, EveryValue) {
    const auto families = parse_exposition(render_prometheus(sample()));
    const std::string web = "proxy=web,kind=tcp-forward";
    const std::string api = "proxy=api,kind=vsock-to-ip";
    using Samples = std::map<std::string, std::string>;
    const std::map<std::string, std::pair<std::string, Samples>> expected = {
        {"pfproxy_uptime_seconds", {"gauge", {{"", "7384.25"}}}},
        {"pfproxy_policy_generation", {"gauge", {{"", "3"}}}},
        {"pfproxy_proxy_up", {"gauge", {{web, "1"}, {api, "0"}}}},
        {"pfproxy_proxy_generation", {"gauge", {{web, "2"}, {api, "1"}}}},
        {"pfproxy_workers", {"gauge", {{web, "2"}, {api, "0"}}}},
        {"pfproxy_worker_restarts_total", {"counter", {{web, "1"}, {api, "0"}}}},
        {"pfproxy_connections_accepted_total",
         {"counter", {{web, "120"}, {api, "18446744073709551615"}}}},
        {"pfproxy_connections_active", {"gauge", {{web, "3"}, {api, "0"}}}},
        {"pfproxy_bytes_total",
         {"counter",
          {{web + ",direction=up", "1536"},
           {web + ",direction=down", "5368709120"},
           {api + ",direction=up", "0"},
           {api + ",direction=down", "0"}}}},
        {"pfproxy_connect_failures_total", {"counter", {{web, "4"}, {api, "0"}}}},
        {"pfproxy_accept_errors_total", {"counter", {{web, "1"}, {api, "0"}}}},
        {"pfproxy_connections_denied_total", {"counter", {{web, "2"}, {api, "0"}}}},
    };
    EXPECT_EQ(families.size(), expected.size());
    for (const auto& [name, want] : expected) {
        const auto it = families.find(name);
        ASSERT_NE(it, families.end()) << name;
        EXPECT_EQ(it->second.type, want.first) << name;
        EXPECT_FALSE(it->second.help.empty()) << name;
        EXPECT_EQ(it->second.samples, want.second) << name;
    }
}

TEST(StatusPrometheus, ExactLines) {
    const std::string text = render_prometheus(sample());
    EXPECT_TRUE(text.starts_with("# HELP pfproxy_uptime_seconds "));
    EXPECT_NE(text.find("\n# TYPE pfproxy_bytes_total counter\n"
                        "pfproxy_bytes_total{proxy=\"web\",kind=\"tcp-forward\",direction=\"up\"} "
                        "1536\n"),
              std::string::npos);
    EXPECT_NE(text.find("\npfproxy_proxy_up{proxy=\"api\",kind=\"vsock-to-ip\"} 0\n"),
              std::string::npos);
}

TEST(StatusPrometheus, ReloadingIsUp) {
    DaemonStatus s = sample();
    s.proxies[0].state = "reloading";
    s.proxies[1].state = "failed";
    const auto up = parse_exposition(render_prometheus(s))["pfproxy_proxy_up"].samples;
    EXPECT_EQ(up.at("proxy=web,kind=tcp-forward"), "1");
    EXPECT_EQ(up.at("proxy=api,kind=vsock-to-ip"), "0");
}

TEST(StatusPrometheus, LabelValuesAreEscaped) {
    DaemonStatus s = sample();
    s.proxies.resize(1);
    s.proxies[0].name = "a\\b\"c\nd";
    const std::string text = render_prometheus(s);
    EXPECT_NE(text.find("pfproxy_workers{proxy=\"a\\\\b\\\"c\\nd\",kind=\"tcp-forward\"} 2\n"),
              std::string::npos);
    const auto families = parse_exposition(text);
    EXPECT_EQ(families.at("pfproxy_workers").samples.at("proxy=a\\b\"c\nd,kind=tcp-forward"), "2");
}

TEST(StatusPrometheus, NoProxiesStillDescribesEveryFamily) {
    DaemonStatus s = sample();
    s.proxies.clear();
    s.uptime_seconds = 0.5;
    const auto families = parse_exposition(render_prometheus(s));
    EXPECT_EQ(families.size(), 12u);
    EXPECT_EQ(families.at("pfproxy_uptime_seconds").samples.at(""), "0.5");
    EXPECT_TRUE(families.at("pfproxy_bytes_total").samples.empty());
}

}  // namespace
}  // namespace pfp::supervisor
