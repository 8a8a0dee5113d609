#pragma once
// The Oyster raw proxies (clap command lines): ip-to-vsock-raw-incoming and -outgoing (an nfqueue
// to a vsock stream, kind nfqueue-to-stream) and vsock-to-ip-raw-incoming and -outgoing (a vsock
// stream to raw sockets, kind stream-to-raw: bound to --device, or routed).
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

bool is_raw_tool(Tool tool);

// Reads the command line of a raw tool as the seed's clap parser does.
std::variant<Finished, SeedCommand> parse_raw_proxy_tool(Tool tool, std::string_view command,
                                                         const std::vector<std::string>& args);

}  // namespace pfp::compat
