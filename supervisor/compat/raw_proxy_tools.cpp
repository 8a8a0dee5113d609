#include "supervisor/compat/raw_proxy_tools.hpp"

#include <nlohmann/json.hpp>

#include "common/endpoint.hpp"
#include "common/packet_filter.hpp"
#include "supervisor/compat/clap_text.hpp"
#include "supervisor/compat/egress_address.hpp"
#include "supervisor/compat/options.hpp"
#include "supervisor/compat/seed_policy.hpp"
#include "supervisor/compat/tcp_proxy_tools.hpp"

namespace pfp::compat {
namespace {

using Json = nlohmann::ordered_json;

constexpr OptSpec kQueueOpt{'q', "queue-num", "QUEUE_NUM", "nfqueue number of the listener <num>",
                            true};
// The deployed tools' filters (docs/policy.md, "Packet filters"): the incoming side injects only
// packets to the enclave's address, which it reads from this file at start; the outgoing side
// only packets from the egress interface's address, to unreserved destinations, from the
// enclave's service and ephemeral ports.
constexpr const char* kEnclaveAddressFile = "/app/ip.txt";
constexpr OptSpec kIpOpt{0, "ip", "IP",
                         "pf-proxy: inject only packets to IP [default: /app/ip.txt]"};
constexpr OptSpec kEgressOpt{0, "egress-ip", "IP",
                             "pf-proxy: inject only packets from IP [default: eth*/ens* IPv4]"};

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
    constexpr OptSpec listen_on{'v', "vsock-addr", "VSOCK_ADDR",
                                "vsock address to listen on <cid:port>", true};
    if (tool == Tool::vsock_to_ip_raw_incoming)
        return {listen_on, {'d', "device", "DEVICE", "network device to forward packets on", true},
                kIpOpt,    kUserOpt,
                kHelpOpt,  kVersionOpt};
    return {listen_on, kEgressOpt, kUserOpt, kHelpOpt, kVersionOpt};
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
            std::string error;
            std::optional<std::string> ip = value_of(values, "ip");
            if (!ip) ip = read_enclave_address(kEnclaveAddressFile, error);
            if (!ip)
                return Finished{1, {"", "Error: no enclave address: " + error + " (give --ip)\n"}};
            proxy["filter"] = {{"destinations", Json::array({*ip})}};
            cmd.startup.out = "Enclave address: " + *ip + "\n";
        } else {
            proxy["upstream"] = "raw:route";
            std::optional<std::string> ip = value_of(values, "egress-ip");
            if (ip) {
                cmd.startup.out = "Egress address: " + *ip + "\n";
            } else if (const auto found = detect_egress_address()) {
                ip = found->address;
                cmd.startup.out = "Egress address: " + *ip + " (" + found->interface + ")\n";
            } else {
                return Finished{1,
                                {"",
                                 "Error: no egress address: no eth* or ens* interface has "
                                 "an IPv4 address (give --egress-ip)\n"}};
            }
            Json ports = Json::array();
            for (const PortSpan& r : kOysterSourcePorts)
                ports.push_back(r.first == r.last
                                    ? std::to_string(r.first)
                                    : std::to_string(r.first) + "-" + std::to_string(r.last));
            proxy["filter"] = {{"sources", Json::array({*ip})},
                               {"drop_reserved", true},
                               {"source_ports", std::move(ports)}};
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
