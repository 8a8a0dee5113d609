#pragma once
// Text helpers for parsers of untrusted input (endpoints, allow lists): strict numbers and
// quoting that keeps any message on one line.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pfp {

// Escapes all but printable ASCII (and the backslash) so that a message or log line stays one
// line and valid UTF-8 whatever bytes an input or a peer's address holds. With `escape_quote`,
// '"' and '\' get a backslash; otherwise '\' becomes \x5c.
void append_escaped(std::string& out, std::string_view s, bool escape_quote);

// `s` in double quotes, escaped as above.
std::string quote(std::string_view s);

// Strict decimal: digits only (no sign, no space), value <= max (at most 2^32), no overflow
// however long.
std::optional<uint64_t> parse_decimal(std::string_view s, uint64_t max);

}  // namespace pfp
