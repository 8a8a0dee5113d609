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
    const std::set<std::string> keys = {"proxy",
                                        "kind",
                                        "index",
                                        "generation",
                                        "listen",
                                        "upstream",
                                        "max_connections",
                                        "connect_timeout_ms",
                                        "idle_timeout_ms",
                                        "drain_timeout_ms",
                                        "tcp_nodelay",
                                        "keepalive",
                                        "keepalive_idle_ms",
                                        "keepalive_interval_ms",
                                        "keepalive_count",
                                        "splice"};
    for (const auto& [k, v] : j.items())
        if (!keys.contains(k)) throw std::runtime_error("handover config: unknown key " + k);
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
        if (c.max_connections < 1) throw std::runtime_error("max_connections < 1");
        return c;
    } catch (const json::exception& e) {
        throw std::runtime_error(std::string("handover config: ") + e.what());
    }
}

}  // namespace pfp
