#pragma once
// portfwd's tcpfwd and udpfwd: `<local_addr:port> <dest_addr:port>` with getopt-style options
// before, between or after the addresses. tcpfwd makes a tcp-forward proxy, udpfwd a udp-forward
// one; -d, -p and the signals that stop them are handled by run() (seed_cli.cpp).
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/endpoint.hpp"
#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

// A portfwd address: "1022" (0.0.0.0:1022), "IP:PORT", "[IPv6]:PORT", "localhost:PORT", and, when
// `names`, "HOST:PORT" with a host name. The error ("invalid WHAT 'TEXT': ...") names `what`.
std::variant<std::string, Endpoint> portfwd_address(std::string_view text, Scheme scheme,
                                                    std::string_view what, bool names);

std::variant<Finished, SeedCommand> parse_portfwd(Tool tool, std::string_view command,
                                                  const std::vector<std::string>& args);

Output portfwd_bind_failure(std::string_view command, const SeedCommand& cmd, int err);

}  // namespace pfp::compat
