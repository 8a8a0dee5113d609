#include "policy/packet_filter_options.hpp"

#include <array>
#include <string_view>

#include "common/packet_filter.hpp"
#include "policy/names.hpp"
#include "policy/wording.hpp"

namespace pfp::policy::detail {
namespace {

constexpr std::array<std::string_view, 4> kFilterKeys{"destinations", "sources", "drop_reserved",
                                                      "source_ports"};

// An array of at most `max` strings, each accepted by `valid`; all or nothing.
template <typename Valid>
std::optional<std::vector<std::string>> strings(Checker& check, const json& v,
                                                const std::string& at, size_t max,
                                                std::string_view plural, std::string_view singular,
                                                std::string_view example, Valid valid) {
    if (!v.is_array() || v.empty() || v.size() > max) {
        check.error(at, "expected an array of 1 to " + std::to_string(max) + " " +
                            std::string(plural) + " such as [" + std::string(example) + "]" +
                            ", got " +
                            (v.is_array() ? std::to_string(v.size()) + " elements" : type_of(v)));
        return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (size_t i = 0; i < v.size(); ++i) {
        const std::string el = at + "/" + std::to_string(i);
        if (!v[i].is_string() || !valid(v[i].get_ref<const std::string&>())) {
            check.error(el, "expected " + std::string(singular) + " such as " +
                                std::string(example) + ", got " + value_of(v[i]));
            ok = false;
            continue;
        }
        out.push_back(v[i].get<std::string>());
    }
    if (!ok) return std::nullopt;
    return out;
}

}  // namespace

void parse_packet_filter(Checker& check, const json& v, const std::string& pointer,
                         std::optional<WorkerKind> kind, Proxy& p) {
    if (const json* m = member(v, "route_mtu")) {
        const std::string at = pointer + "/route_mtu";
        if (kind && *kind != WorkerKind::stream_to_raw) {
            check.error(at, "route_mtu applies only to stream-to-raw (a raw: upstream), not " +
                                std::string(kind_name(*kind)));
        } else if (m->is_string() && m->get_ref<const std::string&>() == "auto") {
            p.route_mtu_auto = true;
        } else if (m->is_number_integer() && m->get<int64_t>() >= 1280 &&
                   m->get<int64_t>() <= 65535) {
            p.route_mtu = static_cast<uint32_t>(m->get<int64_t>());
        } else {
            check.error(at, "expected an integer 1280-65535 or \"auto\", got " + value_of(*m));
        }
    }
    const json* f = member(v, "filter");
    if (!f) return;
    const std::string at = pointer + "/filter";
    if (kind && *kind != WorkerKind::stream_to_raw) {
        check.error(at, "filter applies only to stream-to-raw (a raw: upstream), not " +
                            std::string(kind_name(*kind)));
        return;
    }
    if (!f->is_object()) {
        check.error(at,
                    "expected an object {destinations, sources, drop_reserved, "
                    "source_ports}, got " +
                        type_of(*f));
        return;
    }
    check.known_keys(*f, at, kFilterKeys);
    const auto address = [](const std::string& s) { return parse_ip_address(s).has_value(); };
    if (const json* x = member(*f, "destinations")) {
        if (auto list = strings(check, *x, at + "/destinations", PacketFilter::kMaxAddresses,
                                "IP addresses", "an IP address", R"("10.0.0.5")", address))
            p.filter_destinations = std::move(*list);
    }
    if (const json* x = member(*f, "sources")) {
        if (auto list = strings(check, *x, at + "/sources", PacketFilter::kMaxAddresses,
                                "IP addresses", "an IP address", R"("203.0.113.7")", address))
            p.filter_sources = std::move(*list);
    }
    if (const json* x = member(*f, "drop_reserved")) {
        if (auto b = check.boolean(*x, at + "/drop_reserved")) p.filter_drop_reserved = *b;
    }
    if (const json* x = member(*f, "source_ports")) {
        const auto range = [](const std::string& s) { return parse_port_range(s).has_value(); };
        if (auto list =
                strings(check, *x, at + "/source_ports", PacketFilter::kMaxPortRanges,
                        "ports or port ranges", "a port or port range", R"("1024-61439")", range))
            p.filter_source_ports = std::move(*list);
    }
}

}  // namespace pfp::policy::detail
