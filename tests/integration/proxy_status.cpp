#include "proxy_status.hpp"

#include <stdexcept>

namespace pfp::test {

nlohmann::json status_json(const Daemon& d) {
    const CommandResult r = run_command(
        {bin_dir() + "/pf-proxyctl", "--control", d.control_path(), "status", "--json"});
    nlohmann::json s = r.status == 0 ? nlohmann::json::parse(r.output, nullptr, false)
                                     : nlohmann::json(nlohmann::json::value_t::discarded);
    if (s.is_discarded() || !s.is_object()) return {{"error", r.output}};
    return s;
}

nlohmann::json proxy_status(const nlohmann::json& status, const std::string& name) {
    if (status.contains("proxies"))
        for (const auto& p : status.at("proxies"))
            if (p.value("name", "") == name) return p;
    throw std::runtime_error("no proxy \"" + name + "\" in the status: " + status.dump());
}

nlohmann::json proxy_counters(const Daemon& d, const std::string& name) {
    const nlohmann::json s = status_json(d);
    if (s.contains("proxies"))
        for (const auto& p : s.at("proxies"))
            if (p.value("name", "") == name && p.contains("counters")) return p.at("counters");
    return nlohmann::json::object();
}

}  // namespace pfp::test
