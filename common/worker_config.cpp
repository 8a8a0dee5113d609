#include "common/worker_config.hpp"

#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace pfp {

using nlohmann::json;

std::string WorkerConfig::to_json() const {
    json j = {
        {"proxy", proxy},
        {"kind", std::string(kind_name(kind))},
        {"index", index},
        {"generation", generation},
        {"listen", listen},
        {"upstream", upstream},
        {"max_connections", max_connections},
        {"connect_timeout_ms", connect_timeout.count()},
        {"idle_timeout_ms", idle_timeout.count()},
        {"drain_timeout_ms", drain_timeout.count()},
        {"tcp_nodelay", tcp_nodelay},
        {"keepalive", keepalive},
        {"keepalive_idle_ms", keepalive_idle.count()},
        {"keepalive_interval_ms", keepalive_interval.count()},
        {"keepalive_count", keepalive_count},
        {"splice", splice},
        {"upstream_mode", upstream_mode},
        {"send_original_destination", send_original_destination},
        {"header", header},
        {"proxy_protocol", proxy_protocol},
        {"allow", allow},
        {"allowed_cids", allowed_cids},
        {"allowed_sources", allowed_sources},
        {"log_connections", log_connections},
        {"statistics", statistics},
    };
    return j.dump();
}

WorkerConfig WorkerConfig::from_json(const std::string& text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw std::runtime_error(std::string("handover config: ") + e.what());
    }
    if (!j.is_object()) throw std::runtime_error("handover config: not an object");
    // The keys to_json() writes are exactly the keys accepted: one list, never two.
    static const json reference = json::parse(WorkerConfig{}.to_json());
    for (const auto& [k, v] : reference.items())
        if (!j.contains(k)) throw std::runtime_error("handover config: missing key " + k);
    for (const auto& [k, v] : j.items())
        if (!reference.contains(k)) throw std::runtime_error("handover config: unknown key " + k);
    try {
        WorkerConfig c;
        c.proxy = j.at("proxy").get<std::string>();
        auto kind = kind_from_name(j.at("kind").get<std::string>());
        if (!kind) throw std::runtime_error("unknown kind");
        c.kind = *kind;
        c.index = j.at("index").get<int>();
        c.generation = j.at("generation").get<int>();
        c.listen = j.at("listen").get<std::string>();
        c.upstream = j.at("upstream").get<std::string>();
        c.max_connections = j.at("max_connections").get<int>();
        c.connect_timeout = std::chrono::milliseconds(j.at("connect_timeout_ms").get<int64_t>());
        c.idle_timeout = std::chrono::milliseconds(j.at("idle_timeout_ms").get<int64_t>());
        c.drain_timeout = std::chrono::milliseconds(j.at("drain_timeout_ms").get<int64_t>());
        c.tcp_nodelay = j.at("tcp_nodelay").get<bool>();
        c.keepalive = j.at("keepalive").get<bool>();
        c.keepalive_idle = std::chrono::milliseconds(j.at("keepalive_idle_ms").get<int64_t>());
        c.keepalive_interval =
            std::chrono::milliseconds(j.at("keepalive_interval_ms").get<int64_t>());
        c.keepalive_count = j.at("keepalive_count").get<int>();
        c.splice = j.at("splice").get<bool>();
        c.upstream_mode = j.at("upstream_mode").get<std::string>();
        c.send_original_destination = j.at("send_original_destination").get<bool>();
        c.header = j.at("header").get<std::string>();
        c.proxy_protocol = j.at("proxy_protocol").get<bool>();
        c.allow = j.at("allow").get<std::vector<std::string>>();
        c.allowed_cids = j.at("allowed_cids").get<std::vector<uint32_t>>();
        c.allowed_sources = j.at("allowed_sources").get<std::vector<std::string>>();
        c.log_connections = j.at("log_connections").get<bool>();
        c.statistics = j.at("statistics").get<bool>();
        if (c.max_connections < 1) throw std::runtime_error("max_connections < 1");
        return c;
    } catch (const json::exception& e) {
        throw std::runtime_error(std::string("handover config: ") + e.what());
    }
}

}  // namespace pfp
