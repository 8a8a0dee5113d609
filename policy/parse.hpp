#pragma once
#include <string>
#include <string_view>

#include "policy/diagnostics.hpp"
#include "policy/model.hpp"

namespace pfp::policy {

// Parses and validates a policy. Reports every error of the text at once (throws policy_error).
Policy parse_policy(std::string_view text, const std::string& filename);

// Reads the file and parses it; an unreadable file is a policy_error too.
Policy load_policy(const std::string& path);

}  // namespace pfp::policy
