// Each seed command's policy (supervisor/compat) against the policy file docs/migration.md shows
// for it: every `<!-- command: LINE -->` marker there is followed by a ```json block, and the
// command line must build exactly the policy that block parses to.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "common/endpoint.hpp"
#include "policy/diagnostics.hpp"
#include "policy/model.hpp"
#include "policy/parse.hpp"
#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {
namespace {

constexpr std::string_view kGuide = PFPROXY_SOURCE_DIR "/docs/migration.md";
// The markers the guide has: one per tool, two more for --allow and vsockproxy's allowed_cid 0,
// and one more each for tcpfwd's IPv6 listener and udpfwd's -t.
constexpr size_t kMarkersInGuide = 12;

struct Example {
    int line = 0;  // of the marker, for messages
    std::string command_line;
    std::string json;
};

// Every marker and the ```json block after it; a marker without one is an example with no json.
std::vector<Example> guide_examples() {
    std::ifstream in{std::string(kGuide)};
    EXPECT_TRUE(in) << "cannot read " << kGuide;
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);

    constexpr std::string_view kOpen = "<!-- command: ";
    constexpr std::string_view kClose = " -->";
    std::vector<Example> out;
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string& l = lines[i];
        if (l.rfind(kOpen, 0) != 0) continue;
        Example ex;
        ex.line = static_cast<int>(i + 1);
        const size_t end = l.rfind(kClose);
        ex.command_line = l.substr(kOpen.size(), end == std::string::npos || end < kOpen.size()
                                                     ? std::string::npos
                                                     : end - kOpen.size());
        if (i + 1 < lines.size() && lines[i + 1] == "```json") {
            for (size_t j = i + 2; j < lines.size() && lines[j] != "```"; ++j) {
                ex.json += lines[j] + "\n";
            }
        }
        out.push_back(std::move(ex));
    }
    return out;
}

std::vector<std::string> words(const std::string& s) {
    std::istringstream in(s);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

std::string text(const std::optional<Endpoint>& e) {
    return e ? to_string(*e) : "(none)";
}

// Everything but the source's name and each proxy's pointer: the model as the file states it.
void expect_same_policy(const policy::Policy& built, const policy::Policy& documented) {
    EXPECT_EQ(built.user, documented.user);
    EXPECT_EQ(built.group, documented.group);
    EXPECT_EQ(built.drain_timeout, documented.drain_timeout);
    EXPECT_EQ(text(built.metrics), text(documented.metrics));
    EXPECT_EQ(built.control_users, documented.control_users);
    EXPECT_EQ(built.control_groups, documented.control_groups);
    ASSERT_EQ(built.proxies.size(), documented.proxies.size());
    for (size_t i = 0; i < built.proxies.size(); ++i) {
        const policy::Proxy& a = built.proxies[i];
        const policy::Proxy& b = documented.proxies[i];
        // same_configuration() compares every field but pointer; the lines below name the
        // difference when there is one.
        EXPECT_TRUE(policy::same_configuration(a, b)) << "proxy " << i;
        EXPECT_EQ(a.name, b.name);
        EXPECT_EQ(kind_name(a.kind), kind_name(b.kind));
        EXPECT_EQ(to_string(a.listen), to_string(b.listen));
        EXPECT_EQ(a.upstream_mode, b.upstream_mode);
        if (a.upstream_mode == policy::UpstreamMode::fixed) {
            EXPECT_EQ(to_string(a.upstream), to_string(b.upstream));
        }
        EXPECT_EQ(a.send_original_destination, b.send_original_destination);
        EXPECT_EQ(a.header, b.header);
        EXPECT_EQ(a.allow, b.allow);
        EXPECT_EQ(a.allow_any, b.allow_any);
        EXPECT_EQ(a.allowed_cids, b.allowed_cids);
        EXPECT_EQ(a.log_connections, b.log_connections);
        EXPECT_EQ(a.statistics, b.statistics);
    }
}

TEST(SeedPolicy, GuideShowsEveryCommand) {
    const auto examples = guide_examples();
    EXPECT_GE(examples.size(), kMarkersInGuide) << "markers in " << kGuide;
    std::set<std::string> commands;
    for (const auto& ex : examples) {
        const auto w = words(ex.command_line);
        if (!w.empty()) commands.insert(w.front());
    }
    // Every tool, each under its main name (port-to-vsock-transparent is an alias).
    for (const char* name : {"vsock-to-ip", "ip-to-vsock", "vsock-to-ip-transparent",
                             "ip-to-vsock-transparent", "transparent-port-to-vsock", "vsockproxy",
                             "tcpfwd", "udpfwd", "kcptcp-client", "kcptcp-server"}) {
        EXPECT_TRUE(commands.count(name)) << name << " has no policy in " << kGuide;
    }
}

TEST(SeedPolicy, EachCommandBuildsThePolicyTheGuideShows) {
    const auto examples = guide_examples();
    ASSERT_GE(examples.size(), kMarkersInGuide) << "markers in " << kGuide;
    for (const auto& ex : examples) {
        SCOPED_TRACE("migration.md:" + std::to_string(ex.line) + ": " + ex.command_line);
        ASSERT_FALSE(ex.json.empty()) << "no ```json block right after the marker";
        std::vector<std::string> args = words(ex.command_line);
        ASSERT_FALSE(args.empty());
        const std::string command = args.front();
        args.erase(args.begin());
        const auto tool = tool_for(command);
        ASSERT_TRUE(tool) << "unknown command " << command;

        auto parsed = parse_command_line(*tool, command, args);
        const auto* finished = std::get_if<Finished>(&parsed);
        ASSERT_EQ(finished, nullptr) << "the command line ends early (status " << finished->status
                                     << "): " << finished->output.out << finished->output.err;
        const SeedCommand& cmd = std::get<SeedCommand>(parsed);
        ASSERT_FALSE(cmd.late_error) << cmd.late_error->err;

        policy::Policy documented;
        try {
            documented = policy::parse_policy(ex.json, "migration.md");
        } catch (const policy::policy_error& e) {
            FAIL() << "the guide's policy is invalid: " << e.what();
        }
        expect_same_policy(cmd.policy, documented);
        // The policy is named for the command line it came from, for log lines.
        EXPECT_EQ(cmd.policy.path, "the " + command + " command line");
    }
}

// The options the guide mentions without a policy file of their own.
TEST(SeedPolicy, OptionsBecomePolicyKeys) {
    auto built = [](Tool tool, std::string_view command, const std::vector<std::string>& args) {
        auto parsed = parse_command_line(tool, command, args);
        EXPECT_TRUE(std::holds_alternative<SeedCommand>(parsed));
        return std::get<SeedCommand>(parsed).policy;
    };
    auto documented = [](const std::string& json) {
        return policy::parse_policy(json, "example.json");
    };
    expect_same_policy(
        built(
            Tool::ip_to_vsock_transparent, "ip-to-vsock-transparent",
            {"-i", "127.0.0.1:1200", "-v", "3:1200", "--header", "oyster-v4", "--user", "nobody"}),
        documented(R"({"user": "nobody", "proxies": [{"name": "ip-to-vsock-transparent",
            "listen": "tcp:127.0.0.1:1200", "upstream": "vsock:3:1200",
            "send_original_destination": true, "header": "oyster-v4",
            "log_connections": true}]})"));
    expect_same_policy(built(Tool::vsock_to_ip_transparent, "vsock-to-ip-transparent",
                             {"-v", "vsock:any:1200", "--header", "standard"}),
                       documented(R"({"proxies": [{"name": "vsock-to-ip-transparent",
            "listen": "vsock:any:1200", "upstream": "destination-header",
            "allow": "any", "log_connections": true}]})"));
    expect_same_policy(built(Tool::transparent_port_to_vsock, "port-to-vsock-transparent",
                             {"-i", "[::1]:1200", "-v", "+88"}),
                       documented(R"({"proxies": [{"name": "port-to-vsock-transparent",
            "listen": "tcp:[::1]:1200", "upstream": "vsock:88:original-port",
            "log_connections": true}]})"));
}

// kcptcp: the key given with -K is kept out of the policy document (which names it only as
// psk_env) and out of the environment; flags without an effect leave the policy as it was.
TEST(SeedPolicy, KcptcpKeepsAKeyOutOfThePolicy) {
    const std::string key = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";
    auto parsed = parse_command_line(
        Tool::kcptcp_client, "kcptcp-client",
        {"-N", "-r", "-R", "-6", "[::1]:2022", "-K", key, "[::1]:4000", "-A", "1", "-M1200"});
    ASSERT_TRUE(std::holds_alternative<SeedCommand>(parsed))
        << std::get<Finished>(parsed).output.err;
    const SeedCommand& cmd = std::get<SeedCommand>(parsed);
    EXPECT_EQ(cmd.startup.out, "");
    EXPECT_EQ(cmd.startup.err.rfind("kcptcp-client: warning: a key given with -K is visible", 0),
              0u)
        << cmd.startup.err;
    EXPECT_EQ(cmd.startup.err.find(key), std::string::npos);
    ASSERT_EQ(cmd.private_variables.size(), 1u);
    EXPECT_EQ(cmd.private_variables.begin()->second, key);
    EXPECT_EQ(std::getenv(cmd.private_variables.begin()->first.c_str()), nullptr);
    EXPECT_TRUE(cmd.hangup_stops);
    ASSERT_EQ(cmd.policy.proxies.size(), 1u);
    const policy::Proxy& p = cmd.policy.proxies.front();
    EXPECT_EQ(p.psk, "") << "read at start by run(), as pf-proxyd reads a file's keys";
    EXPECT_EQ(p.psk_env, cmd.private_variables.begin()->first);
    expect_same_policy(cmd.policy, policy::parse_policy(R"({"proxies": [{"name": "kcptcp-client",
        "tunnel": "kcp", "listen": "tcp:[::1]:2022", "upstream": "udp:[::1]:4000",
        "ipv6_only": true, "mtu": 1200, "kcp": {"nodelay": true},
        "psk_env": "PFPROXY_COMPAT_KCP_PSK", "log_connections": true}]})",
                                                        "example.json"));
    EXPECT_EQ(kind_name(p.kind), "kcp-client");

    // The server: the defaults, a bare port, a host name upstream; no key, no warning.
    parsed = parse_command_line(Tool::kcptcp_server, "kcptcp-server", {"4000", "localhost:22"});
    ASSERT_TRUE(std::holds_alternative<SeedCommand>(parsed));
    const SeedCommand& server = std::get<SeedCommand>(parsed);
    EXPECT_EQ(server.startup.err, "");
    EXPECT_TRUE(server.private_variables.empty());
    expect_same_policy(server.policy, policy::parse_policy(R"({"proxies": [{"name":
        "kcptcp-server", "tunnel": "kcp", "listen": "udp:0.0.0.0:4000",
        "upstream": "tcp:127.0.0.1:22", "log_connections": true}]})",
                                                           "example.json"));
    EXPECT_EQ(kind_name(server.policy.proxies.front().kind), "kcp-server");
}

// A command whose policy the parser refuses says so in one line, before anything is printed.
TEST(SeedPolicy, AnInvalidPolicyIsAOneLineError) {
    auto parsed = parse_command_line(Tool::ip_to_vsock, "ip-to-vsock",
                                     {"-i", "127.0.0.1:1200", "-v", "3:1200", "--user", ""});
    ASSERT_TRUE(std::holds_alternative<Finished>(parsed));
    const Finished& f = std::get<Finished>(parsed);
    EXPECT_EQ(f.status, 1);
    EXPECT_EQ(f.output.out, "");
    EXPECT_EQ(f.output.err.rfind("Error: the ip-to-vsock command line makes an invalid policy: "
                                 "/user: ",
                                 0),
              0u)
        << f.output.err;
    EXPECT_EQ(f.output.err.find('\n'), f.output.err.size() - 1) << f.output.err;

    // A policy document is UTF-8; the command line is bytes.
    parsed =
        parse_command_line(Tool::vsockproxy, "vsockproxy", {"1", "2", "3", "0", "--user", "\xff"});
    ASSERT_TRUE(std::holds_alternative<Finished>(parsed));
    EXPECT_EQ(std::get<Finished>(parsed).status, 1);
    EXPECT_EQ(std::get<Finished>(parsed).output.err,
              "Error: the vsockproxy command line makes an invalid policy: an option value is not "
              "valid UTF-8\n");
}

}  // namespace
}  // namespace pfp::compat
