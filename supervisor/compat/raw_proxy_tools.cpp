#include "supervisor/compat/raw_proxy_tools.hpp"

#include <nlohmann/json.hpp>

#include "common/endpoint.hpp"
#include "supervisor/compat/clap_text.hpp"
#include "supervisor/compat/options.hpp"
#include "supervisor/compat/seed_policy.hpp"
#include "supervisor/compat/tcp_proxy_tools.hpp"

namespace pfp::compat {
namespace {

using Json = nlohmann::ordered_json;

constexpr OptSpec kQueueOpt{'q', "queue-num", "QUEUE_NUM", "nfqueue number of the listener <num>",
                            true};

bool reads_queue(Tool tool) {
    return tool == Tool::ip_to_vsock_raw_incoming || tool == Tool::ip_to_vsock_raw_outgoing;
}

// Each tool's options, with the seed's help lines (and pf-proxy's --user).
std::vector<OptSpec> options_for(Tool tool) {
    if (reads_queue(tool))
        return {{'v', "vsock-addr", "VSOCK_ADDR", "vsock address to forward packets to <cid:port>",
                 true},
                kQueueOpt,
                kUserOpt,
                kHelpOpt,
                kVersionOpt};
    std::vector<OptSpec> specs{
        {'v', "vsock-addr", "VSOCK_ADDR", "vsock address to listen on <cid:port>", true}};
    if (tool == Tool::vsock_to_ip_raw_incoming)
        specs.push_back({'d', "device", "DEVICE", "network device to forward packets on", true});
    specs.insert(specs.end(), {kUserOpt, kHelpOpt, kVersionOpt});
    return specs;
}

std::variant<Finished, SeedCommand> build(Tool tool, std::string_view command,
                                          const std::vector<OptSpec>& specs, const Values& values) {
    SeedCommand cmd;
    cmd.tool = tool;
    cmd.command = std::string(command);
    Json proxy = Json::object();
    const std::string vtext = *value_of(values, "vsock-addr");
    auto vsock = parse_vsock_arg(vtext);
    if (auto* err = std::get_if<std::string>(&vsock)) return Finished{1, {"", *err}};
    const std::string vsock_text = to_string(std::get<Endpoint>(vsock));
    if (reads_queue(tool)) {
        // clap's u16 value parser.
        const std::string qtext = *value_of(values, "queue-num");
        const RustU32 q = rust_parse_u32(qtext);
        if (!q.value || *q.value > 65535) {
            const std::string why =
                q.value ? "number too large to fit in target type" : std::string(q.error);
            return usage_error(
                "invalid value '" + qtext + "' for '--queue-num <QUEUE_NUM>': " + why, command,
                specs, false);
        }
        proxy["listen"] = "nfqueue:" + std::to_string(*q.value);
        proxy["upstream"] = vsock_text;
    } else {
        proxy["listen"] = vsock_text;
        if (tool == Tool::vsock_to_ip_raw_incoming) {
            const std::string dev = *value_of(values, "device");
            try {
                proxy["upstream"] = to_string(parse_endpoint("raw:" + dev));
            } catch (const endpoint_error& e) {
                return usage_error(
                    "invalid value '" + dev + "' for '--device <DEVICE>': " + e.what(), command,
                    specs, false);
            }
        } else {
            proxy["upstream"] = "raw:route";
        }
    }
    return with_policy(std::move(cmd), value_of(values, "user"), std::move(proxy));
}

}  // namespace

bool is_raw_tool(Tool tool) {
    switch (tool) {
        case Tool::ip_to_vsock_raw_incoming:
        case Tool::ip_to_vsock_raw_outgoing:
        case Tool::vsock_to_ip_raw_incoming:
        case Tool::vsock_to_ip_raw_outgoing:
            return true;
        default:
            return false;
    }
}

std::variant<Finished, SeedCommand> parse_raw_proxy_tool(Tool tool, std::string_view command,
                                                         const std::vector<std::string>& args) {
    const std::vector<OptSpec> specs = options_for(tool);
    auto values = read_options(command, specs, args);
    if (auto* f = std::get_if<Finished>(&values)) return *f;
    return build(tool, command, specs, std::get<Values>(values));
}

}  // namespace pfp::compat
