#pragma once
// The seed tools' command lines, each mapped to a one-proxy policy:
//
//   vsock-to-ip, ip-to-vsock, vsock-to-ip-transparent, ip-to-vsock-transparent,
//   transparent-port-to-vsock (alias port-to-vsock-transparent)   PF-Proxy / Oyster tcp-proxy
//   vsockproxy                                                       Ghaf's vsock relay
//   tcpfwd, udpfwd, kcptcp-client, kcptcp-server                     portfwd
//
// Each command accepts its seed's flags, prints its seed's help, version, startup lines and error
// messages, writes the policy file a user would write for it, validates that document like a
// file (policy/parse.hpp) and runs it through run_daemon(): the same supervisor and sandboxed
// worker as a policy file. docs/migration.md shows each command's policy file and every
// deliberate difference.
//
// The pieces: clap_text.hpp (the seeds' text formats), options.hpp (reading clap-style options),
// tcp_proxy_tools.hpp and vsockproxy.hpp (one per tool family), seed_policy.hpp (the policy
// document), bind_probe.hpp (a listener's bind failure in the seed's words).
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "policy/model.hpp"

namespace pfp::compat {

enum class Tool {
    vsock_to_ip,
    ip_to_vsock,
    vsock_to_ip_transparent,
    ip_to_vsock_transparent,
    transparent_port_to_vsock,
    vsockproxy,
    tcpfwd,
    udpfwd,
    ip_to_vsock_raw_incoming,  // Oyster raw proxies: nfqueue -> vsock -> raw socket
    ip_to_vsock_raw_outgoing,
    vsock_to_ip_raw_incoming,
    vsock_to_ip_raw_outgoing,
    kcptcp_client,  // portfwd's KCP tunnel: TCP listener -> KCP over UDP
    kcptcp_server,  // UDP socket -> TCP upstream
};

// Every command name pf-proxy-compat answers to (the links installed beside it).
const std::vector<std::string_view>& command_names();

// The tool a command name runs (the basename of argv[0]); nullopt for any other name.
std::optional<Tool> tool_for(std::string_view command);

// Text for stdout and stderr, written in that order.
struct Output {
    std::string out;
    std::string err;
};

// A command line that ends before anything is opened: -h, -V or a usage error.
struct Finished {
    int status = 0;
    Output output;
};

// A command line to run.
struct SeedCommand {
    Tool tool = Tool::vsock_to_ip;
    std::string command;  // the name it was called by, e.g. "port-to-vsock-transparent"
    // What the seed prints before it binds its listener (its startup lines, on stdout), and any
    // warning about the command line (stderr).
    Output startup;
    // An error the seed reports only after its startup lines (a malformed listening address is
    // found by the bind that follows them); exit status 1.
    std::optional<Output> late_error;
    // Exactly one proxy, as parse_policy() made it; none when there is a late error.
    policy::Policy policy;
    // portfwd's -d and -p: run in the background once every check passed; hold this pid file.
    bool daemonize = false;
    std::optional<std::string> pid_file;
    // SIGHUP and SIGQUIT stop the command as SIGTERM and SIGINT do (no policy file to reload).
    bool hangup_stops = false;
    // Values of psk_env variables that only this command knows (kcptcp's -K key): looked up
    // before the process environment when the policy's keys are loaded, and never put into it,
    // so no worker inherits them. Never printed or logged.
    std::map<std::string, std::string, std::less<>> private_variables;
};

// Reads `args` (argv without argv[0]) the way the seed tool does. Opens nothing.
std::variant<Finished, SeedCommand> parse_command_line(Tool tool, std::string_view command,
                                                       const std::vector<std::string>& args);

// Where binding the listener failed.
enum class BindStage { socket, bind };

// The seed's message when its listener cannot be opened (errno `err`).
Output bind_failure(const SeedCommand& cmd, BindStage stage, int err);

// The whole command: parse, print the startup lines, check that the listener can be bound (so a
// failure gets the seed's message), then run_daemon(). Returns the exit status.
int run(Tool tool, std::string_view command, const std::vector<std::string>& args);

}  // namespace pfp::compat
