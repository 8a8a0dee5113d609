#pragma once
// The syntax check that runs before a policy is read as JSON: it follows nlohmann's parse events
// to know where the parser stopped and in which member, and rewords nlohmann's message into one a
// reader of the file understands ("syntax error: unexpected number, expected ',' or ']'").
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pfp::policy::detail {

struct SyntaxError {
    size_t offset;        // byte offset of the offending token's first byte
    std::string message;  // "syntax error: ..."
    std::string pointer;  // the innermost member or array open there, shortened()
};

// The first syntax error of `text`, or nullopt when nlohmann parses all of it. A NUL byte is an
// error too: nlohmann would stop there as if the text ended, silently ignoring what follows.
std::optional<SyntaxError> find_syntax_error(std::string_view text);

}  // namespace pfp::policy::detail
