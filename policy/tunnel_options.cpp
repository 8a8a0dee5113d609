#include "policy/tunnel_options.hpp"

#include <array>
#include <cctype>
#include <chrono>
#include <string_view>

#include "policy/wording.hpp"

namespace pfp::policy::detail {
namespace {

// Keys only a KCP tunnel takes.
constexpr std::array<std::string_view, 5> kTunnelOnlyKeys{"psk_file", "psk_env", "mtu",
                                                          "socket_buffer", "kcp"};
// Existing keys that mean nothing to a tunnel: its streams are not spliced, carry no preamble.
constexpr std::array<std::string_view, 4> kNotForTunnels{"proxy_protocol", "splice", "relay",
                                                         "relay_threads"};
// kcp-server: its TCP side is outbound only (no listener to tune); its limits are in `kcp`.
constexpr std::array<std::string_view, 4> kNotForServer{"max_connections", "backlog", "tcp_nodelay",
                                                        "keepalive"};
constexpr std::array<std::string_view, 11> kKcpKeys{
    "nodelay",        "interval",          "resend",      "no_congestion_control",
    "send_window",    "receive_window",    "rekey_after", "max_sessions",
    "max_per_source", "hellos_per_second", "hello_burst"};
// The kcp-server limits among them.
constexpr std::array<std::string_view, 4> kServerLimitKeys{"max_sessions", "max_per_source",
                                                           "hellos_per_second", "hello_burst"};

// A kcp tunnel ends a conversation whose peer vanished by this timeout (docs/kcp-tunnel.md).
constexpr std::chrono::seconds kTunnelIdle{180};
// KCP sends up to a window of 1024 datagrams (1.3 MiB at the default MTU) in one burst: a socket
// buffer smaller than that (the kernel's default is ~208 KiB) overflows at the receiver and turns
// the burst into retransmissions. The kernel caps it at net.core.rmem_max/wmem_max.
constexpr int kTunnelSocketBuffer = 4 << 20;

bool is_env_name(const std::string& s) {
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s.front()))) return false;
    for (char c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
    return true;
}

template <size_t N>
bool listed(const std::array<std::string_view, N>& keys, std::string_view key) {
    for (std::string_view k : keys)
        if (k == key) return true;
    return false;
}

// `client`: the entry is known to be a kcp-client (an entry whose kind is unknown, reported
// already, is not refused anything).
void parse_kcp_object(Checker& check, const json& v, const std::string& pointer, bool client,
                      KcpTuning& k) {
    if (!v.is_object()) {
        check.error(pointer,
                    "expected an object of KCP tuning and limits (such as "
                    "{\"interval\": \"10ms\"}), got " +
                        type_of(v));
        return;
    }
    check.known_keys(v, pointer, kKcpKeys);
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    for (const std::string_view key : kServerLimitKeys)
        if (member(v, key) && client)
            check.error(at(key), std::string(key) +
                                     " applies only to kcp-server (a limit on the conversations "
                                     "it accepts), not kcp-client");
    if (const json* x = member(v, "nodelay"))
        if (auto b = check.boolean(*x, at("nodelay"))) k.nodelay = *b;
    if (const json* x = member(v, "interval")) {
        if (auto d = check.duration(*x, at("interval"), true)) {
            if (d->count() > 5000)
                check.error(at("interval"),
                            "expected a duration of at most 5s (KCP flushes at least that often), "
                            "got " +
                                value_of(*x));
            else
                k.interval = *d;
        }
    }
    if (const json* x = member(v, "resend"))
        if (auto n = check.integer(*x, at("resend"), 0, 100)) k.resend = *n;
    if (const json* x = member(v, "no_congestion_control"))
        if (auto b = check.boolean(*x, at("no_congestion_control"))) k.no_congestion_control = *b;
    if (const json* x = member(v, "send_window"))
        if (auto n = check.integer(*x, at("send_window"), 1, 65535)) k.send_window = *n;
    if (const json* x = member(v, "receive_window"))
        if (auto n = check.integer(*x, at("receive_window"), 1, 65535)) k.receive_window = *n;
    if (const json* x = member(v, "rekey_after"))
        if (auto n = check.integer(*x, at("rekey_after"), 16, 1 << 30))
            k.rekey_after = static_cast<uint64_t>(*n);
    if (client) return;
    if (const json* x = member(v, "max_sessions"))
        if (auto n = check.integer(*x, at("max_sessions"), 1, 65536)) k.max_sessions = *n;
    if (const json* x = member(v, "max_per_source"))
        if (auto n = check.integer(*x, at("max_per_source"), 1, 65536)) k.max_per_source = *n;
    if (const json* x = member(v, "hellos_per_second"))
        if (auto n = check.integer(*x, at("hellos_per_second"), 1, 100000))
            k.hellos_per_second = *n;
    if (const json* x = member(v, "hello_burst"))
        if (auto n = check.integer(*x, at("hello_burst"), 1, 100000)) k.hello_burst = *n;
}

}  // namespace

void parse_tunnel_keys(Checker& check, const json& v, const std::string& pointer,
                       std::optional<WorkerKind> kind, Proxy& p) {
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    const bool tunnel = kind && kind_row(*kind).family == KindFamily::tunnel;
    const bool server = kind == WorkerKind::kcp_server;
    const std::string name = kind ? std::string(kind_name(*kind)) : "";
    if (kind && !tunnel) {
        for (const std::string_view key : kTunnelOnlyKeys)
            if (member(v, key))
                check.error(at(key), std::string(key) +
                                         " applies only to KCP tunnels (kcp-client, kcp-server), "
                                         "not " +
                                         name);
        return;
    }
    if (tunnel) {
        for (const std::string_view key : kNotForTunnels)
            if (member(v, key))
                check.error(at(key),
                            std::string(key) + " does not apply to a KCP tunnel (" + name + ")");
        for (const std::string_view key : kNotForServer)
            if (server && member(v, key))
                check.error(at(key),
                            std::string(key) +
                                " does not apply to kcp-server (its TCP side only "
                                "connects out; limit conversations with kcp.max_sessions)");
        if (!server && member(v, "connect_timeout"))
            check.error(at("connect_timeout"),
                        "connect_timeout applies only to kcp-server (its TCP upstream); kcp-client "
                        "makes no TCP connection, and its handshake has a schedule of its own");
        if (server && p.workers != 1 && member(v, "workers"))
            check.error(at("workers"),
                        "expected 1: kcp-server runs one worker (its conversations live in the "
                        "worker that owns the UDP socket)");
        if (member(v, "idle_timeout")) {
            if (p.idle_timeout.count() == 0)
                check.error(at("idle_timeout"),
                            "expected a positive duration: a KCP tunnel ends the conversation of a "
                            "peer that vanished by its idle timeout");
        } else {
            p.idle_timeout = kTunnelIdle;
        }
        p.socket_buffer = kTunnelSocketBuffer;  // unless the key says otherwise (below)
    }
    const json* file = member(v, "psk_file");
    const json* env = member(v, "psk_env");
    if (file && env)
        check.error(at("psk_env"),
                    "psk_file and psk_env cannot both be given (one PSK per tunnel)");
    if (file) {
        if (!file->is_string() || file->get_ref<const std::string&>().empty() ||
            file->get_ref<const std::string&>().find('\0') != std::string::npos)
            check.error(at("psk_file"),
                        "expected the path of a file holding the PSK as 64 hex digits, got " +
                            value_of(*file));
        else
            p.psk_file = file->get<std::string>();
    }
    if (env) {
        if (!env->is_string() || !is_env_name(env->get_ref<const std::string&>()))
            check.error(at("psk_env"),
                        "expected the name of an environment variable (letters, digits and _) "
                        "such as \"PFPROXY_KCP_PSK\", got " +
                            value_of(*env));
        else
            p.psk_env = env->get<std::string>();
    }
    if (const json* x = member(v, "mtu"))
        if (auto n = check.integer(*x, at("mtu"), 576, 1500)) p.mtu = *n;
    if (const json* x = member(v, "socket_buffer"))
        if (auto n = check.integer(*x, at("socket_buffer"), 4096, 1 << 30)) p.socket_buffer = *n;
    if (const json* x = member(v, "kcp"))
        parse_kcp_object(check, *x, at("kcp"), kind == WorkerKind::kcp_client, p.kcp);
}

}  // namespace pfp::policy::detail
