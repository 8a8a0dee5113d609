#pragma once
// A seed command line's policy: the JSON document a user would write in a policy file, run
// through the same parser and validation as a file, so the worker kind is derived there.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

// Sets cmd.policy to the one-proxy policy of `proxy` (its "listen", "upstream" and the keys
// particular to the command): named after the command, with log_connections (the seeds print a
// line per connection) and the --user option. A document the parser refuses (not expected for a
// command line the command accepts) is a one-line error, exit status 1.
std::variant<Finished, SeedCommand> with_policy(SeedCommand cmd,
                                                const std::optional<std::string>& user,
                                                nlohmann::ordered_json proxy);

// Where a command line's policy "comes from", in log lines: "the vsock-to-ip command line".
std::string policy_source(std::string_view command);

}  // namespace pfp::compat
