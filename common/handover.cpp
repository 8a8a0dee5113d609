#include "common/handover.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace pfp {

using nlohmann::json;

namespace {

std::runtime_error bad(const std::string& what) {
    return std::runtime_error("handover: " + what);
}

json stream_json(const StreamOptions& o) {
    return {
        {"upstream_mode", std::string(upstream_mode_name(o.upstream_mode))},
        {"upstream", o.upstream},
        {"upstream_host", o.upstream_host},
        {"upstream_addresses", o.upstream_addresses},
        {"send_original_destination", o.send_original_destination},
        {"header", std::string(transparent_header_format_name(o.header))},
        {"proxy_protocol", o.proxy_protocol},
        {"allow", o.allow},
        {"allowed_cids", o.allowed_cids},
        {"allowed_sources", o.allowed_sources},
        {"host_addresses", o.host_addresses},
        {"max_connections", o.max_connections},
        {"connect_timeout_ms", o.connect_timeout.count()},
        {"idle_timeout_ms", o.idle_timeout.count()},
        {"header_timeout_ms", o.header_timeout.count()},
        {"tcp_nodelay", o.tcp_nodelay},
        {"keepalive", o.keepalive},
        {"keepalive_idle_ms", o.keepalive_idle.count()},
        {"keepalive_interval_ms", o.keepalive_interval.count()},
        {"keepalive_count", o.keepalive_count},
        {"splice", o.splice},
        {"busy_poll_us", o.busy_poll.count()},
        {"relay_threads", o.relay_threads},
        {"log_connections", o.log_connections},
        {"statistics", o.statistics},
    };
}

// The keys the encoder writes are exactly the keys accepted: one list, never two.
void require_keys(const json& j, const json& reference, const std::string& where) {
    if (!j.is_object()) throw bad(where + " is not an object");
    for (const auto& [k, v] : reference.items())
        if (!j.contains(k)) throw bad(where + ": missing key " + k);
    for (const auto& [k, v] : j.items())
        if (!reference.contains(k)) throw bad(where + ": unknown key " + k);
}

std::chrono::milliseconds duration(const json& j, const char* key) {
    const int64_t ms = j.at(key).get<int64_t>();
    if (ms < 0) throw bad(std::string(key) + " is negative");
    return std::chrono::milliseconds(ms);
}

StreamOptions stream_from_json(const json& j) {
    static const json reference = stream_json(StreamOptions{});
    require_keys(j, reference, "stream options");
    StreamOptions o;
    const std::string mode = j.at("upstream_mode").get<std::string>();
    auto m = value_in(upstream_mode_names(), mode);
    if (!m) throw bad("unknown upstream mode " + mode);
    o.upstream_mode = *m;
    o.upstream = j.at("upstream").get<std::string>();
    o.upstream_host = j.at("upstream_host").get<std::string>();
    o.upstream_addresses = j.at("upstream_addresses").get<std::vector<std::string>>();
    o.send_original_destination = j.at("send_original_destination").get<bool>();
    const std::string header = j.at("header").get<std::string>();
    auto format = transparent_header_format_from_name(header);
    if (!format) throw bad("unknown header format " + header);
    o.header = *format;
    o.proxy_protocol = j.at("proxy_protocol").get<bool>();
    o.allow = j.at("allow").get<std::vector<std::string>>();
    o.allowed_cids = j.at("allowed_cids").get<std::vector<uint32_t>>();
    o.allowed_sources = j.at("allowed_sources").get<std::vector<std::string>>();
    o.host_addresses = j.at("host_addresses").get<std::vector<std::string>>();
    o.max_connections = j.at("max_connections").get<int>();
    if (o.max_connections < 1) throw bad("max_connections < 1");
    o.connect_timeout = duration(j, "connect_timeout_ms");
    o.idle_timeout = duration(j, "idle_timeout_ms");
    o.header_timeout = duration(j, "header_timeout_ms");
    o.tcp_nodelay = j.at("tcp_nodelay").get<bool>();
    o.keepalive = j.at("keepalive").get<bool>();
    o.keepalive_idle = duration(j, "keepalive_idle_ms");
    o.keepalive_interval = duration(j, "keepalive_interval_ms");
    o.keepalive_count = j.at("keepalive_count").get<int>();
    o.splice = j.at("splice").get<bool>();
    {
        const int64_t us = j.at("busy_poll_us").get<int64_t>();
        // The policy allows at most 10 ms; a second is far past anything it could send.
        if (us < 0 || us > 1'000'000) throw bad("busy_poll_us out of range");
        o.busy_poll = std::chrono::microseconds(us);
    }
    o.relay_threads = j.at("relay_threads").get<int>();
    if (o.relay_threads < 0) throw bad("relay_threads < 0");
    o.log_connections = j.at("log_connections").get<bool>();
    o.statistics = j.at("statistics").get<bool>();
    return o;
}

json datagram_json(const DatagramOptions& o) {
    return {
        {"upstream", o.upstream},
        {"upstream_host", o.upstream_host},
        {"upstream_addresses", o.upstream_addresses},
        {"allowed_sources", o.allowed_sources},
        {"max_flows", o.max_flows},
        {"idle_timeout_ms", o.idle_timeout.count()},
        {"batch", o.batch},
        {"log_connections", o.log_connections},
    };
}

DatagramOptions datagram_from_json(const json& j) {
    static const json reference = datagram_json(DatagramOptions{});
    require_keys(j, reference, "datagram options");
    DatagramOptions o;
    o.upstream = j.at("upstream").get<std::string>();
    o.upstream_host = j.at("upstream_host").get<std::string>();
    o.upstream_addresses = j.at("upstream_addresses").get<std::vector<std::string>>();
    o.allowed_sources = j.at("allowed_sources").get<std::vector<std::string>>();
    o.max_flows = j.at("max_flows").get<int>();
    if (o.max_flows < 1) throw bad("max_flows < 1");
    o.idle_timeout = duration(j, "idle_timeout_ms");
    o.batch = j.at("batch").get<bool>();
    o.log_connections = j.at("log_connections").get<bool>();
    return o;
}

json header_json(const Handover& h) {
    return {{"proxy", h.proxy},
            {"kind", std::string(kind_name(h.kind))},
            {"index", h.index},
            {"generation", h.generation},
            {"drain_timeout_ms", h.drain_timeout.count()}};
}

json packet_json(const PacketOptions& o) {
    return {{"upstream", o.upstream},
            {"log_connections", o.log_connections},
            {"accept_when_stream_down", o.accept_when_stream_down},
            {"connect_timeout_ms", o.connect_timeout.count()},
            {"backoff_initial_ms", o.backoff_initial.count()},
            {"backoff_max_ms", o.backoff_max.count()},
            {"filter_destinations", o.filter_destinations},
            {"filter_sources", o.filter_sources},
            {"filter_drop_reserved", o.filter_drop_reserved},
            {"filter_source_ports", o.filter_source_ports},
            {"route_mtu", o.route_mtu},
            {"route_mtu_auto", o.route_mtu_auto}};
}

PacketOptions packet_from_json(const json& j) {
    static const json reference = packet_json(PacketOptions{});
    require_keys(j, reference, "packet options");
    PacketOptions o;
    o.upstream = j.at("upstream").get<std::string>();
    o.log_connections = j.at("log_connections").get<bool>();
    o.accept_when_stream_down = j.at("accept_when_stream_down").get<bool>();
    o.connect_timeout = duration(j, "connect_timeout_ms");
    o.backoff_initial = duration(j, "backoff_initial_ms");
    o.backoff_max = duration(j, "backoff_max_ms");
    o.filter_destinations = j.at("filter_destinations").get<std::vector<std::string>>();
    o.filter_sources = j.at("filter_sources").get<std::vector<std::string>>();
    o.filter_drop_reserved = j.at("filter_drop_reserved").get<bool>();
    o.filter_source_ports = j.at("filter_source_ports").get<std::vector<std::string>>();
    o.route_mtu = j.at("route_mtu").get<uint32_t>();
    o.route_mtu_auto = j.at("route_mtu_auto").get<bool>();
    return o;
}

std::string hex(const std::vector<uint8_t>& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (const uint8_t b : bytes) {
        out += kDigits[b >> 4];
        out += kDigits[b & 15];
    }
    return out;
}

std::vector<uint8_t> unhex(const std::string& text, const char* what) {
    const auto digit = [what](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        throw bad(std::string(what) + " is not lower-case hex");
    };
    if (text.size() % 2 != 0) throw bad(std::string(what) + " has an odd number of hex digits");
    std::vector<uint8_t> out;
    for (size_t i = 0; i < text.size(); i += 2)
        out.push_back(static_cast<uint8_t>(digit(text[i]) << 4 | digit(text[i + 1])));
    return out;
}

json tunnel_json(const TunnelOptions& o) {
    return {{"upstream", o.upstream},
            {"upstream_host", o.upstream_host},
            {"upstream_addresses", o.upstream_addresses},
            {"allowed_sources", o.allowed_sources},
            {"psk", hex(o.psk)},
            {"mtu", o.mtu},
            {"socket_buffer", o.socket_buffer},
            {"nodelay", o.nodelay},
            {"interval_ms", o.interval.count()},
            {"resend", o.resend},
            {"no_congestion_control", o.no_congestion_control},
            {"send_window", o.send_window},
            {"receive_window", o.receive_window},
            {"rekey_after", o.rekey_after},
            {"max_sessions", o.max_sessions},
            {"max_per_source", o.max_per_source},
            {"hellos_per_second", o.hellos_per_second},
            {"hello_burst", o.hello_burst},
            {"max_connections", o.max_connections},
            {"connect_timeout_ms", o.connect_timeout.count()},
            {"idle_timeout_ms", o.idle_timeout.count()},
            {"log_connections", o.log_connections},
            {"statistics", o.statistics}};
}

// A count the worker sizes things by: at least 1, at most `max`.
int count(const json& j, const char* key, int max) {
    const int v = j.at(key).get<int>();
    if (v < 1 || v > max) throw bad(std::string(key) + " out of range");
    return v;
}

TunnelOptions tunnel_from_json(const json& j) {
    static const json reference = tunnel_json(TunnelOptions{});
    require_keys(j, reference, "tunnel options");
    TunnelOptions o;
    o.upstream = j.at("upstream").get<std::string>();
    o.upstream_host = j.at("upstream_host").get<std::string>();
    o.upstream_addresses = j.at("upstream_addresses").get<std::vector<std::string>>();
    o.allowed_sources = j.at("allowed_sources").get<std::vector<std::string>>();
    o.psk = unhex(j.at("psk").get<std::string>(), "psk");
    if (!o.psk.empty() && o.psk.size() != 32) throw bad("psk is not 32 bytes");
    o.mtu = j.at("mtu").get<int>();
    if (o.mtu < 576 || o.mtu > 1500) throw bad("mtu out of range");
    o.socket_buffer = j.at("socket_buffer").get<int>();
    if (o.socket_buffer < 0) throw bad("socket_buffer is negative");
    o.nodelay = j.at("nodelay").get<bool>();
    o.interval = duration(j, "interval_ms");
    if (o.interval.count() < 1 || o.interval.count() > 5000) throw bad("interval out of range");
    o.resend = j.at("resend").get<int>();
    if (o.resend < 0) throw bad("resend is negative");
    o.no_congestion_control = j.at("no_congestion_control").get<bool>();
    o.send_window = count(j, "send_window", 65535);
    o.receive_window = count(j, "receive_window", 65535);
    o.rekey_after = j.at("rekey_after").get<uint64_t>();
    if (o.rekey_after < 1) throw bad("rekey_after < 1");
    o.max_sessions = count(j, "max_sessions", 65536);
    o.max_per_source = count(j, "max_per_source", 65536);
    o.hellos_per_second = count(j, "hellos_per_second", 100000);
    o.hello_burst = count(j, "hello_burst", 100000);
    o.max_connections = count(j, "max_connections", 1'000'000);
    o.connect_timeout = duration(j, "connect_timeout_ms");
    o.idle_timeout = duration(j, "idle_timeout_ms");
    if (o.idle_timeout.count() < 1) throw bad("idle_timeout must be positive");
    o.log_connections = j.at("log_connections").get<bool>();
    o.statistics = j.at("statistics").get<bool>();
    return o;
}

json fd_json(const HandoverFd& f) {
    return {{"role", std::string(role_name(f.role))}, {"endpoint", f.endpoint}};
}

// The family's options sit under the family's name, so a mismatch with the kind is visible.
json options_json(const FamilyOptions& o) {
    return std::visit(
        [](const auto& opts) -> json {
            using T = std::decay_t<decltype(opts)>;
            if constexpr (std::is_same_v<T, StreamOptions>)
                return {{std::string(kind_family_name(KindFamily::stream)), stream_json(opts)}};
            else if constexpr (std::is_same_v<T, DatagramOptions>)
                return {{std::string(kind_family_name(KindFamily::datagram)), datagram_json(opts)}};
            else if constexpr (std::is_same_v<T, PacketOptions>)
                return {{std::string(kind_family_name(KindFamily::packet)), packet_json(opts)}};
            else if constexpr (std::is_same_v<T, TunnelOptions>)
                return {{std::string(kind_family_name(KindFamily::tunnel)), tunnel_json(opts)}};
        },
        o);
}

}  // namespace

std::string Handover::to_json() const {
    json fd_list = json::array();
    for (const auto& f : fds) fd_list.push_back(fd_json(f));
    return json{
        {"header", header_json(*this)}, {"fds", fd_list}, {"options", options_json(options)}}
        .dump();
}

Handover Handover::from_json(const std::string& text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw bad(e.what());
    }
    try {
        require_keys(j, json{{"header", 0}, {"fds", 0}, {"options", 0}}, "message");
        Handover h;
        const json& head = j.at("header");
        require_keys(head, header_json(Handover{}), "header");
        h.proxy = head.at("proxy").get<std::string>();
        const std::string kind = head.at("kind").get<std::string>();
        auto k = kind_from_name(kind);
        if (!k) throw bad("unknown kind " + kind);
        h.kind = *k;
        h.index = head.at("index").get<int>();
        h.generation = head.at("generation").get<int>();
        h.drain_timeout = duration(head, "drain_timeout_ms");

        const json& fds = j.at("fds");
        if (!fds.is_array()) throw bad("fds is not an array");
        for (const auto& f : fds) {
            require_keys(f, fd_json(HandoverFd{}), "fd entry");
            const std::string role = f.at("role").get<std::string>();
            auto r = value_in(fd_role_names(), role);
            if (!r) throw bad("unknown fd role " + role);
            h.fds.push_back(HandoverFd{*r, f.at("endpoint").get<std::string>()});
        }

        const json& options = j.at("options");
        const KindFamily family = kind_row(h.kind).family;
        const std::string family_key(kind_family_name(family));
        require_keys(options, json{{family_key, 0}}, "options of a " + family_key + " kind");
        switch (family) {
            case KindFamily::stream:
                h.options = stream_from_json(options.at(family_key));
                break;
            case KindFamily::datagram:
                h.options = datagram_from_json(options.at(family_key));
                break;
            case KindFamily::packet:
                h.options = packet_from_json(options.at(family_key));
                break;
            case KindFamily::tunnel:
                h.options = tunnel_from_json(options.at(family_key));
                break;
        }
        return h;
    } catch (const json::exception& e) {
        throw bad(e.what());
    }
}

}  // namespace pfp
