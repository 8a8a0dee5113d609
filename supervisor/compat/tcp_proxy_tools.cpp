#include "supervisor/compat/tcp_proxy_tools.hpp"

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "common/allow_list.hpp"
#include "common/endpoint.hpp"
#include "common/host_endpoint.hpp"
#include "supervisor/compat/clap_text.hpp"
#include "supervisor/compat/options.hpp"
#include "supervisor/compat/seed_policy.hpp"

namespace pfp::compat {
namespace {

using Json = nlohmann::ordered_json;

constexpr OptSpec kHeaderOpt{0, "header", "FORMAT",
                             "pf-proxy: destination header, standard (default) or oyster-v4"};
constexpr OptSpec kAllowOpt{0,
                            "allow",
                            "CIDR:PORTS",
                            "pf-proxy: also allow this loopback, link-local or metadata "
                            "destination (repeatable)",
                            false,
                            true};

// Each tool's options, with the seed's help lines.
std::vector<OptSpec> options_for(Tool tool) {
    switch (tool) {
        case Tool::vsock_to_ip:
            return {{'v', "vsock-addr", "VSOCK_ADDR",
                     "vsock address of the listener side (e.g. 88:4000)", true},
                    {'i', "ip-addr", "IP_ADDR",
                     "ip address of the upstream side (e.g. 127.0.0.1:4000)", true},
                    kUserOpt,
                    kHelpOpt,
                    kVersionOpt};
        case Tool::ip_to_vsock:
            return {{'i', "ip-addr", "IP_ADDR",
                     "ip address of the listener side (e.g. 0.0.0.0:4000)", true},
                    {'v', "vsock-addr", "VSOCK_ADDR",
                     "vsock address of the upstream side (e.g. 88:4000)", true},
                    kUserOpt,
                    kHelpOpt,
                    kVersionOpt};
        case Tool::vsock_to_ip_transparent:
            return {{'v', "vsock-addr", "VSOCK_ADDR",
                     "vsock address of the listener side, usually open to the other side of the "
                     "transparent proxy (e.g. 3:1200)",
                     true},
                    kAllowOpt,
                    kHeaderOpt,
                    kUserOpt,
                    kHelpOpt,
                    kVersionOpt};
        case Tool::ip_to_vsock_transparent:
            return {{'i', "ip-addr", "IP_ADDR",
                     "ip address of the listener side (e.g. 127.0.0.1:1200)", true},
                    {'v', "vsock-addr", "VSOCK_ADDR",
                     "vsock address of the upstream side, usually the other side of the "
                     "transparent proxy (e.g. 3:1200)",
                     true},
                    kHeaderOpt,
                    kUserOpt,
                    kHelpOpt,
                    kVersionOpt};
        case Tool::transparent_port_to_vsock:
            return {{'i', "ip-addr", "IP_ADDR",
                     "ip address of the listener side (e.g. 127.0.0.1:1200)", true},
                    {'v', "vsock", "VSOCK",
                     "CID from vsock address of the upstream side (e.g. 88 from 88:1200/CID:PORT "
                     "specification)",
                     true},
                    kUserOpt,
                    kHelpOpt,
                    kVersionOpt};
        default:  // vsockproxy and the raw tools have files of their own
            break;
    }
    return {kUserOpt, kHelpOpt, kVersionOpt};
}

// ---- Addresses ----------------------------------------------------------------------------------

bool has_prefix(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

// A TCP-side argument: IP:PORT, [IPv6]:PORT or tcp:...; the error is the cause to report.
std::variant<Endpoint, std::string> parse_tcp_arg(std::string_view text) {
    try {
        Endpoint e = parse_endpoint_or_bare(text, Scheme::tcp);
        if (e.scheme != Scheme::tcp) {
            return "invalid endpoint " + rust_debug(text) + ": expected IP:PORT or [IPv6]:PORT, " +
                   "not a " + std::string(scheme_name(e.scheme)) + " endpoint";
        }
        return e;
    } catch (const endpoint_error& e) {
        return std::string(e.what());
    }
}

// vsock-to-ip's -i: IP:PORT, [IPv6]:PORT, or HOST:PORT (also tcp:...), whose name pf-proxyd
// resolves and refreshes like a policy's "tcp:HOST:PORT" upstream.
std::variant<Endpoint, std::string> parse_upstream_arg(std::string_view text) {
    auto numeric = parse_tcp_arg(text);
    if (std::holds_alternative<Endpoint>(numeric)) return numeric;
    std::string_view rest = text;
    if (has_prefix(rest, "tcp:")) rest.remove_prefix(4);
    if (auto named = parse_host_endpoint("tcp:" + std::string(rest))) return *named;
    return numeric;
}

constexpr std::string_view kMalformedListener =
    "Failed to bind listener: malformed listening address:port";

// The seeds parse their TCP listening address only when they bind it, after printing their
// start-up lines: a bad one becomes the command's late error (and nullopt).
std::optional<Endpoint> tcp_listener(std::string_view text, SeedCommand& cmd) {
    auto listen = parse_tcp_arg(text);
    if (auto* cause = std::get_if<std::string>(&listen)) {
        cmd.late_error = Output{"", anyhow_error(kMalformedListener, *cause)};
        return std::nullopt;
    }
    return std::get<Endpoint>(listen);
}

// --header: the policy's "header" names, checked here for clap's message.
std::optional<Finished> check_header(std::string_view command, const std::vector<OptSpec>& specs,
                                     const Values& values, Json& proxy) {
    auto header = value_of(values, "header");
    if (!header || *header == "standard") return std::nullopt;
    if (*header == "oyster-v4") {
        proxy["header"] = *header;
        return std::nullopt;
    }
    return usage_error("invalid value '" + *header + "' for '--header <FORMAT>'\n  [possible " +
                           "values: standard, oyster-v4]",
                       command, specs, false);
}

// ---- From options to a policy -------------------------------------------------------------------
// Each tool checks its arguments in the seed's order (errors before the startup lines, then the
// startup lines, then the late error) and writes the policy entry a user would write for it.

std::variant<Finished, SeedCommand> build(Tool tool, std::string_view command,
                                          const std::vector<OptSpec>& specs, const Values& values) {
    SeedCommand cmd;
    cmd.tool = tool;
    cmd.command = std::string(command);
    Json proxy = Json::object();
    Json extra = Json::object();  // the keys after listen and upstream

    switch (tool) {
        case Tool::vsock_to_ip: {
            const std::string vtext = *value_of(values, "vsock-addr");
            const std::string itext = *value_of(values, "ip-addr");
            auto listen = parse_vsock_arg(vtext);
            if (auto* err = std::get_if<std::string>(&listen)) return Finished{1, {"", *err}};
            cmd.startup.out = "Listening on: " + describe_vsock(std::get<Endpoint>(listen), vtext) +
                              "\nProxying to: " + rust_debug(itext) + "\n";
            // The seed connects to its -i text per connection; a bad one fails every connection.
            auto upstream = parse_upstream_arg(itext);
            if (auto* cause = std::get_if<std::string>(&upstream)) {
                cmd.late_error =
                    Output{"", anyhow_error("failed to connect to TCP endpoint", *cause)};
                return cmd;
            }
            // No allow list: the seed connected to any -i, loopback included.
            proxy["listen"] = to_string(std::get<Endpoint>(listen));
            proxy["upstream"] = to_string(std::get<Endpoint>(upstream));
            break;
        }
        case Tool::ip_to_vsock:
        case Tool::ip_to_vsock_transparent: {
            const std::string itext = *value_of(values, "ip-addr");
            const std::string vtext = *value_of(values, "vsock-addr");
            auto upstream = parse_vsock_arg(vtext);
            if (auto* err = std::get_if<std::string>(&upstream)) return Finished{1, {"", *err}};
            if (tool == Tool::ip_to_vsock_transparent) extra["send_original_destination"] = true;
            if (auto f = check_header(command, specs, values, extra)) return *f;
            cmd.startup.out = "Listening on: " + rust_debug(itext) + "\nProxying to: " +
                              describe_vsock(std::get<Endpoint>(upstream), vtext) + "\n";
            auto listen = tcp_listener(itext, cmd);
            if (!listen) return cmd;
            proxy["listen"] = to_string(*listen);
            proxy["upstream"] = to_string(std::get<Endpoint>(upstream));
            break;
        }
        case Tool::vsock_to_ip_transparent: {
            const std::string vtext = *value_of(values, "vsock-addr");
            // The seed relayed anywhere: an open relay written on purpose ("any", which
            // pf-proxyd warns about at start), less the protected destinations
            // (common/allow_list.hpp); --allow adds some of those back, in a list.
            Json allow = "any";
            if (auto it = values.find("allow"); it != values.end()) {
                allow = Json::array({"0.0.0.0/0:*", "[::]/0:*"});
                for (const auto& entry : it->second) {
                    try {
                        parse_allow_entry(entry);
                    } catch (const allow_list_error& e) {
                        return usage_error(
                            "invalid value '" + entry + "' for '--allow <CIDR:PORTS>': " + e.what(),
                            command, specs, false);
                    }
                    allow.push_back(entry);
                }
            }
            extra["allow"] = std::move(allow);
            if (auto f = check_header(command, specs, values, extra)) return *f;
            auto listen = parse_vsock_arg(vtext);
            if (auto* err = std::get_if<std::string>(&listen)) return Finished{1, {"", *err}};
            cmd.startup.out =
                "Listening on: " + describe_vsock(std::get<Endpoint>(listen), vtext) + "\n";
            proxy["listen"] = to_string(std::get<Endpoint>(listen));
            proxy["upstream"] = "destination-header";
            break;
        }
        case Tool::transparent_port_to_vsock: {
            const std::string itext = *value_of(values, "ip-addr");
            const std::string ctext = *value_of(values, "vsock");
            const RustU32 cid = rust_parse_u32(ctext);
            if (!cid.value) {
                return usage_error("invalid value '" + ctext +
                                       "' for '--vsock <VSOCK>': " + std::string(cid.error),
                                   command, specs, false);
            }
            // The seed prints the parsed u32, so "+88" shows as 88.
            cmd.startup.out = "Listening on: " + rust_debug(itext) +
                              "\nProxying to: " + std::to_string(*cid.value) + "\n";
            auto listen = tcp_listener(itext, cmd);
            if (!listen) return cmd;
            proxy["listen"] = to_string(*listen);
            proxy["upstream"] = "vsock:" + std::to_string(*cid.value) + ":original-port";
            break;
        }
        default:
            break;
    }
    for (auto& [key, value] : extra.items()) proxy[key] = std::move(value);
    return with_policy(std::move(cmd), value_of(values, "user"), std::move(proxy));
}

}  // namespace

std::variant<Endpoint, std::string> parse_vsock_arg(std::string_view text) {
    if (has_prefix(text, "vsock:") || has_prefix(text, "fc-vsock:") || has_prefix(text, "unix:")) {
        try {
            Endpoint e = parse_endpoint(text);
            if (e.original_port) {
                return anyhow_error("invalid endpoint " + rust_debug(text) +
                                        ": original-port is for transparent-port-to-vsock only",
                                    "");
            }
            return e;
        } catch (const endpoint_error& e) {
            return anyhow_error(e.what(), "");
        }
    }
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos) {
        return anyhow_error("invalid vsock address, should contain one colon [:] sign", "");
    }
    const RustU32 cid = rust_parse_u32(text.substr(0, colon));
    if (!cid.value) return anyhow_error("failed to parse cid as a u32", cid.error);
    const RustU32 port = rust_parse_u32(text.substr(colon + 1));
    if (!port.value) return anyhow_error("failed to parse port as a u32", port.error);
    return parse_endpoint_or_bare(std::to_string(*cid.value) + ":" + std::to_string(*port.value),
                                  Scheme::vsock);
}

std::variant<Finished, SeedCommand> parse_tcp_proxy_tool(Tool tool, std::string_view command,
                                                         const std::vector<std::string>& args) {
    const std::vector<OptSpec> specs = options_for(tool);
    auto values = read_options(command, specs, args);
    if (auto* f = std::get_if<Finished>(&values)) return *f;
    return build(tool, command, specs, std::get<Values>(values));
}

Output tcp_proxy_bind_failure(Tool tool, int err) {
    if (tool == Tool::vsock_to_ip || tool == Tool::vsock_to_ip_transparent) {
        return {"", anyhow_error("Failed to bind listener to vsock: incorrect CID:port",
                                 os_error(err))};
    }
    // A TCP listener that cannot be bound, in the seeds' words.
    if (err == EADDRINUSE) return {"", "Error: Address already in use\n"};
    if (err == EACCES) return {"", "Error: Permission denied\n"};
    return {"", anyhow_error(kMalformedListener, os_error(err))};
}

}  // namespace pfp::compat
