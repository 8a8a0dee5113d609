#pragma once
// vsockproxy <local_port> <remote_cid> <remote_port> <allowed_cid>: Ghaf's vsock relay, whose
// command line is four positional numbers (the C tool read them with atoi) rather than clap's.
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

std::variant<Finished, SeedCommand> parse_vsockproxy(std::string_view command,
                                                     const std::vector<std::string>& args);

// The tool's message when its listener cannot be opened (errno `err`), on stdout as it printed it.
Output vsockproxy_bind_failure(BindStage stage, int err);

// What it prints after a clean stop.
inline constexpr std::string_view kVsockproxyFinished = "vsockproxy finished\n";

}  // namespace pfp::compat
