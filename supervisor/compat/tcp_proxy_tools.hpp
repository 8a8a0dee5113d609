#pragma once
// The PF-Proxy / Oyster tcp-proxy tools (clap command lines): vsock-to-ip, ip-to-vsock,
// vsock-to-ip-transparent, ip-to-vsock-transparent and transparent-port-to-vsock.
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

// Reads the command line of `tool` (any Tool but vsockproxy) as the seed's clap parser does.
std::variant<Finished, SeedCommand> parse_tcp_proxy_tool(Tool tool, std::string_view command,
                                                         const std::vector<std::string>& args);

// The seed's message when its listener cannot be bound (errno `err`).
Output tcp_proxy_bind_failure(Tool tool, int err);

}  // namespace pfp::compat
