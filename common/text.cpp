#include "common/text.hpp"

#include <cstdio>

namespace pfp {

void append_escaped(std::string& out, std::string_view s, bool escape_quote) {
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f && c != '\\' && !(escape_quote && c == '"')) {
            out += static_cast<char>(c);
        } else if (escape_quote && (c == '"' || c == '\\')) {
            out += '\\';
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
}

std::string quote(std::string_view s) {
    std::string out = "\"";
    append_escaped(out, s, true);
    out += '"';
    return out;
}

// Strict decimal: digits only (no sign, no space), value <= max, no overflow however long.
std::optional<uint64_t> parse_decimal(std::string_view s, uint64_t max) {
    if (s.empty()) return std::nullopt;
    uint64_t value = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<uint64_t>(c - '0');
        if (value > max) return std::nullopt;  // max <= 2^32, so value * 10 never wraps
    }
    return value;
}

}  // namespace pfp
