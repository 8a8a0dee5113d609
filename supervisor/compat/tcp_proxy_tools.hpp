#pragma once
// The PF-Proxy / Oyster tcp-proxy tools (clap command lines): vsock-to-ip, ip-to-vsock,
// vsock-to-ip-transparent, ip-to-vsock-transparent and transparent-port-to-vsock.
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/endpoint.hpp"
#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

// Reads the command line of `tool` (any Tool but vsockproxy) as the seed's clap parser does.
std::variant<Finished, SeedCommand> parse_tcp_proxy_tool(Tool tool, std::string_view command,
                                                         const std::vector<std::string>& args);

// A vsock-side argument: the seeds' CID:PORT (their split_vsock, with its messages), or one of
// pf-proxy's vsock-like endpoints (vsock:any:5000, fc-vsock:/run/fc.sock:5000, unix:/path); else
// the error to print.
std::variant<Endpoint, std::string> parse_vsock_arg(std::string_view text);

// The seed's message when its listener cannot be bound (errno `err`).
Output tcp_proxy_bind_failure(Tool tool, int err);

}  // namespace pfp::compat
