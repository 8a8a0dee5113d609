#include "policy/proxy_options.hpp"

#include <array>
#include <string_view>
#include <utility>

#include "common/allow_list.hpp"
#include "policy/duration.hpp"
#include "policy/kind_rules.hpp"
#include "policy/names.hpp"
#include "policy/wording.hpp"

namespace pfp::policy::detail {
namespace {

// `allow: "any"`: every destination outside the protected ranges, written out on purpose.
constexpr std::string_view kAllowAny = "any";

// Where a client-chosen destination comes from, for the deny-by-default message.
std::string destination_source(UpstreamMode mode) {
    switch (mode) {
        case UpstreamMode::destination_header:
            return "the client's destination header";
        case UpstreamMode::original_destination:
            return "the client's original destination (SO_ORIGINAL_DST)";
        case UpstreamMode::base_address:
            return "the client's original port (base_address)";
        case UpstreamMode::fixed:
            break;
    }
    return "the client";
}

// Keys of the stream relays only, and of the datagram forwarders only.
// (header and statistics have checks of their own.)
constexpr std::array<std::string_view, 10> kStreamOnlyKeys{
    "proxy_protocol", "max_connections", "backlog",   "connect_timeout", "tcp_nodelay",
    "keepalive",      "splice",          "busy_poll", "relay",           "relay_threads"};
// The relay engines (docs/policy.md, `relay`): index 1 is the thread pairs.
constexpr std::array<std::string_view, 2> kRelayEngines{"events", "threads"};
constexpr std::array<std::string_view, 2> kDatagramOnlyKeys{"max_flows", "batch"};
constexpr std::chrono::microseconds kMaxBusyPoll{10'000};

constexpr std::array<std::string_view, 3> kKeepaliveKeys{"idle", "interval", "count"};
constexpr std::array<std::string_view, 4> kRestartKeys{"backoff_initial", "backoff_max",
                                                       "healthy_after", "max_failures"};

constexpr Checker::ListWords kAllowWords{"allow entries", "allow entry", "an",
                                         R"("10.0.0.0/8:443")",
                                         "leave allow out for a fixed upstream"};
constexpr Checker::ListWords kSourceWords{"CIDRs", "CIDR", "a", R"("10.0.0.0/8")",
                                          "to admit every client, leave allowed_sources out"};

Keepalive parse_keepalive(Checker& check, const json& v, const std::string& pointer) {
    Keepalive k;
    if (v.is_boolean()) {
        k.enabled = v.get<bool>();
        return k;
    }
    if (!v.is_object()) {
        check.error(pointer,
                    "expected a boolean or an object {idle, interval, count}, got " + type_of(v));
        return k;
    }
    check.known_keys(v, pointer, kKeepaliveKeys);
    k.enabled = true;
    if (const json* idle = member(v, "idle")) {
        if (auto d = check.duration(*idle, pointer + "/idle", true)) k.idle = *d;
    }
    if (const json* interval = member(v, "interval")) {
        if (auto d = check.duration(*interval, pointer + "/interval", true)) k.interval = *d;
    }
    if (const json* count = member(v, "count")) {
        if (auto n = check.integer(*count, pointer + "/count", 1, 127)) k.count = *n;
    }
    return k;
}

RestartPolicy parse_restart(Checker& check, const json& v, const std::string& pointer) {
    RestartPolicy r;
    if (!v.is_object()) {
        check.error(pointer,
                    "expected an object {backoff_initial, backoff_max, healthy_after, "
                    "max_failures}, got " +
                        type_of(v));
        return r;
    }
    check.known_keys(v, pointer, kRestartKeys);
    const json* initial_json = member(v, "backoff_initial");
    const json* max_json = member(v, "backoff_max");
    std::optional<std::chrono::milliseconds> initial, max;
    if (initial_json) {
        initial = check.duration(*initial_json, pointer + "/backoff_initial", true);
        if (initial) r.backoff_initial = *initial;
    }
    if (max_json) {
        max = check.duration(*max_json, pointer + "/backoff_max", true);
        if (max) r.backoff_max = *max;
    }
    if (const json* x = member(v, "healthy_after")) {
        if (auto d = check.duration(*x, pointer + "/healthy_after", true)) r.healthy_after = *d;
    }
    if (const json* x = member(v, "max_failures")) {
        if (auto n = check.integer(*x, pointer + "/max_failures", 1, 1000)) r.max_failures = *n;
    }
    // Point at a field the user wrote: backoff_max if written, else backoff_initial against the
    // default. An invalid value was reported already.
    if (r.backoff_max < r.backoff_initial) {
        if (max) {
            check.error(pointer + "/backoff_max", "expected a duration >= backoff_initial (" +
                                                      format_ms(r.backoff_initial) + "), got " +
                                                      value_of(*max_json));
        } else if (initial && !max_json) {
            check.error(pointer + "/backoff_initial",
                        "expected a duration <= backoff_max (" + format_ms(r.backoff_max) +
                            ", the default), got " + value_of(*initial_json));
        }
    }
    return r;
}

}  // namespace

// The keys that choose a relay's preamble, admission and egress. A key that cannot apply to this
// entry is reported as such, and its value is not checked further.
void parse_relay_options(Checker& check, const json& v, const std::string& pointer,
                         const RelayShape& shape, Proxy& p) {
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    const std::string listen_name =
        shape.listen ? std::string(scheme_name(*shape.listen)) : std::string();
    const std::string kind = shape.kind ? std::string(kind_name(*shape.kind)) : "";

    if (const json* x = member(v, "header")) {
        const bool unused = shape.send_original_destination == false && shape.upstream_mode &&
                            *shape.upstream_mode != UpstreamMode::destination_header;
        if (unused) {
            check.error(at("header"),
                        "header applies only with send_original_destination or a "
                        "\"destination-header\" upstream");
        } else if (auto i = check.choice(*x, at("header"), kHeaderNames)) {
            p.header = kHeaderFormats[*i];
        }
    }
    if (const json* x = member(v, "header_timeout")) {
        if (shape.upstream_mode && *shape.upstream_mode != UpstreamMode::destination_header) {
            check.error(at("header_timeout"),
                        "header_timeout applies only to a \"destination-header\" upstream (the "
                        "one relay that reads a header from its client)");
        } else if (auto d = check.duration(*x, at("header_timeout"), true)) {
            p.header_timeout = *d;
        }
    }
    if (const json* x = member(v, "proxy_protocol")) {
        if (auto b = check.boolean(*x, at("proxy_protocol"))) {
            if (*b && shape.send_original_destination == true) {
                check.error(at("proxy_protocol"),
                            "proxy_protocol cannot be combined with send_original_destination "
                            "(the peer expects the transparent header first)");
            }
            p.proxy_protocol = *b;
        }
    }
    // Deny by default: where the client chooses the destination, the policy must say where it
    // may go, or write "any" to ask for an open relay.
    const bool client_chooses = shape.upstream_mode && *shape.upstream_mode != UpstreamMode::fixed;
    const json* allow = member(v, "allow");
    if (!allow && client_chooses && shape.kind) {
        check.error(pointer, "proxy " + quote(p.name) + " connects wherever " +
                                 destination_source(*shape.upstream_mode) +
                                 " says, and has no allow list: add \"allow\" with the "
                                 "destinations it may reach (such as [\"10.0.0.0/8:443\"]), or "
                                 "\"allow\": \"any\" for an open relay");
    }
    if (const json* x = allow) {
        if (shape.kind && !kind_takes(*shape.kind, KindKey::allow)) {
            check.error(at("allow"),
                        "allow applies only to relays that connect to TCP destinations (" +
                            kinds_taking(KindKey::allow) + "), not " + kind);
        } else if (x->is_string() && x->get_ref<const std::string&>() == kAllowAny) {
            if (shape.upstream_mode && !client_chooses) {
                check.error(at("allow"),
                            "\"any\" applies only where the client chooses the destination "
                            "(\"destination-header\", \"original-destination\" or "
                            "base_address); a fixed upstream needs no allow list");
            } else {
                const AllowList any = AllowList::any();
                for (const AllowEntry& e : any.entries()) p.allow.push_back(e.to_string());
                p.allow_any = true;
            }
        } else if (x->is_string()) {
            check.error(at("allow"),
                        "expected an array of allow entries such as "
                        "[\"10.0.0.0/8:443\"] or the word \"any\", got " +
                            value_of(*x));
        } else if (auto list =
                       check.allow_strings(*x, at("allow"), kAllowWords, parse_allow_entry)) {
            p.allow = std::move(*list);
            // A fixed upstream is the only destination: a list that denies it is a mistake.
            if (shape.kind && p.upstream_mode == UpstreamMode::fixed &&
                p.upstream.scheme == Scheme::tcp && p.upstream.host.empty()) {
                const Decision d = AllowList::parse(p.allow).decide(p.upstream.addr);
                if (!d.allowed()) {
                    check.error(at("allow"), "the upstream " + quote(to_string(p.upstream)) +
                                                 " is not allowed by this list (" +
                                                 std::string(d.reason) + ")");
                }
            }
        }
    }
    if (const json* x = member(v, "allowed_cids")) {
        if (shape.listen && *shape.listen != Scheme::vsock) {
            check.error(at("allowed_cids"),
                        "allowed_cids applies only to vsock listeners, not " + listen_name);
        } else if (auto cids = check.cids(*x, at("allowed_cids"))) {
            p.allowed_cids = std::move(*cids);
        }
    }
    if (const json* x = member(v, "allowed_sources")) {
        if (shape.listen && *shape.listen != Scheme::tcp && *shape.listen != Scheme::udp) {
            check.error(
                at("allowed_sources"),
                "allowed_sources applies only to tcp and udp listeners, not " + listen_name);
        } else if (auto list =
                       check.allow_strings(*x, at("allowed_sources"), kSourceWords, parse_cidr)) {
            p.allowed_sources = std::move(*list);
        }
    }
    for (const std::string_view key : {"socket_mode", "socket_owner", "socket_group"}) {
        const json* x = member(v, key);
        if (!x) continue;
        if (shape.listen && *shape.listen != Scheme::unix_stream &&
            *shape.listen != Scheme::fc_vsock) {
            check.error(at(key), std::string(key) +
                                     " applies only to unix and fc-vsock listeners, not " +
                                     listen_name);
        } else if (shape.abstract_listen) {
            check.error(at(key), std::string(key) +
                                     " does not apply to an abstract unix socket (it has no file)");
        } else if (shape.activated) {
            check.error(at(key), std::string(key) +
                                     " does not apply to a socket systemd passes (set SocketMode=, "
                                     "SocketUser= and SocketGroup= in the .socket unit)");
        } else if (key == "socket_mode") {
            if (auto mode = check.file_mode(*x, at(key))) p.unix_socket.mode = *mode;
        } else if (auto name = check.account(*x, at(key))) {
            (key == "socket_owner" ? p.unix_socket.owner : p.unix_socket.group) = std::move(*name);
        }
    }
    if (const json* x = member(v, "log_connections")) {
        if (auto b = check.boolean(*x, at("log_connections"))) p.log_connections = *b;
    }
    if (const json* x = member(v, "statistics")) {
        if (auto b = check.boolean(*x, at("statistics"))) {
            if (*b && shape.kind && !kind_takes(*shape.kind, KindKey::statistics)) {
                check.error(at("statistics"), "statistics applies only to " +
                                                  kinds_taking(KindKey::statistics) +
                                                  " relays, not " + kind);
            }
            p.statistics = *b;
        }
    }
}

namespace {

// The nflog group's batching (NFULA_CFG_QTHRESH, _TIMEOUT, _NLBUFSIZ), set by the supervisor when
// it binds the group. The kernel counts the timeout in hundredths of a second and takes a batch
// buffer of one page (its default) to 128 KiB; below 8 KiB is refused here, since a page can be
// larger than 4 KiB and the kernel refuses less than one.
void parse_nflog_options(Checker& check, const json& v, const std::string& pointer,
                         const RelayShape& shape, Proxy& p) {
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    for (const std::string_view key : {"nflog_threshold", "nflog_timeout", "nflog_buffer"}) {
        const json* x = member(v, key);
        if (!x) continue;
        if (shape.listen && *shape.listen != Scheme::nflog) {
            check.error(at(key), std::string(key) + " applies only to nflog listeners, not " +
                                     std::string(scheme_name(*shape.listen)));
        } else if (key == "nflog_threshold") {
            if (auto n = check.integer(*x, at(key), 1, 65535))
                p.nflog_threshold = static_cast<uint32_t>(*n);
        } else if (key == "nflog_timeout") {
            if (auto d = check.duration(*x, at(key), false)) {
                if (*d > std::chrono::seconds(60))
                    check.error(at(key), "expected a duration of at most 60s, got " + value_of(*x));
                else if (d->count() % 10 != 0)
                    check.error(at(key),
                                "expected a multiple of 10ms (the kernel counts hundredths of a "
                                "second), got " +
                                    value_of(*x));
                else
                    p.nflog_timeout = *d;
            }
        } else if (auto n = check.integer(*x, at(key), 8192, 131072)) {
            p.nflog_buffer = static_cast<uint32_t>(*n);
        }
    }
}

}  // namespace

void parse_queue_options(Checker& check, const json& v, const std::string& pointer,
                         const RelayShape& shape, Proxy& p) {
    static constexpr std::array<std::string_view, 2> kVerdicts{"drop", "accept"};
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    const bool queue = !shape.listen || *shape.listen == Scheme::nfqueue;
    // One stream at a time, one reader per queue: two workers would share (and interleave) both.
    if (shape.kind && kind_row(*shape.kind).family == KindFamily::packet && p.workers != 1 &&
        member(v, "workers"))
        check.error(at("workers"), "expected 1: " + std::string(kind_name(*shape.kind)) +
                                       " runs one worker (one stream, one queue reader)");
    // The reader never reads from its stream, so it cannot take fc-vsock's CONNECT/OK exchange.
    const bool reader = shape.listen == Scheme::nfqueue || shape.listen == Scheme::nflog;
    if (reader && p.upstream_mode == UpstreamMode::fixed && p.upstream.scheme == Scheme::fc_vsock)
        check.error(at("upstream"),
                    std::string(article(*shape.listen)) + " " +
                        std::string(scheme_name(*shape.listen)) +
                        " listener writes to a vsock:, unix: or tcp: upstream, not fc-vsock (its "
                        "reader never reads from the stream, and fc-vsock answers CONNECT)");
    for (const std::string_view key : {"on_stream_down", "fail_open", "queue_maxlen", "gso"}) {
        const json* x = member(v, key);
        if (!x) continue;
        if (shape.listen == Scheme::nflog && key == "gso") {
            check.error(at(key),
                        "gso does not apply to an nflog listener: nflog always hands "
                        "GSO packets over whole");
        } else if (shape.listen == Scheme::nflog) {
            check.error(at(key), std::string(key) +
                                     " does not apply to an nflog listener: nflog gives no "
                                     "verdicts (the rule after NFLOG decides each packet; use an "
                                     "nfqueue listener for verdicts and fail-open)");
        } else if (!queue) {
            check.error(at(key), std::string(key) + " applies only to nfqueue listeners, not " +
                                     std::string(scheme_name(*shape.listen)));
        } else if (key == "on_stream_down") {
            if (auto i = check.choice(*x, at(key), kVerdicts)) p.accept_when_stream_down = *i == 1;
        } else if (key == "fail_open") {
            if (auto b = check.boolean(*x, at(key))) p.fail_open = *b;
        } else if (key == "gso") {
            if (auto b = check.boolean(*x, at(key))) p.gso = *b;
        } else if (auto n = check.integer(*x, at(key), 1, 1'000'000)) {
            p.queue_maxlen = static_cast<uint32_t>(*n);
        }
    }
    parse_nflog_options(check, v, pointer, shape, p);
}

void parse_relay_tuning(Checker& check, const json& v, const std::string& pointer, Proxy& p) {
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    if (const json* x = member(v, "workers")) {
        if (auto n = check.integer(*x, at("workers"), 1, 64)) p.workers = *n;
    }
    if (const json* x = member(v, "max_connections")) {
        if (auto n = check.integer(*x, at("max_connections"), 1, 1'000'000)) {
            p.max_connections = *n;
        }
    }
    if (const json* x = member(v, "backlog")) {
        if (auto n = check.integer(*x, at("backlog"), 1, 65535)) p.backlog = *n;
    }
    if (const json* x = member(v, "connect_timeout")) {
        if (auto d = check.duration(*x, at("connect_timeout"), true)) p.connect_timeout = *d;
    }
    if (const json* x = member(v, "idle_timeout")) {
        if (auto d = check.duration(*x, at("idle_timeout"), false)) p.idle_timeout = *d;
    }
    if (const json* x = member(v, "tcp_nodelay")) {
        if (auto b = check.boolean(*x, at("tcp_nodelay"))) p.tcp_nodelay = *b;
    }
    if (const json* x = member(v, "splice")) {
        if (auto b = check.boolean(*x, at("splice"))) p.splice = *b;
    }
    if (const json* x = member(v, "busy_poll")) {
        // Past a few ms the window only burns CPU: a sleeping worker's wake-up costs tens of us.
        if (auto d = check.short_duration(*x, at("busy_poll"), kMaxBusyPoll)) p.busy_poll = *d;
    }
    bool relay_known = true;  // a wrong `relay` is reported once, not again at relay_threads
    if (const json* x = member(v, "relay")) {
        auto i = check.choice(*x, at("relay"), kRelayEngines);
        relay_known = i.has_value();
        if (i) p.thread_relay = *i == 1;
    }
    if (const json* x = member(v, "relay_threads")) {
        if (auto n = check.integer(*x, at("relay_threads"), 1, 4096)) {
            p.relay_threads = *n;
            if (!p.thread_relay && relay_known)
                check.error(at("relay_threads"),
                            "relay_threads applies only with \"relay\": \"threads\" (the event "
                            "engine serves every connection on the worker's one thread)");
        }
    }
    if (const json* x = member(v, "keepalive")) {
        p.keepalive = parse_keepalive(check, *x, at("keepalive"));
    }
    if (const json* x = member(v, "restart")) {
        p.restart = parse_restart(check, *x, at("restart"));
    }
}

void parse_family_keys(Checker& check, const json& v, const std::string& pointer,
                       std::optional<WorkerKind> kind, Proxy& p) {
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    const bool datagram = kind && kind_row(*kind).family == KindFamily::datagram;
    const bool packet = kind && kind_row(*kind).family == KindFamily::packet;
    const bool tunnel = kind && kind_row(*kind).family == KindFamily::tunnel;
    const std::string name = kind ? std::string(kind_name(*kind)) : "";
    if (packet) {
        // One stream of packets: no client connections to limit, tune or time out.
        for (const std::string_view key : kStreamOnlyKeys)
            if (member(v, key))
                check.error(at(key), std::string(key) + " applies only to stream relays, not " +
                                         name + " (proxy " + quote(p.name) +
                                         " carries packets, not connections)");
        if (member(v, "idle_timeout"))
            check.error(at("idle_timeout"),
                        "idle_timeout applies only to stream relays and datagram forwarders, "
                        "not " +
                            name + " (proxy " + quote(p.name) + ")");
    }
    if (datagram) {
        // A forgotten flow holds a socket forever; the deployed udpfwd's default was 60 s.
        if (!member(v, "idle_timeout")) p.idle_timeout = std::chrono::seconds(60);
        for (const std::string_view key : kStreamOnlyKeys)
            if (member(v, key))
                check.error(at(key), std::string(key) + " applies only to stream relays, not " +
                                         name + " (a datagram forwarder has no connections)");
    }
    // The KCP loop is driven by its own timers; busy polling is wired into the stream relay only.
    if (tunnel && member(v, "busy_poll"))
        check.error(at("busy_poll"), "busy_poll applies only to stream relays, not " + name +
                                         " (a KCP tunnel's loop runs on its own timers)");
    for (const std::string_view key : kDatagramOnlyKeys) {
        const json* x = member(v, key);
        if (!x) continue;
        if (kind && !datagram) {
            check.error(at(key), std::string(key) + " applies only to datagram forwarders (" +
                                     "udp-forward), not " + name);
        } else if (key == "max_flows") {
            if (auto n = check.integer(*x, at(key), 1, 1'000'000)) p.max_flows = *n;
        } else if (auto b = check.boolean(*x, at(key))) {
            p.batch = *b;
        }
    }
    if (datagram && p.max_flows < p.workers)
        check.error(at("max_flows"), "expected max_flows >= workers (" + std::to_string(p.workers) +
                                         "): each worker needs a flow");
    // Each worker reads its own SO_REUSEPORT socket (a client stays on one worker); systemd
    // passes one socket, which cannot be made into such a group.
    if (datagram && p.workers > 1 && p.listen.scheme == Scheme::systemd)
        check.error(at("workers"), "expected 1 with a socket systemd passes: " + name +
                                       " gives each worker its own SO_REUSEPORT socket so that a "
                                       "client stays on one worker, and one passed socket cannot "
                                       "be split (listen on udp:ADDR:PORT to run more workers)");
}

}  // namespace pfp::policy::detail
