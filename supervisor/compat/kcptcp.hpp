#pragma once
// portfwd's kcptcp-client and kcptcp-server: `<local_addr:port> <remote_addr:port>` with
// getopt-style options before, between or after the addresses. kcptcp-client makes a kcp-client
// proxy (a TCP listener, one KCP conversation per connection to a UDP server), kcptcp-server a
// kcp-server proxy (a UDP socket, one TCP upstream connection per conversation). -d, -p and the
// signals that stop them are handled by run() (seed_cli.cpp), as for tcpfwd and udpfwd.
//
// The PSK: -K HEX as the seed has it (warned about: the command line is visible in ps), or the
// pf-proxy additions --psk-file PATH and --psk-env NAME. A -K key is named in the policy as
// psk_env kKcpKeyVariable, a variable only this command knows (SeedCommand::private_variables,
// never set in its environment, so no worker inherits it); it never appears in the policy
// document, a log line or an error message.
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

// The psk_env name under which the policy refers to a -K key.
inline constexpr std::string_view kKcpKeyVariable = "PFPROXY_COMPAT_KCP_PSK";

std::variant<Finished, SeedCommand> parse_kcptcp(Tool tool, std::string_view command,
                                                 const std::vector<std::string>& args);

// Overwrites the value of every -K in argv (argv[1..argc)) with 'x's, so that /proc/PID/cmdline
// and ps no longer show it once the command has read it (they did until then: hence the warning).
void hide_key_arguments(int argc, char** argv);

}  // namespace pfp::compat
