#include "supervisor/compat/clap_text.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

namespace pfp::compat {

std::string rust_debug(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\0':
                out += "\\0";
                break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[12];
                    std::snprintf(buf, sizeof buf, "\\u{%x}", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
    return out;
}

std::string describe_vsock(const Endpoint& e, std::string_view text) {
    if (e.scheme != Scheme::vsock) return rust_debug(text);
    return "VsockAddr { cid: " + std::to_string(e.cid) + ", port: " + std::to_string(e.port) + " }";
}

std::string os_error(int err) {
    return std::string(std::strerror(err)) + " (os error " + std::to_string(err) + ")";
}

std::string anyhow_error(std::string_view context, std::string_view cause) {
    std::string s = "Error: " + std::string(context) + "\n";
    if (!cause.empty()) s += "\nCaused by:\n    " + std::string(cause) + "\n";
    return s;
}

RustU32 rust_parse_u32(std::string_view s) {
    constexpr std::string_view kInvalidDigit = "invalid digit found in string";
    if (s.empty()) return {std::nullopt, "cannot parse integer from empty string"};
    if (s.front() == '+') {
        s.remove_prefix(1);
        if (s.empty()) return {std::nullopt, kInvalidDigit};
    }
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return {std::nullopt, kInvalidDigit};
        v = v * 10 + static_cast<uint64_t>(c - '0');
        if (v > UINT32_MAX) return {std::nullopt, "number too large to fit in target type"};
    }
    return {static_cast<uint32_t>(v), {}};
}

std::string display(const OptSpec& o) {
    std::string s = "--" + std::string(o.long_name);
    if (!o.value_name.empty()) s += " <" + std::string(o.value_name) + ">";
    return s;
}

std::string usage_line(std::string_view command, const std::vector<OptSpec>& specs) {
    std::string s = "Usage: " + std::string(command);
    bool optional = false;
    for (const auto& o : specs) {
        if (!o.required && o.long_name != "help" && o.long_name != "version") optional = true;
    }
    if (optional) s += " [OPTIONS]";
    for (const auto& o : specs) {
        if (o.required) s += " " + display(o);
    }
    return s;
}

std::string options_table(const std::vector<OptSpec>& specs) {
    std::vector<std::pair<std::string, std::string_view>> rows;
    size_t width = 0;
    for (const auto& o : specs) {
        std::string left = o.short_name ? std::string("  -") + o.short_name + ", " : "      ";
        left += "--" + std::string(o.long_name);
        if (!o.value_name.empty()) left += " <" + std::string(o.value_name) + ">";
        width = std::max(width, left.size());
        rows.emplace_back(std::move(left), o.help);
    }
    std::string s = "Options:\n";
    for (const auto& [left, help] : rows) {
        s += left + std::string(width - left.size() + 2, ' ') + std::string(help) + "\n";
    }
    return s;
}

std::string_view help_footer() {
    return "pf-proxy: this command runs one proxy through the pf-proxyd supervisor and a "
           "sandboxed\n"
           "worker; see the migration guide (migration.md) for the equivalent policy entry.\n";
}

std::string help_text(std::string_view command, const std::vector<OptSpec>& specs) {
    return usage_line(command, specs) + "\n\n" + options_table(specs) + "\n" +
           std::string(help_footer());
}

Finished usage_error(std::string_view message, std::string_view command,
                     const std::vector<OptSpec>& specs, bool with_usage) {
    std::string err = "error: " + std::string(message) + "\n";
    if (with_usage) err += "\n" + usage_line(command, specs) + "\n";
    err += "\nFor more information, try '--help'.\n";
    return Finished{1, {"", err}};
}

Finished version_text(std::string_view command) {
    return Finished{0, {std::string(command) + " " + std::string(PFPROXY_VERSION) + "\n", ""}};
}

}  // namespace pfp::compat
