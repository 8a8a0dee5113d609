#include "supervisor/compat/kcptcp.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>

#include "common/endpoint.hpp"
#include "supervisor/compat/getopt_scan.hpp"
#include "supervisor/compat/portfwd.hpp"
#include "supervisor/compat/seed_policy.hpp"

namespace pfp::compat {
namespace {

// The seed's options, in its help's order.
constexpr Flag kSeedFlags[] = {
    {'d', nullptr, "run in background (daemonize)"},
    {'p', "<pidfile>", "write PID to file"},
    {'r', nullptr, "set SO_REUSEADDR on listener socket"},
    {'R', nullptr, "set SO_REUSEPORT on listener socket"},
    {'6', nullptr, "for IPv6 listener, set IPV6_V6ONLY"},
    {'S', "<bytes>", "SO_RCVBUF/SO_SNDBUF size (default build-time)"},
    {'M', "<mtu>", "KCP MTU (default 1350; tune to avoid IP fragmentation)"},
    {'K', "<hex>", "32-byte PSK in hex (ChaCha20-Poly1305); enables encryption"},
    {'h', nullptr, "show help"},
};
// The spellings and KCP tuning flags the deployed tool's parser took besides the documented ones.
constexpr Flag kDeployedFlags[] = {
    {'b', "<bytes>", "the same as -S"},
    {'A', "<0|1>", "KCP nodelay (default 1)"},
    {'n', "<0|1>", "the same as -A"},
    {'I', "<ms>", "KCP interval in ms (default 10)"},
    {'X', "<n>", "KCP fast resend (default 2)"},
    {'C', "<0|1>", "KCP no congestion control (default 1)"},
    {'w', "<sndwnd>", "KCP send window in packets (default 1024)"},
    {'W', "<rcvwnd>", "KCP recv window in packets (default 1024)"},
    {'N', nullptr, "enable TCP_NODELAY on TCP sockets (always on here)"},
};

constexpr LongFlag kLongOptions[] = {
    {"psk-file", "<path>", "read the PSK (64 hex digits) from a file only its owner can read"},
    {"psk-env", "<name>", "read the PSK (64 hex digits) from this environment variable"},
};

// Limits of the values, as the policy's keys take them (docs/policy.md, "kcp").
constexpr uint64_t kMinSockbuf = 4096, kMaxSockbuf = 1ULL << 30;
constexpr uint64_t kMinMtu = 576, kMaxMtu = 1500;
constexpr uint64_t kMinInterval = 1, kMaxInterval = 5000;
constexpr uint64_t kMaxResend = 100;
constexpr uint64_t kMinWindow = 1, kMaxWindow = 65535;

std::string usage_line(Tool tool, std::string_view command) {
    return std::string(command) + (tool == Tool::kcptcp_client
                                       ? " [options] <local_tcp_addr:port> <remote_udp_addr:port>"
                                       : " [options] <local_udp_addr:port> <target_tcp_addr:port>");
}

std::string help(Tool tool, std::string_view command) {
    std::string out = "Usage:\n  " + usage_line(tool, command) + "\n\nOptions:\n";
    for (const Flag& f : kSeedFlags) out += help_line(f);
    out += "\nAlso accepted (the deployed tool's spellings and KCP tuning):\n";
    for (const Flag& f : kDeployedFlags) out += help_line(f);
    out += "\npf-proxy additions (a key given with -K is visible in ps):\n";
    for (const LongFlag& o : kLongOptions)
        out += help_line(std::string("--") + o.name + " " + o.value, o.help);
    out += tool == Tool::kcptcp_client
               ? "\nNotes:\n  - Listens on a local TCP address and forwards streams over UDP "
                 "using KCP.\n  - AEAD encryption is enabled only when a PSK is given on both "
                 "client and server.\n"
               : "\nNotes:\n  - Listens on a UDP address, accepts KCP sessions, and bridges to a "
                 "target TCP service.\n  - AEAD requires the same PSK as the client for "
                 "handshakes to succeed.\n";
    return out;
}

constexpr std::span<const Flag> kShortFlags[] = {kSeedFlags, kDeployedFlags};

std::variant<std::string, ScannedArgs> scan(const std::vector<std::string>& args) {
    return scan_getopt(args, kShortFlags, kLongOptions, false);
}

// A PSK is exactly 64 hex digits. The message never repeats the text: it may be a key with a typo.
std::optional<std::string> psk_problem(const std::string& hex) {
    if (hex.size() != 64)
        return "expected 64 hex digits (a 32-byte key), got " + std::to_string(hex.size()) +
               " characters";
    const size_t bad = hex.find_first_not_of("0123456789abcdefABCDEF");
    if (bad != std::string::npos)
        return "expected 64 hex digits (a 32-byte key), character " + std::to_string(bad + 1) +
               " is not a hex digit";
    return std::nullopt;
}

// An environment variable name a shell can set: letters, digits, underscores, not a digit first.
bool variable_name(const std::string& s) {
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
}

}  // namespace

std::variant<Finished, SeedCommand> parse_kcptcp(Tool tool, std::string_view command,
                                                 const std::vector<std::string>& args) {
    auto scanned = scan(args);
    if (auto* why = std::get_if<std::string>(&scanned)) return command_error(command, *why);
    const ScannedArgs& s = std::get<ScannedArgs>(scanned);
    if (s.help) return Finished{0, {help(tool, command), ""}};
    // The last of a repeated option wins, as with getopt; -b is -S, -n is -A.
    std::map<std::string, std::string> given;
    for (const GivenOption& g : s.options) {
        std::string name = g.name == "b" ? "S" : g.name == "n" ? "A" : g.name;
        given[name] = g.value;
    }
    if (s.positional.size() != 2)
        return command_error(command, "expected two addresses, got " +
                                          std::to_string(s.positional.size()) +
                                          " (usage: " + usage_line(tool, command) + ")");
    const bool client = tool == Tool::kcptcp_client;
    const Scheme local_scheme = client ? Scheme::tcp : Scheme::udp;
    const Scheme remote_scheme = client ? Scheme::udp : Scheme::tcp;
    auto local = portfwd_address(s.positional[0], local_scheme,
                                 client ? "local TCP address" : "local UDP address", false);
    if (auto* why = std::get_if<std::string>(&local)) return command_error(command, *why);
    auto remote = portfwd_address(s.positional[1], remote_scheme,
                                  client ? "remote UDP address" : "target TCP address", true);
    if (auto* why = std::get_if<std::string>(&remote)) return command_error(command, *why);
    const Endpoint& listen = std::get<Endpoint>(local);

    nlohmann::ordered_json proxy = {{"tunnel", "kcp"},
                                    {"listen", to_string(listen)},
                                    {"upstream", to_string(std::get<Endpoint>(remote))}};
    // IPV6_V6ONLY: "[::]:PORT" takes IPv6 only; the flag means nothing to an IPv4 listener.
    if (given.count("6") && listen.addr.family() == AF_INET6) proxy["ipv6_only"] = true;

    uint64_t n = 0;
    auto numeric = [&](const char* letter, uint64_t min, uint64_t max,
                       const char* what) -> std::optional<std::string> {
        auto it = given.find(letter);
        if (it == given.end() || decimal_in(it->second, min, max, n)) return std::nullopt;
        return "invalid -" + std::string(letter) + " '" + it->second + "': expected " + what + " " +
               std::to_string(min) + "-" + std::to_string(max);
    };
    struct Numeric {
        const char* letter;
        uint64_t min, max;
        const char* what;
        const char* key;  // in "kcp"; nullptr: a proxy key of its own
        bool boolean;
    };
    const Numeric numerics[] = {
        {"S", kMinSockbuf, kMaxSockbuf, "bytes", nullptr, false},
        {"M", kMinMtu, kMaxMtu, "an MTU", nullptr, false},
        {"A", 0, 1, "nodelay", "nodelay", true},
        {"I", kMinInterval, kMaxInterval, "milliseconds", "interval", false},
        {"X", 0, kMaxResend, "a fast resend count", "resend", false},
        {"C", 0, 1, "no congestion control", "no_congestion_control", true},
        {"w", kMinWindow, kMaxWindow, "a window in packets", "send_window", false},
        {"W", kMinWindow, kMaxWindow, "a window in packets", "receive_window", false},
    };
    nlohmann::ordered_json kcp = nlohmann::ordered_json::object();
    for (const Numeric& x : numerics) {
        if (auto why = numeric(x.letter, x.min, x.max, x.what)) return command_error(command, *why);
        if (!given.count(x.letter)) continue;
        if (x.key == nullptr) {
            proxy[x.letter == std::string("S") ? "socket_buffer" : "mtu"] = n;
        } else if (x.boolean) {
            kcp[x.key] = n == 1;
        } else if (x.key == std::string("interval")) {
            kcp[x.key] = std::to_string(n) + "ms";
        } else {
            kcp[x.key] = n;
        }
    }
    if (!kcp.empty()) proxy["kcp"] = std::move(kcp);

    SeedCommand cmd;
    cmd.tool = tool;
    cmd.command = std::string(command);
    // The key: at most one source. A -K key is known to this command only (kcptcp.hpp).
    const int sources =
        static_cast<int>(given.count("K") + given.count("psk-file") + given.count("psk-env"));
    if (sources > 1)
        return command_error(command,
                             "give the PSK once: -K, --psk-file or --psk-env, not several");
    if (auto k = given.find("K"); k != given.end()) {
        if (auto why = psk_problem(k->second)) return command_error(command, "invalid -K: " + *why);
        proxy["psk_env"] = std::string(kKcpKeyVariable);
        cmd.private_variables[std::string(kKcpKeyVariable)] = k->second;
        cmd.startup.err = std::string(command) +
                          ": warning: a key given with -K is visible to other users in ps and "
                          "/proc while the command starts; use --psk-file PATH (a file only you "
                          "can read) or --psk-env NAME instead\n";
    }
    if (auto f = given.find("psk-file"); f != given.end()) {
        if (f->second.empty())
            return command_error(command, "invalid --psk-file '': expected a file name");
        proxy["psk_file"] = f->second;
    }
    if (auto e = given.find("psk-env"); e != given.end()) {
        if (!variable_name(e->second))
            return command_error(command, "invalid --psk-env '" + e->second +
                                              "': expected a variable name (letters, digits, _)");
        if (e->second == kKcpKeyVariable)
            return command_error(command, "invalid --psk-env '" + e->second + "': reserved for -K");
        proxy["psk_env"] = e->second;
    }
    cmd.daemonize = given.count("d") != 0;
    if (auto p = given.find("p"); p != given.end()) {
        if (p->second.empty()) return command_error(command, "invalid -p '': expected a file name");
        cmd.pid_file = p->second;
    }
    cmd.hangup_stops = true;
    return with_policy(std::move(cmd), std::nullopt, std::move(proxy));
}

void hide_key_arguments(int argc, char** argv) {
    if (argc < 2) return;
    std::vector<std::string> args(argv + 1, argv + argc);
    auto scanned = scan(args);
    if (!std::holds_alternative<ScannedArgs>(scanned)) return;
    for (const GivenOption& g : std::get<ScannedArgs>(scanned).options) {
        if (g.name != "K") continue;
        char* word = argv[g.arg + 1];
        std::memset(word + g.offset, 'x', std::strlen(word + g.offset));
    }
}

}  // namespace pfp::compat
