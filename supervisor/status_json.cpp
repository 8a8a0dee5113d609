// The status as JSON (the control socket's answer) and back, for pf-proxyctl.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "common/text.hpp"
#include "supervisor/status.hpp"

namespace pfp::supervisor {
namespace {

using json = nlohmann::json;

// Reads the members of one object of the status, naming each by its path ("proxies[0].state")
// when it is missing or of the wrong type: a mismatch between pf-proxyctl and pf-proxyd shows up
// as a message, not as zeros.
class Reader {
  public:
    Reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
        if (!j_.is_object())
            throw std::runtime_error("status: " + (path_.empty() ? "the status" : quoted(path_)) +
                                     " must be an object, got " + j_.type_name());
    }

    const json& member(const char* key) const {
        const auto it = j_.find(key);
        if (it == j_.end()) throw std::runtime_error("status: member " + name(key) + " is missing");
        return *it;
    }
    std::string str(const char* key) const {
        const json& v = member(key);
        if (!v.is_string()) mistyped(key, "a string", v);
        return v.get<std::string>();
    }
    int64_t integer(const char* key, int64_t lo, int64_t hi) const {
        const json& v = member(key);
        if (v.is_number_unsigned() && v.get<uint64_t>() <= static_cast<uint64_t>(hi)) {
            const auto n = static_cast<int64_t>(v.get<uint64_t>());
            if (n >= lo) return n;
        } else if (v.is_number_integer() && !v.is_number_unsigned()) {
            const auto n = v.get<int64_t>();
            if (n >= lo && n <= hi) return n;
        }
        mistyped(key, "an integer " + std::to_string(lo) + ".." + std::to_string(hi), v);
    }
    uint64_t count(const char* key) const {
        const json& v = member(key);
        if (!v.is_number_unsigned()) mistyped(key, "an unsigned integer", v);
        return v.get<uint64_t>();
    }
    double seconds(const char* key) const {
        const json& v = member(key);
        if (!v.is_number() || !(v.get<double>() >= 0)) mistyped(key, "a number >= 0", v);
        return v.get<double>();
    }
    const json& array(const char* key) const {
        const json& v = member(key);
        if (!v.is_array()) mistyped(key, "an array", v);
        return v;
    }
    std::string path(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  private:
    static std::string quoted(const std::string& s) { return "\"" + s + "\""; }
    std::string name(const char* key) const { return quoted(path(key)); }
    [[noreturn]] void mistyped(const char* key, const std::string& expected, const json& v) const {
        std::string got = v.is_primitive() && !v.is_string() ? v.dump() : v.type_name();
        throw std::runtime_error("status: member " + name(key) + " must be " + expected + ", got " +
                                 got);
    }

    const json& j_;
    std::string path_;
};

constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

WorkerStatus worker_from_json(const json& j, const std::string& path) {
    const Reader r(j, path);
    WorkerStatus w;
    w.pid = static_cast<pid_t>(r.integer("pid", -1, kMaxInt));
    w.index = static_cast<int>(r.integer("index", 0, kMaxInt));
    w.generation = static_cast<int>(r.integer("generation", 0, kMaxInt));
    w.state = r.str("state");
    return w;
}

ProxyCounters counters_from_json(const json& j, const std::string& path) {
    const Reader r(j, path);
    ProxyCounters c;
    c.accepted = r.count("accepted");
    c.active = r.count("active");
    c.bytes_up = r.count("bytes_up");
    c.bytes_down = r.count("bytes_down");
    c.connect_failures = r.count("connect_failures");
    c.accept_errors = r.count("accept_errors");
    c.denied = r.count("denied");
    if (j.contains("datagram")) {
        const Reader d(r.member("datagram"), r.path("datagram"));
        ipc::DatagramStats s;
        for (const auto& f : ipc::datagram_fields()) s.*f.field = d.count(f.name);
        c.datagram = s;
    }
    if (j.contains("packet")) {
        const Reader d(r.member("packet"), r.path("packet"));
        ipc::PacketStats s;
        for (const auto& f : ipc::packet_fields()) s.*f.field = d.count(f.name);
        c.packet = s;
    }
    if (j.contains("tunnel")) {
        const Reader d(r.member("tunnel"), r.path("tunnel"));
        ipc::TunnelStats s;
        for (const auto& f : ipc::tunnel_fields()) s.*f.field = d.count(f.name);
        c.tunnel = s;
    }
    return c;
}

ProxyStatus proxy_from_json(const json& j, const std::string& path) {
    const Reader r(j, path);
    ProxyStatus p;
    p.name = r.str("name");
    p.kind = r.str("kind");
    p.listen = r.str("listen");
    p.upstream = r.str("upstream");
    p.state = r.str("state");
    p.generation = static_cast<int>(r.integer("generation", 0, kMaxInt));
    p.restarts = r.count("restarts");
    p.last_exit = r.str("last_exit");
    const json& workers = r.array("workers");
    for (size_t i = 0; i < workers.size(); ++i)
        p.workers.push_back(
            worker_from_json(workers[i], r.path("workers") + "[" + std::to_string(i) + "]"));
    p.counters = counters_from_json(r.member("counters"), r.path("counters"));
    if (j.contains("resolved")) {
        const Reader n(r.member("resolved"), r.path("resolved"));
        NameStatus s;
        s.host = n.str("host");
        const json& list = n.array("addresses");
        for (const json& a : list) {
            if (!a.is_string())
                throw std::runtime_error("status: member \"" + n.path("addresses") +
                                         "\" must hold strings");
            s.addresses.push_back(a.get<std::string>());
        }
        s.resolved_at = n.seconds("resolved_at");
        s.refresh_in_seconds = n.seconds("refresh_in_seconds");
        s.error = n.str("error");
        p.resolved = std::move(s);
    }
    return p;
}

}  // namespace

nlohmann::json to_json(const DaemonStatus& s) {
    json proxies = json::array();
    for (const auto& p : s.proxies) {
        json workers = json::array();
        for (const auto& w : p.workers) {
            workers.push_back({{"pid", w.pid},
                               {"index", w.index},
                               {"generation", w.generation},
                               {"state", w.state}});
        }
        const ProxyCounters& c = p.counters;
        json counters = {{"accepted", c.accepted},
                         {"active", c.active},
                         {"bytes_up", c.bytes_up},
                         {"bytes_down", c.bytes_down},
                         {"connect_failures", c.connect_failures},
                         {"accept_errors", c.accept_errors},
                         {"denied", c.denied}};
        if (c.datagram) {
            json d = json::object();
            for (const auto& f : ipc::datagram_fields()) d[f.name] = (*c.datagram).*f.field;
            counters["datagram"] = std::move(d);
        }
        if (c.packet) {
            json d = json::object();
            for (const auto& f : ipc::packet_fields()) d[f.name] = (*c.packet).*f.field;
            counters["packet"] = std::move(d);
        }
        if (c.tunnel) {
            json d = json::object();
            for (const auto& f : ipc::tunnel_fields()) d[f.name] = (*c.tunnel).*f.field;
            counters["tunnel"] = std::move(d);
        }
        json entry = {{"name", p.name},
                      {"kind", p.kind},
                      {"listen", p.listen},
                      {"upstream", p.upstream},
                      {"state", p.state},
                      {"generation", p.generation},
                      {"restarts", p.restarts},
                      {"last_exit", p.last_exit},
                      {"workers", std::move(workers)},
                      {"counters", std::move(counters)}};
        if (p.resolved) {
            const NameStatus& n = *p.resolved;
            entry["resolved"] = {{"host", n.host},
                                 {"addresses", n.addresses},
                                 {"resolved_at", n.resolved_at},
                                 {"refresh_in_seconds", n.refresh_in_seconds},
                                 {"error", n.error}};
        }
        proxies.push_back(std::move(entry));
    }
    return {{"version", s.version},
            {"pid", s.pid},
            {"policy", s.policy},
            {"policy_generation", s.policy_generation},
            {"state", s.state},
            {"uptime_seconds", s.uptime_seconds},
            {"proxies", std::move(proxies)}};
}

DaemonStatus status_from_json(const nlohmann::json& j) {
    const Reader r(j, "");
    DaemonStatus s;
    s.version = r.str("version");
    s.pid = static_cast<pid_t>(r.integer("pid", -1, kMaxInt));
    s.policy = r.str("policy");
    s.policy_generation = static_cast<int>(r.integer("policy_generation", 0, kMaxInt));
    s.state = r.str("state");
    s.uptime_seconds = r.seconds("uptime_seconds");
    const json& proxies = r.array("proxies");
    for (size_t i = 0; i < proxies.size(); ++i)
        s.proxies.push_back(proxy_from_json(proxies[i], "proxies[" + std::to_string(i) + "]"));
    return s;
}

}  // namespace pfp::supervisor
