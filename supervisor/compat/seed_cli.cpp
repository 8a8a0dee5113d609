#include "supervisor/compat/seed_cli.hpp"

#include <cap-ng.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <algorithm>
#include <array>
#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

#include "common/allow_list.hpp"
#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "supervisor/daemon.hpp"

namespace po = boost::program_options;

namespace pfp::compat {
namespace {

constexpr std::string_view kVersion = PFPROXY_VERSION;

struct CommandEntry {
    std::string_view name;
    Tool tool;
};

constexpr std::array kCommands{
    CommandEntry{"vsock-to-ip", Tool::vsock_to_ip},
    CommandEntry{"ip-to-vsock", Tool::ip_to_vsock},
    CommandEntry{"vsock-to-ip-transparent", Tool::vsock_to_ip_transparent},
    CommandEntry{"ip-to-vsock-transparent", Tool::ip_to_vsock_transparent},
    CommandEntry{"transparent-port-to-vsock", Tool::transparent_port_to_vsock},
    CommandEntry{"port-to-vsock-transparent", Tool::transparent_port_to_vsock},  // seed 001
    CommandEntry{"vsockproxy", Tool::vsockproxy},
};

// ---------------------------------------------------------------------------------------------
// Text the seeds print

// Rust's `{:?}` of a string, as the seeds print their address arguments: "0.0.0.0:3000".
std::string rust_debug(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\0':
                out += "\\0";
                break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[12];
                    std::snprintf(buf, sizeof buf, "\\u{%x}", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
    return out;
}

// Rust's `{:?}` of tokio_vsock::VsockAddr, or the quoted argument for a pf-proxy endpoint form.
std::string describe_vsock(const Endpoint& e, std::string_view text) {
    if (e.scheme != Scheme::vsock) return rust_debug(text);
    return "VsockAddr { cid: " + std::to_string(e.cid) + ", port: " + std::to_string(e.port) + " }";
}

// Rust's io::Error display, the "Caused by" of the seeds' anyhow errors.
std::string os_error(int err) {
    return std::string(std::strerror(err)) + " (os error " + std::to_string(err) + ")";
}

// anyhow's `{:?}` of an error with one cause, which is how the seeds' main() reports a failure.
std::string anyhow_error(std::string_view context, std::string_view cause) {
    std::string s = "Error: " + std::string(context) + "\n";
    if (!cause.empty()) s += "\nCaused by:\n    " + std::string(cause) + "\n";
    return s;
}

constexpr std::string_view kInvalidDigit = "invalid digit found in string";

// <u32 as FromStr>::from_str, as clap and split_vsock use it: an optional '+', then decimal
// digits. Returns the number or the text of Rust's ParseIntError.
struct RustU32 {
    std::optional<uint32_t> value;
    std::string_view error;
};

RustU32 rust_parse_u32(std::string_view s) {
    if (s.empty()) return {std::nullopt, "cannot parse integer from empty string"};
    if (s.front() == '+') {
        s.remove_prefix(1);
        if (s.empty()) return {std::nullopt, kInvalidDigit};
    }
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return {std::nullopt, kInvalidDigit};
        v = v * 10 + static_cast<uint64_t>(c - '0');
        if (v > UINT32_MAX) return {std::nullopt, "number too large to fit in target type"};
    }
    return {static_cast<uint32_t>(v), {}};
}

// ---------------------------------------------------------------------------------------------
// Options of the PF-Proxy / Oyster tools (clap in the seeds)

struct OptSpec {
    char short_name = 0;  // 0: long only
    std::string_view long_name;
    std::string_view value_name;  // empty: a flag
    std::string_view help;
    bool required = false;
    bool repeatable = false;
};

constexpr OptSpec kUserOpt{0, "user", "USER", "pf-proxy: run as this user once the socket is open"};
constexpr OptSpec kHelpOpt{'h', "help", "", "Print help"};
constexpr OptSpec kVersionOpt{'V', "version", "", "Print version"};
constexpr OptSpec kHeaderOpt{0, "header", "FORMAT",
                             "pf-proxy: destination header, standard (default) or oyster-v4"};
constexpr OptSpec kAllowOpt{0,
                            "allow",
                            "CIDR:PORTS",
                            "pf-proxy: also allow this loopback, link-local or metadata "
                            "destination (repeatable)",
                            false,
                            true};

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
        case Tool::vsockproxy:
            break;
    }
    return {kUserOpt, kHelpOpt, kVersionOpt};
}

// clap's name for an option in messages: "--vsock-addr <VSOCK_ADDR>".
std::string display(const OptSpec& o) {
    std::string s = "--" + std::string(o.long_name);
    if (!o.value_name.empty()) s += " <" + std::string(o.value_name) + ">";
    return s;
}

std::string usage_line(std::string_view command, const std::vector<OptSpec>& specs) {
    std::string s = "Usage: " + std::string(command);
    bool optional = false;
    for (const auto& o : specs) {
        if (!o.required && o.long_name != "help" && o.long_name != "version") optional = true;
    }
    if (optional) s += " [OPTIONS]";
    for (const auto& o : specs) {
        if (o.required) s += " " + display(o);
    }
    return s;
}

constexpr std::string_view kFooter =
    "pf-proxy: this command runs one proxy through the pf-proxyd supervisor and a sandboxed\n"
    "worker; see the migration guide (migration.md) for the equivalent policy entry.\n";

// The options table in clap's layout.
std::string options_table(const std::vector<OptSpec>& specs) {
    std::vector<std::pair<std::string, std::string_view>> rows;
    size_t width = 0;
    for (const auto& o : specs) {
        std::string left = o.short_name ? std::string("  -") + o.short_name + ", " : "      ";
        left += "--" + std::string(o.long_name);
        if (!o.value_name.empty()) left += " <" + std::string(o.value_name) + ">";
        width = std::max(width, left.size());
        rows.emplace_back(std::move(left), o.help);
    }
    std::string s = "Options:\n";
    for (const auto& [left, help] : rows) {
        s += left + std::string(width - left.size() + 2, ' ') + std::string(help) + "\n";
    }
    return s;
}

std::string help_text(std::string_view command, const std::vector<OptSpec>& specs) {
    return usage_line(command, specs) + "\n\n" + options_table(specs) + "\n" + std::string(kFooter);
}

std::string more_info() {
    return "\nFor more information, try '--help'.\n";
}

Finished usage_error(std::string_view message, std::string_view command,
                     const std::vector<OptSpec>& specs, bool with_usage) {
    std::string err = "error: " + std::string(message) + "\n";
    if (with_usage) err += "\n" + usage_line(command, specs) + "\n";
    err += more_info();
    return Finished{1, {"", err}};
}

Finished version_text(std::string_view command) {
    return Finished{0, {std::string(command) + " " + std::string(kVersion) + "\n", ""}};
}

const OptSpec* find_spec(const std::vector<OptSpec>& specs, std::string_view name) {
    while (!name.empty() && name.front() == '-') name.remove_prefix(1);
    for (const auto& o : specs) {
        if (o.long_name == name || (name.size() == 1 && o.short_name == name[0])) return &o;
    }
    return nullptr;
}

po::options_description describe(const std::vector<OptSpec>& specs) {
    po::options_description desc;
    for (const auto& o : specs) {
        std::string name(o.long_name);
        if (o.short_name) name += std::string(",") + o.short_name;
        if (o.value_name.empty())
            desc.add_options()(name.c_str(), "");
        else
            desc.add_options()(name.c_str(), po::value<std::string>(), "");
    }
    return desc;
}

constexpr int kStyle = po::command_line_style::unix_style & ~po::command_line_style::allow_guessing;

// clap reads "-v=88:4000" as the value "88:4000"; Boost would keep the '='.
std::vector<std::string> split_short_equals(const std::vector<std::string>& args,
                                            const std::vector<OptSpec>& specs) {
    std::vector<std::string> out;
    bool options = true;
    for (const auto& a : args) {
        if (a == "--") options = false;
        const OptSpec* o = options && a.size() >= 3 && a[0] == '-' && a[1] != '-' && a[2] == '='
                               ? find_spec(specs, std::string_view(a).substr(1, 1))
                               : nullptr;
        if (o && !o->value_name.empty()) {
            out.push_back(a.substr(0, 2));
            out.push_back(a.substr(3));
        } else {
            out.push_back(a);
        }
    }
    return out;
}

using Values = std::map<std::string, std::vector<std::string>, std::less<>>;

// Reads the options as clap does for the seeds: help and version win when they come first;
// unknown arguments, repeated options and missing required ones are errors.
std::variant<Finished, Values> read_options(std::string_view command,
                                            const std::vector<OptSpec>& specs,
                                            const std::vector<std::string>& raw) {
    po::parsed_options parsed(nullptr);
    try {
        parsed = po::command_line_parser(split_short_equals(raw, specs))
                     .options(describe(specs))
                     .style(kStyle)
                     .allow_unregistered()
                     .run();
    } catch (const po::invalid_command_line_syntax& e) {
        const OptSpec* o = find_spec(specs, e.get_option_name());
        if (o && e.kind() == po::invalid_syntax::missing_parameter) {
            return usage_error(
                "a value is required for '" + display(*o) + "' but none was supplied", command,
                specs, false);
        }
        return usage_error(e.what(), command, specs, true);
    } catch (const po::error& e) {
        return usage_error(e.what(), command, specs, true);
    }

    Values values;
    for (const auto& opt : parsed.options) {
        const OptSpec* o =
            opt.unregistered || opt.string_key.empty() ? nullptr : find_spec(specs, opt.string_key);
        if (!o) {
            const std::string token =
                opt.original_tokens.empty() ? opt.string_key : opt.original_tokens.front();
            return usage_error("unexpected argument '" + token + "' found", command, specs, true);
        }
        if (o->long_name == "help") return Finished{0, {help_text(command, specs), ""}};
        if (o->long_name == "version") return version_text(command);
        auto& v = values[std::string(o->long_name)];
        if (!v.empty() && !o->repeatable) {
            return usage_error("the argument '" + display(*o) + "' cannot be used multiple times",
                               command, specs, true);
        }
        v.push_back(opt.value.empty() ? std::string() : opt.value.front());
    }

    std::string missing;
    for (const auto& o : specs) {
        if (o.required && !values.count(o.long_name)) missing += "\n  " + display(o);
    }
    if (!missing.empty()) {
        return usage_error("the following required arguments were not provided:" + missing, command,
                           specs, true);
    }
    return values;
}

std::optional<std::string> value_of(const Values& v, std::string_view name) {
    auto it = v.find(name);
    if (it == v.end() || it->second.empty()) return std::nullopt;
    return it->second.front();
}

// ---------------------------------------------------------------------------------------------
// Addresses

bool has_prefix(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

// A vsock-side argument: the seeds' CID:PORT (utils::split_vsock, with its messages), or one of
// pf-proxy's vsock-like endpoints (vsock:any:5000, fc-vsock:/run/fc.sock:5000, unix:/path).
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
        std::string cause = e.what();
        std::string_view host = text;
        if (has_prefix(host, "tcp:")) host.remove_prefix(4);
        host = host.substr(0, host.rfind(':'));
        const bool name = host.find('[') == std::string_view::npos &&
                          std::any_of(host.begin(), host.end(), [](char c) {
                              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
                          });
        if (name) cause += " (host names are not resolved: give an IP address)";
        return cause;
    }
}

constexpr std::string_view kMalformedListener =
    "Failed to bind listener: malformed listening address:port";

// The seeds parse their TCP listening address only when they bind it, after printing their
// start-up lines: a bad one becomes the command's late error.
void set_tcp_listener(std::string_view text, policy::Proxy& p, SeedCommand& cmd) {
    auto listen = parse_tcp_arg(text);
    if (auto* cause = std::get_if<std::string>(&listen)) {
        cmd.late_error = Output{"", anyhow_error(kMalformedListener, *cause)};
    } else {
        p.listen = std::get<Endpoint>(listen);
    }
}

// ---------------------------------------------------------------------------------------------
// From options to a policy

policy::Policy one_proxy_policy(std::string_view command, const Values& values, policy::Proxy p) {
    policy::Policy pol;
    pol.path = "the " + std::string(command) + " command line";
    if (auto user = value_of(values, "user")) pol.user = *user;
    p.name = std::string(command);
    p.log_connections = true;  // the seeds print a line per connection
    p.pointer = "/proxies/0";
    pol.proxies.push_back(std::move(p));
    return pol;
}

std::optional<Finished> read_header(std::string_view command, const std::vector<OptSpec>& specs,
                                    const Values& values, policy::Proxy& p) {
    auto header = value_of(values, "header");
    if (!header || *header == "standard") return std::nullopt;
    if (*header == "oyster-v4") {
        p.header = policy::HeaderFormat::oyster_v4;
        return std::nullopt;
    }
    return usage_error("invalid value '" + *header + "' for '--header <FORMAT>'\n  [possible " +
                           "values: standard, oyster-v4]",
                       command, specs, false);
}

std::variant<Finished, SeedCommand> build(Tool tool, std::string_view command,
                                          const std::vector<OptSpec>& specs, const Values& values) {
    SeedCommand cmd;
    cmd.tool = tool;
    cmd.command = std::string(command);
    policy::Proxy p;

    switch (tool) {
        case Tool::vsock_to_ip: {
            const std::string vtext = *value_of(values, "vsock-addr");
            const std::string itext = *value_of(values, "ip-addr");
            auto listen = parse_vsock_arg(vtext);
            if (auto* err = std::get_if<std::string>(&listen)) return Finished{1, {"", *err}};
            p.kind = WorkerKind::vsock_to_ip;
            p.listen = std::get<Endpoint>(listen);
            cmd.startup.out = "Listening on: " + describe_vsock(p.listen, vtext) +
                              "\nProxying to: " + rust_debug(itext) + "\n";
            // The seed connects to its -i text per connection; a bad one fails every connection.
            auto upstream = parse_tcp_arg(itext);
            if (auto* cause = std::get_if<std::string>(&upstream)) {
                cmd.late_error =
                    Output{"", anyhow_error("failed to connect to TCP endpoint", *cause)};
            } else {
                p.upstream = std::get<Endpoint>(upstream);  // no allow list: not checked
            }
            break;
        }
        case Tool::ip_to_vsock:
        case Tool::ip_to_vsock_transparent: {
            const std::string itext = *value_of(values, "ip-addr");
            const std::string vtext = *value_of(values, "vsock-addr");
            auto upstream = parse_vsock_arg(vtext);
            if (auto* err = std::get_if<std::string>(&upstream)) return Finished{1, {"", *err}};
            if (auto f = read_header(command, specs, values, p)) return *f;
            p.upstream = std::get<Endpoint>(upstream);
            if (tool == Tool::ip_to_vsock_transparent) {
                p.kind = WorkerKind::ip_to_vsock_transparent;
                p.send_original_destination = true;
            } else {
                p.kind = WorkerKind::ip_to_vsock;
            }
            cmd.startup.out = "Listening on: " + rust_debug(itext) +
                              "\nProxying to: " + describe_vsock(p.upstream, vtext) + "\n";
            set_tcp_listener(itext, p, cmd);
            break;
        }
        case Tool::vsock_to_ip_transparent: {
            const std::string vtext = *value_of(values, "vsock-addr");
            std::vector<std::string> allow = {"0.0.0.0/0:*", "[::]/0:*"};
            if (auto it = values.find("allow"); it != values.end()) {
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
            if (auto f = read_header(command, specs, values, p)) return *f;
            auto listen = parse_vsock_arg(vtext);
            if (auto* err = std::get_if<std::string>(&listen)) return Finished{1, {"", *err}};
            p.kind = WorkerKind::vsock_to_ip_transparent;
            p.listen = std::get<Endpoint>(listen);
            p.upstream_mode = policy::UpstreamMode::destination_header;
            p.allow = std::move(allow);
            cmd.startup.out = "Listening on: " + describe_vsock(p.listen, vtext) + "\n";
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
            p.kind = WorkerKind::transparent_port_to_vsock;
            p.upstream = parse_endpoint("vsock:" + std::to_string(*cid.value) + ":original-port");
            // The seed prints the parsed u32, so "+88" shows as 88.
            cmd.startup.out = "Listening on: " + rust_debug(itext) +
                              "\nProxying to: " + std::to_string(*cid.value) + "\n";
            set_tcp_listener(itext, p, cmd);
            break;
        }
        case Tool::vsockproxy:
            break;
    }
    cmd.policy = one_proxy_policy(command, values, std::move(p));
    return cmd;
}

// ---------------------------------------------------------------------------------------------
// vsockproxy <local_port> <remote_cid> <remote_port> <allowed_cid> (seed 002: argv and atoi)

constexpr std::string_view kVsockproxyUsage =
    "usage: vsockproxy <local_port> <remote_cid> <remote_port> <allowed_cid>\n";

std::string vsockproxy_help(const std::vector<OptSpec>& specs) {
    return std::string(kVsockproxyUsage) +
           "\n"
           "Listens on vsock port <local_port> (any CID) and relays each connection to vsock\n"
           "<remote_cid>:<remote_port>. Only peers with CID <allowed_cid> are admitted (0: any).\n"
           "\n" +
           options_table(specs) + "\n" + std::string(kFooter);
}

bool negative_number(std::string_view s) {
    return s.size() >= 2 && s[0] == '-' &&
           std::all_of(s.begin() + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::variant<Finished, SeedCommand> parse_vsockproxy(std::string_view command,
                                                     const std::vector<std::string>& args) {
    const std::vector<OptSpec> specs = options_for(Tool::vsockproxy);
    po::options_description desc = describe(specs);
    desc.add_options()("arg", po::value<std::vector<std::string>>(), "");
    po::positional_options_description positional;
    positional.add("arg", -1);

    auto fail = [&](const std::string& why) {
        return Finished{
            1, {"", std::string(command) + ": " + why + "\n" + std::string(kVsockproxyUsage)}};
    };

    po::parsed_options parsed(nullptr);
    try {
        parsed = po::command_line_parser(args)
                     .options(desc)
                     .positional(positional)
                     .style(kStyle)
                     .allow_unregistered()
                     .run();
    } catch (const po::error& e) {
        return fail(e.what());
    }

    std::vector<std::string> numbers;
    Values values;
    for (const auto& opt : parsed.options) {
        const std::string token =
            opt.original_tokens.empty() ? opt.string_key : opt.original_tokens.front();
        if (opt.unregistered) {
            if (!negative_number(token)) return fail("unknown option '" + token + "'");
            numbers.push_back(token);  // read as a number below, and rejected there
            continue;
        }
        if (opt.string_key == "arg") {
            numbers.insert(numbers.end(), opt.value.begin(), opt.value.end());
            continue;
        }
        if (opt.string_key == "help") return Finished{0, {vsockproxy_help(specs), ""}};
        if (opt.string_key == "version") return version_text(command);
        auto& v = values[opt.string_key];
        if (!v.empty()) return fail("option '--" + opt.string_key + "' given more than once");
        v.push_back(opt.value.empty() ? std::string() : opt.value.front());
    }
    if (numbers.size() < 4) return Finished{1, {std::string(kVsockproxyUsage), ""}};

    static constexpr std::array<std::string_view, 4> kNames = {"<local_port>", "<remote_cid>",
                                                               "<remote_port>", "<allowed_cid>"};
    std::array<uint32_t, 4> n{};
    for (size_t i = 0; i < 4; ++i) {
        const std::string& s = numbers[i];
        uint64_t v = 0;
        bool ok = !s.empty() && s.size() <= 10;
        for (char c : s) ok = ok && c >= '0' && c <= '9';
        if (ok) v = std::stoull(s);
        if (!ok || v > UINT32_MAX) {
            return fail("invalid " + std::string(kNames[i]) + " '" + s +
                        "': expected a number 0-4294967295");
        }
        n[i] = static_cast<uint32_t>(v);
    }

    SeedCommand cmd;
    cmd.tool = Tool::vsockproxy;
    cmd.command = std::string(command);
    if (numbers.size() > 4) {
        std::string extra;
        for (size_t i = 4; i < numbers.size(); ++i) extra += " '" + numbers[i] + "'";
        cmd.startup.err = std::string(command) + ": ignoring extra arguments:" + extra + "\n";
    }
    char line[160];
    std::snprintf(line, sizeof line,
                  "vsockproxy started (local port %u, remote cid %u, remote port %u, "
                  "allowed_cid %u)\n",
                  n[0], n[1], n[2], n[3]);
    cmd.startup.out = line;

    policy::Proxy p;
    p.kind = WorkerKind::vsock_to_vsock;
    p.listen = parse_endpoint("vsock:any:" + std::to_string(n[0]));
    p.upstream =
        parse_endpoint_or_bare(std::to_string(n[1]) + ":" + std::to_string(n[2]), Scheme::vsock);
    if (n[3] != 0) p.allowed_cids = {n[3]};  // 0: any guest
    p.statistics = true;
    cmd.policy = one_proxy_policy(command, values, std::move(p));
    return cmd;
}

// ---------------------------------------------------------------------------------------------
// Running

void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        const ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        s.remove_prefix(static_cast<size_t>(n));
    }
}

void print(const Output& o) {
    write_all(STDOUT_FILENO, o.out);
    write_all(STDERR_FILENO, o.err);
}

// CAP_NET_BIND_SERVICE in the permitted set: the supervisor raises it for its bind.
bool can_raise_bind_service() {
    if (capng_get_caps_process() != 0) return false;
    return capng_have_capability(CAPNG_PERMITTED, CAP_NET_BIND_SERVICE) != 0;
}

struct ProbeFailure {
    BindStage stage;
    int err;
};

// Binds (and closes) a socket like the listener the supervisor is about to open, so that a
// failure is reported with the seed's message. Unix-socket listeners are left to the supervisor.
std::optional<ProbeFailure> probe_listener(const Endpoint& e) {
    if (e.scheme != Scheme::tcp && e.scheme != Scheme::vsock) return std::nullopt;
    unique_fd fd(::socket(e.addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return ProbeFailure{BindStage::socket, errno};
    if (e.scheme == Scheme::tcp) {
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (::bind(fd.get(), e.addr.get(), e.addr.len) < 0) {
        const int err = errno;
        if (err == EACCES && can_raise_bind_service()) return std::nullopt;
        return ProbeFailure{BindStage::bind, err};
    }
    return std::nullopt;
}

}  // namespace

const std::vector<std::string_view>& command_names() {
    static const std::vector<std::string_view> names = [] {
        std::vector<std::string_view> v;
        for (const auto& c : kCommands) v.push_back(c.name);
        return v;
    }();
    return names;
}

std::optional<Tool> tool_for(std::string_view command) {
    for (const auto& c : kCommands) {
        if (c.name == command) return c.tool;
    }
    return std::nullopt;
}

std::variant<Finished, SeedCommand> parse_command_line(Tool tool, std::string_view command,
                                                       const std::vector<std::string>& args) {
    if (tool == Tool::vsockproxy) return parse_vsockproxy(command, args);
    const std::vector<OptSpec> specs = options_for(tool);
    auto values = read_options(command, specs, args);
    if (auto* f = std::get_if<Finished>(&values)) return *f;
    return build(tool, command, specs, std::get<Values>(values));
}

Output bind_failure(const SeedCommand& cmd, BindStage stage, int err) {
    switch (cmd.tool) {
        case Tool::vsockproxy:
            return {std::string(stage == BindStage::socket ? "Failed to create socket: "
                                                           : "Failed to bind: ") +
                        std::strerror(err) + "\n",
                    ""};
        case Tool::vsock_to_ip:
        case Tool::vsock_to_ip_transparent:
            return {"", anyhow_error("Failed to bind listener to vsock: incorrect CID:port",
                                     os_error(err))};
        case Tool::ip_to_vsock:
        case Tool::ip_to_vsock_transparent:
        case Tool::transparent_port_to_vsock:
            break;
    }
    if (err == EADDRINUSE) return {"", "Error: Address already in use\n"};
    if (err == EACCES) return {"", "Error: Permission denied\n"};
    return {"", anyhow_error(kMalformedListener, os_error(err))};
}

int run(Tool tool, std::string_view command, const std::vector<std::string>& args) {
    auto parsed = parse_command_line(tool, command, args);
    if (auto* f = std::get_if<Finished>(&parsed)) {
        print(f->output);
        return f->status;
    }
    SeedCommand& cmd = std::get<SeedCommand>(parsed);
    print(cmd.startup);
    if (cmd.late_error) {
        print(*cmd.late_error);
        return 1;
    }
    if (auto failure = probe_listener(cmd.policy.proxies.front().listen)) {
        print(bind_failure(cmd, failure->stage, failure->err));
        return 1;
    }
    supervisor::DaemonOptions options;
    options.source = cmd.policy.path;
    const int status = supervisor::run_daemon(std::move(cmd.policy), options);
    if (tool == Tool::vsockproxy && status == 0) write_all(STDOUT_FILENO, "vsockproxy finished\n");
    return status;
}

}  // namespace pfp::compat
