#include "supervisor/compat/portfwd.hpp"

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/endpoint.hpp"
#include "common/host_endpoint.hpp"
#include "supervisor/compat/getopt_scan.hpp"
#include "supervisor/compat/seed_policy.hpp"

namespace pfp::compat {
namespace {

// The seed's options, in its help's order.
constexpr Flag kTcpFlags[] = {
    {'d', nullptr, "run in background (daemonize)"},
    {'p', "<pidfile>", "write PID to file"},
    {'b', nullptr,
     "base-addr mode (Linux TPROXY/original-dst based address math; expert use only)"},
    {'r', nullptr, "set SO_REUSEADDR on listener socket"},
    {'R', nullptr, "set SO_REUSEPORT on listener socket"},
    {'6', nullptr, "for IPv6 listener, set IPV6_V6ONLY"},
    {'h', nullptr, "show help"},
};
constexpr Flag kUdpFlags[] = {
    {'t', "<seconds>", "proxy session timeout (default: 60)"},
    {'d', nullptr, "run in background (daemonize)"},
    {'o', nullptr, "for IPv6 listener, set IPV6_V6ONLY"},
    {'r', nullptr, "set SO_REUSEADDR before binding listener"},
    {'R', nullptr, "set SO_REUSEPORT before binding listener"},
    {'H', "<size>", "hash table size for UDP connection tracking (default: 4093)"},
    {'p', "<pidfile>", "write PID to file"},
    {'h', nullptr, "show help"},
};

std::span<const Flag> flags(Tool tool) {
    if (tool == Tool::tcpfwd) return kTcpFlags;
    return kUdpFlags;
}

std::string usage_line(Tool tool, std::string_view command) {
    return tool == Tool::tcpfwd
               ? std::string(command) + " [options] <local_addr:local_port> <dest_addr:dest_port>"
               : std::string(command) + " <local_addr:local_port> <dest_addr:dest_port> [options]";
}

std::string help(Tool tool, std::string_view command) {
    std::string out = "Usage:\n  " + usage_line(tool, command) + "\n\nOptions:\n";
    for (const Flag& f : flags(tool)) out += help_line(f);
    return out;
}

}  // namespace

// "1022" (0.0.0.0:1022), "127.0.0.1:1022", "[::]:1022", "localhost:1022" (127.0.0.1, as the
// deployed tools' tests assumed), and for the destination any host name, which the supervisor
// resolves and refreshes. A local address is bound once, before any resolver runs: numeric only.
std::variant<std::string, Endpoint> portfwd_address(std::string_view text, Scheme scheme,
                                                    std::string_view what, bool names) {
    std::string t(text);
    if (!t.empty() && t.find_first_not_of("0123456789") == std::string::npos) t = "0.0.0.0:" + t;
    if (t.starts_with("localhost:")) t = "127.0.0.1:" + t.substr(10);
    if (t.find_first_of("[]") == std::string::npos && t.find(':') != std::string::npos) {
        const std::string host = t.substr(0, t.rfind(':'));
        if (host.find_first_not_of("0123456789.") != std::string::npos) {
            if (!names)
                return "invalid " + std::string(what) + " '" + std::string(text) +
                       "': expected a numeric address (or localhost) to listen on";
            auto named = parse_host_endpoint(std::string(scheme_name(scheme)) + ":" + t);
            if (!named)
                return "invalid " + std::string(what) + " '" + std::string(text) +
                       "': expected HOST:PORT with a host name and a port 1-65535";
            return *named;
        }
    }
    try {
        Endpoint e = parse_endpoint_or_bare(std::string(scheme_name(scheme)) + ":" + t, scheme);
        if (e.port == 0)
            return "invalid " + std::string(what) + " '" + std::string(text) + "': port 0";
        return e;
    } catch (const std::exception& ex) {
        return "invalid " + std::string(what) + " '" + std::string(text) + "': " + ex.what();
    }
}

std::variant<Finished, SeedCommand> parse_portfwd(Tool tool, std::string_view command,
                                                  const std::vector<std::string>& args) {
    const std::span<const Flag> tables[] = {flags(tool)};
    auto scanned = scan_getopt(args, tables, {}, true);
    if (auto* why = std::get_if<std::string>(&scanned)) return command_error(command, *why);
    const ScannedArgs& s = std::get<ScannedArgs>(scanned);
    if (s.help) return Finished{0, {help(tool, command), ""}};
    const std::vector<std::string>& positional = s.positional;
    std::map<char, std::string> given;  // the last of a repeated option wins, as with getopt
    for (const GivenOption& g : s.options) given[g.name[0]] = g.value;
    if (positional.size() != 2)
        return command_error(command,
                             "expected <local_addr:local_port> <dest_addr:dest_port>, got " +
                                 std::to_string(positional.size()) +
                                 " address(es) (usage: " + usage_line(tool, command) + ")");
    const Scheme scheme = tool == Tool::tcpfwd ? Scheme::tcp : Scheme::udp;
    auto local = portfwd_address(positional[0], scheme, "local address", false);
    if (auto* why = std::get_if<std::string>(&local)) return command_error(command, *why);
    auto dest = portfwd_address(positional[1], scheme, "destination address", true);
    if (auto* why = std::get_if<std::string>(&dest)) return command_error(command, *why);
    const Endpoint& listen = std::get<Endpoint>(local);
    nlohmann::ordered_json proxy = {{"listen", to_string(listen)},
                                    {"upstream", to_string(std::get<Endpoint>(dest))}};
    // IPV6_V6ONLY: "[::]:PORT" takes IPv6 only. Like the deployed tools, the flag means nothing
    // to an IPv4 listener and is ignored there.
    const char v6only = tool == Tool::tcpfwd ? '6' : 'o';
    if (given.count(v6only) && listen.addr.family() == AF_INET6) proxy["ipv6_only"] = true;
    if (given.count('b')) {
        // The redirected port moves the address: the deployed tool connected wherever that led,
        // so the command writes the open allow list a policy must spell out (and is warned of).
        proxy["base_address"] = true;
        proxy["allow"] = "any";
    }
    if (tool == Tool::udpfwd) {
        uint64_t n = 0;
        if (auto t = given.find('t'); t != given.end()) {
            if (!decimal_in(t->second, 0, 7 * 24 * 3600, n))
                return command_error(command,
                                     "invalid -t '" + t->second +
                                         "': expected seconds 0-604800 (0: never time out)");
            proxy["idle_timeout"] = n;
        }
        // -H sized the deployed tool's hash buckets; the flow table here needs no tuning.
        if (auto h = given.find('H'); h != given.end() && !decimal_in(h->second, 0, 1'000'000, n))
            return command_error(command,
                                 "invalid -H '" + h->second + "': expected a number 1-1000000");
    }
    SeedCommand cmd;
    cmd.tool = tool;
    cmd.command = std::string(command);
    cmd.daemonize = given.count('d') != 0;
    if (auto p = given.find('p'); p != given.end()) {
        if (p->second.empty()) return command_error(command, "invalid -p '': expected a file name");
        cmd.pid_file = p->second;
    }
    cmd.hangup_stops = true;
    return with_policy(std::move(cmd), std::nullopt, std::move(proxy));
}

Output portfwd_bind_failure(std::string_view command, const SeedCommand& cmd, int err) {
    return {"", std::string(command) + ": cannot bind " +
                    to_string(cmd.policy.proxies.front().listen) + ": " + std::strerror(err) +
                    "\n"};
}

}  // namespace pfp::compat
