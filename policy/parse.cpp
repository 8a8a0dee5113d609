#include "policy/parse.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/unique_fd.hpp"
#include "policy/checker.hpp"
#include "policy/duration.hpp"
#include "policy/json_syntax.hpp"
#include "policy/kind_rules.hpp"
#include "policy/names.hpp"
#include "policy/packet_filter_options.hpp"
#include "policy/proxy_options.hpp"
#include "policy/source_map.hpp"
#include "policy/tunnel_options.hpp"
#include "policy/wording.hpp"

namespace pfp::policy {

using namespace detail;

namespace {

// A policy is a few kilobytes; the cap keeps a hostile file from costing gigabytes of parse tree.
constexpr size_t kMaxPolicyBytes = 16 * 1024 * 1024;

constexpr std::array<std::string_view, 10> kTopKeys{
    "user",           "group",    "drain_timeout", "metrics",     "control_users",
    "control_groups", "resolver", "resolve_min",   "resolve_max", "proxies"};
// The endpoints the metrics server can listen on (supervisor/metrics_server.cpp).
constexpr std::array<Scheme, 2> kMetricsSchemes{Scheme::tcp, Scheme::unix_stream};
// In the order of docs/policy.md; unknown-key messages list them so.
constexpr std::array<std::string_view, 47> kProxyKeys{
    "name", "listen", "listen_family", "ipv6_only", "upstream", "base_address",
    // The relay: preamble, egress, admission, socket file.
    "send_original_destination", "header", "proxy_protocol", "allow", "allowed_cids",
    "allowed_sources", "socket_mode", "socket_owner", "socket_group",
    // Limits, tuning and logging.
    "workers", "max_connections", "backlog", "connect_timeout", "header_timeout", "idle_timeout",
    "tcp_nodelay", "keepalive", "splice", "busy_poll", "relay", "relay_threads", "log_connections",
    "statistics", "restart",
    // Datagram forwarders.
    "max_flows", "batch",
    // nfqueue listeners (not nflog: no verdicts).
    "on_stream_down", "fail_open", "queue_maxlen", "gso",
    // nflog listeners.
    "nflog_threshold", "nflog_timeout", "nflog_buffer",
    // Raw upstreams.
    "filter", "route_mtu",
    // KCP tunnels.
    "tunnel", "psk_file", "psk_env", "mtu", "socket_buffer", "kcp"};

struct ParsedProxy {
    Proxy proxy;
    bool has_name = false;
    bool has_listen = false;
};

ParsedProxy parse_proxy(Checker& check, const json& v, const std::string& pointer) {
    ParsedProxy out;
    Proxy& p = out.proxy;
    p.pointer = pointer;
    if (!v.is_object()) {
        check.error(pointer, "expected a proxy object, got " + type_of(v));
        return out;
    }
    check.known_keys(v, pointer, kProxyKeys);
    for (const std::string_view required : {"name", "listen", "upstream"}) {
        if (!v.contains(required)) {
            check.error(pointer, "missing required key \"" + std::string(required) + "\"");
        }
    }
    if (const json* x = member(v, "name")) {
        if (auto n = check.name(*x, pointer + "/name")) {
            p.name = *n;
            out.has_name = true;
        }
    }
    std::optional<Endpoint> listen;
    if (const json* x = member(v, "listen")) {
        listen = check.endpoint(*x, pointer + "/listen");
        if (listen && listen->original_port) {
            check.error(pointer + "/listen",
                        "original-port applies only to an upstream (a listener needs a port of "
                        "its own)");
            listen.reset();
        }
    }
    // A socket systemd passes could be anything; the policy says which family its proxy takes,
    // and that family chooses the kind as the scheme of a listener pf-proxyd opens would.
    std::optional<Scheme> family;
    if (const json* x = member(v, "listen_family")) {
        if (listen && listen->scheme != Scheme::systemd) {
            check.error(pointer + "/listen_family",
                        "listen_family applies only to a \"systemd:NAME\" listener (the " +
                            std::string(scheme_name(listen->scheme)) + " endpoint names its own)");
        } else if (auto f = check.choice(*x, pointer + "/listen_family", kListenFamilyNames)) {
            family = kListenFamilies[*f];
        } else {
            listen.reset();  // one error, not a second one about the systemd scheme
        }
    } else if (listen && listen->scheme == Scheme::systemd) {
        check.error(pointer + "/listen", "a \"systemd:NAME\" listener needs listen_family (" +
                                             one_of(kListenFamilyNames) +
                                             "): the kind of proxy depends on it");
        listen.reset();
    }
    if (const json* x = member(v, "ipv6_only")) {
        const auto b = check.boolean(*x, pointer + "/ipv6_only");
        if (b && *b && listen &&
            ((listen->scheme != Scheme::tcp && listen->scheme != Scheme::udp) ||
             listen->addr.family() != AF_INET6)) {
            check.error(pointer + "/ipv6_only",
                        "ipv6_only applies only to a tcp: or udp: listener on an IPv6 address "
                        "(such as \"tcp:[::]:80\"), not " +
                            quote(to_string(*listen)));
        } else if (b) {
            p.ipv6_only = *b;
        }
    }
    std::optional<Checker::Upstream> upstream;
    if (const json* x = member(v, "upstream")) upstream = check.upstream(*x, pointer + "/upstream");
    if (const json* x = member(v, "base_address")) {
        const auto b = check.boolean(*x, pointer + "/base_address");
        if (b && *b && upstream) {
            if (upstream->mode != UpstreamMode::fixed || upstream->endpoint.scheme != Scheme::tcp) {
                check.error(pointer + "/base_address",
                            "base_address applies only to a tcp: upstream (its IP address is the "
                            "base the original port is added to)");
            } else if (!upstream->endpoint.host.empty()) {
                check.error(pointer + "/base_address",
                            "base_address needs an IP address in the upstream (the base the "
                            "original port is added to), not the host name " +
                                quote(upstream->endpoint.host));
            } else {
                upstream->mode = UpstreamMode::base_address;
            }
        }
    }
    std::optional<bool> send_original_destination = false;
    if (const json* x = member(v, "send_original_destination")) {
        send_original_destination = check.boolean(*x, pointer + "/send_original_destination");
    }

    // `tunnel: "kcp"`: a stream carried over datagrams (it chooses a kcp kind).
    std::optional<bool> tunnel = false;
    if (const json* x = member(v, "tunnel")) {
        if (check.choice(*x, pointer + "/tunnel", kTunnelNames))
            tunnel = true;
        else
            tunnel.reset();
    }

    const std::optional<Scheme> listen_scheme = family   ? family
                                                : listen ? std::optional(listen->scheme)
                                                         : std::nullopt;
    KindInput in;
    in.listen = listen_scheme;
    if (upstream) {
        in.upstream_mode = upstream->mode;
        in.upstream = upstream->endpoint;
    }
    in.send_original_destination = send_original_destination;
    in.tunnel = tunnel;
    const KindChoice kind = derive_kind(in);
    if (!kind.tunnel_error.empty()) check.error(pointer + "/tunnel", kind.tunnel_error);
    if (!kind.listen_error.empty()) check.error(pointer + "/listen", kind.listen_error);
    if (!kind.upstream_error.empty()) check.error(pointer + "/upstream", kind.upstream_error);
    if (!kind.send_original_destination_error.empty()) {
        check.error(pointer + "/send_original_destination", kind.send_original_destination_error);
    }
    if (kind.kind) p.kind = *kind.kind;
    if (listen) {
        p.listen = *listen;
        out.has_listen = true;
    }
    if (family) p.listen_family = *family;
    if (upstream) {
        p.upstream_mode = upstream->mode;
        p.upstream = upstream->endpoint;
    }
    if (send_original_destination) p.send_original_destination = *send_original_destination;

    RelayShape shape;
    if (listen) {
        shape.listen = listen_scheme;
        shape.activated = listen->scheme == Scheme::systemd;
        shape.abstract_listen =
            listen->scheme == Scheme::unix_stream && listen->path.starts_with('@');
    }
    if (upstream) shape.upstream_mode = upstream->mode;
    shape.send_original_destination = send_original_destination;
    shape.kind = kind.kind;
    parse_relay_options(check, v, pointer, shape, p);
    parse_relay_tuning(check, v, pointer, p);
    parse_family_keys(check, v, pointer, kind.kind, p);
    parse_queue_options(check, v, pointer, shape, p);
    parse_packet_filter(check, v, pointer, kind.kind, p);
    parse_tunnel_keys(check, v, pointer, kind.kind, p);
    return out;
}

// What a listener binds, for the duplicate check: its canonical text, except that an fc-vsock
// listener binds the Unix socket file PATH_PORT, which a unix: listener could name too.
std::string bound_address(const Endpoint& e) {
    if (e.scheme == Scheme::fc_vsock) return "unix:" + e.path + "_" + std::to_string(e.port);
    return to_string(e);
}

// "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:53": the server c-ares asks, in its own form.
std::optional<std::string> resolver_address(const std::string& text) {
    std::string t = text;
    if (t.find_first_of("[]") == std::string::npos && std::count(t.begin(), t.end(), ':') > 1)
        t = "[" + t + "]:53";  // a bare IPv6 address
    else if (t.find(':') == std::string::npos || (t.starts_with('[') && t.ends_with(']')))
        t += ":53";
    try {
        const Endpoint e = parse_endpoint("udp:" + t);
        if (!e.addr.len) return std::nullopt;
        return format_sockaddr(e.addr);
    } catch (const endpoint_error&) {
        return std::nullopt;
    }
}

void parse_resolver_keys(Checker& check, const json& doc, Policy& policy) {
    if (const json* x = member(doc, "resolver")) {
        if (!x->is_string()) {
            check.error(
                "/resolver",
                "expected a DNS server address such as \"127.0.0.1:53\", got " + type_of(*x));
        } else if (auto a = resolver_address(x->get_ref<const std::string&>())) {
            policy.resolver = *a;
        } else {
            check.error("/resolver", "invalid resolver " + value_of(*x) +
                                         ": expected an IP address with an optional port, such as "
                                         "\"127.0.0.1:53\" or \"[::1]:5353\"");
        }
    }
    std::optional<std::chrono::milliseconds> low, high;
    if (const json* x = member(doc, "resolve_min")) {
        low = check.duration(*x, "/resolve_min", true);
        if (low) policy.resolve_min = *low;
    }
    if (const json* x = member(doc, "resolve_max")) {
        high = check.duration(*x, "/resolve_max", true);
        if (high) policy.resolve_max = *high;
    }
    if (policy.resolve_max < policy.resolve_min) {
        if (high)
            check.error("/resolve_max", "expected a duration >= resolve_min (" +
                                            format_ms(policy.resolve_min) + "), got " +
                                            value_of(*member(doc, "resolve_max")));
        else
            check.error("/resolve_min", "expected a duration <= resolve_max (" +
                                            format_ms(policy.resolve_max) + ", the default), got " +
                                            value_of(*member(doc, "resolve_min")));
    }
}

struct FirstListen {
    std::string pointer;
    std::string text;  // canonical
};

void validate(Checker& check, const json& doc, Policy& policy) {
    if (!doc.is_object()) {
        check.error("", "expected an object, got " + type_of(doc));
        return;
    }
    // "$schema": the JSON Schema editors check the file against (schema/policy.schema.json);
    // it means nothing to pf-proxyd.
    check.known_keys(doc, "", kTopKeys, "$schema");
    if (const json* x = member(doc, "$schema"); x && !x->is_string()) {
        check.error("/$schema", "expected a string (the schema's URI), got " + type_of(*x));
    }
    if (const json* x = member(doc, "user")) policy.user = check.account(*x, "/user");
    if (const json* x = member(doc, "group")) policy.group = check.account(*x, "/group");
    if (const json* x = member(doc, "drain_timeout")) {
        if (auto d = check.duration(*x, "/drain_timeout", false)) policy.drain_timeout = *d;
    }
    if (const json* x = member(doc, "metrics")) {
        if (auto e = check.endpoint(*x, "/metrics")) {
            if (std::find(kMetricsSchemes.begin(), kMetricsSchemes.end(), e->scheme) ==
                kMetricsSchemes.end()) {
                check.error("/metrics", std::string(article(e->scheme)) + " " +
                                            std::string(scheme_name(e->scheme)) +
                                            " endpoint cannot serve metrics (allowed: " +
                                            scheme_list(kMetricsSchemes) + ")");
            } else if (e->scheme == Scheme::unix_stream && !e->path.starts_with('/')) {
                // An abstract socket has no file whose mode could restrict who reads it.
                check.error("/metrics",
                            "expected a unix: endpoint with a path such as "
                            "\"unix:/run/pf-proxy/metrics.sock\", got " +
                                quote(to_string(*e)));
            } else {
                policy.metrics = *e;
            }
        }
    }
    // Names like `user`, each once; resolved by the supervisor, which knows the system's
    // accounts.
    const auto accounts = [&](const char* key, std::vector<std::string>& out) {
        const json* x = member(doc, key);
        if (!x) return;
        const std::string pointer = std::string("/") + key;
        if (!x->is_array()) {
            check.error(pointer, "expected an array of names, got " + type_of(*x));
            return;
        }
        std::map<std::string, std::string> seen;  // name -> pointer of its first element
        for (size_t i = 0; i < x->size(); ++i) {
            const std::string at = pointer + "/" + std::to_string(i);
            auto name = check.account((*x)[i], at);
            if (!name) continue;
            const auto [it, fresh] = seen.try_emplace(*name, at);
            if (!fresh) {
                check.error(at, "duplicate name " + quote(*name) + " (first at " +
                                    position_text(check.where(it->second)) + ")");
                continue;
            }
            out.push_back(std::move(*name));
        }
    };
    accounts("control_users", policy.control_users);
    accounts("control_groups", policy.control_groups);
    parse_resolver_keys(check, doc, policy);
    const json* proxies = member(doc, "proxies");
    if (!proxies) {
        check.error("", "missing required key \"proxies\"");
        return;
    }
    if (!proxies->is_array()) {
        check.error("/proxies", "expected an array of proxies, got " + type_of(*proxies));
        return;
    }
    if (proxies->empty()) {
        check.error("/proxies", "expected at least one proxy, got an empty array");
        return;
    }
    // Cross-entry checks: the first occurrence's pointer, by name and by what the listener binds.
    std::map<std::string, std::string> names;
    std::map<std::string, FirstListen> listens;
    for (size_t i = 0; i < proxies->size(); ++i) {
        const std::string pointer = "/proxies/" + std::to_string(i);
        ParsedProxy parsed = parse_proxy(check, (*proxies)[i], pointer);
        if (parsed.has_name) {
            const auto [it, fresh] = names.try_emplace(parsed.proxy.name, pointer + "/name");
            if (!fresh) {
                check.error(pointer + "/name", "duplicate proxy name " + quote(parsed.proxy.name) +
                                                   " (first at " +
                                                   position_text(check.where(it->second)) + ")");
            }
        }
        if (parsed.has_listen) {
            const std::string text = to_string(parsed.proxy.listen);
            const auto [it, fresh] = listens.try_emplace(bound_address(parsed.proxy.listen),
                                                         FirstListen{pointer + "/listen", text});
            if (!fresh) {
                const std::string first =
                    " (first at " + position_text(check.where(it->second.pointer)) + ")";
                if (it->second.text == text) {
                    check.error(pointer + "/listen",
                                "duplicate listen endpoint " + quote(text) + first);
                } else {
                    check.error(pointer + "/listen", "listen endpoint " + quote(text) +
                                                         " is the same socket file as " +
                                                         quote(it->second.text) + first);
                }
            }
        }
        policy.proxies.push_back(std::move(parsed.proxy));
    }
    if (policy.metrics) {
        const auto it = listens.find(bound_address(*policy.metrics));
        if (it != listens.end()) {
            check.error("/metrics", "the metrics endpoint " + quote(to_string(*policy.metrics)) +
                                        " is also a proxy's listener (at " +
                                        position_text(check.where(it->second.pointer)) + ")");
        }
    }
}

[[noreturn]] void fail(const std::string& file, std::string message) {
    throw policy_error({Diagnostic{file, 0, 0, "", std::move(message), ""}});
}

// The whole file, or a policy_error; at most one byte past kMaxPolicyBytes.
std::string read_policy_file(const std::string& path) {
    const unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) fail(path, std::string("cannot open the policy: ") + std::strerror(errno));
    std::string text;
    int err = 0;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        err = errno;
    } else if (S_ISDIR(st.st_mode)) {
        err = EISDIR;
    } else {
        // Read one byte past the limit so an oversized file (or endless FIFO) is caught.
        char buf[65536];
        for (;;) {
            const ssize_t n = ::read(fd.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                err = errno;
                break;
            }
            if (n == 0) break;
            text.append(buf, static_cast<size_t>(n));
            if (text.size() > kMaxPolicyBytes) break;
        }
    }
    if (err != 0) fail(path, std::string("cannot read the policy: ") + std::strerror(err));
    return text;
}

}  // namespace

Policy parse_policy(std::string_view text, const std::string& filename) {
    if (text.size() > kMaxPolicyBytes) {
        fail(filename,
             "the policy is larger than " + std::to_string(kMaxPolicyBytes >> 20) + " MiB");
    }
    const SourceMap map(text);
    if (auto e = find_syntax_error(text)) {
        const SourcePos pos = map.at_offset(e->offset);
        throw policy_error({Diagnostic{filename, pos.line, pos.column, std::move(e->pointer),
                                       std::move(e->message), ""}});
    }

    json doc;
    try {
        doc = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        fail(filename, std::string("syntax error: ") + e.what());  // not expected after sax_parse
    }

    Policy policy;
    policy.path = filename;
    Checker checker(filename, map);
    for (const auto& dup : map.duplicates()) {
        checker.add(
            dup.second, dup.pointer,
            "duplicate key " + quote(dup.name) + " (first at " + position_text(dup.first) + ")",
            "");
    }
    checker.note_dropped(map.duplicates_dropped());
    validate(checker, doc, policy);
    if (!checker.ok()) throw policy_error(checker.take());
    return policy;
}

Policy load_policy(const std::string& path) {
    return parse_policy(read_policy_file(path), path);
}

}  // namespace pfp::policy
