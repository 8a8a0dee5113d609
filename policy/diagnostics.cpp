#include "policy/diagnostics.hpp"

#include <cstdio>

namespace pfp::policy {
namespace {

// Policy text is untrusted: a key or file name with a newline or an escape sequence must not
// forge extra diagnostic lines or drive the terminal. Control bytes print as \xNN.
void append_printable(std::string& out, std::string_view s) {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += ch;
        }
    }
}

std::string join(const std::vector<Diagnostic>& diags) {
    std::string out;
    for (const auto& d : diags) {
        if (!out.empty()) out += '\n';
        out += d.str();
    }
    return out;
}

}  // namespace

// FILE:LINE:COL: POINTER: MESSAGE (HINT), or without a position FILE: [POINTER: ]MESSAGE.
std::string Diagnostic::str() const {
    std::string out;
    append_printable(out, file);
    if (line > 0) {
        out += ':' + std::to_string(line) + ':' + std::to_string(column) + ": ";
        append_printable(out, pointer.empty() ? std::string_view("(root)") : pointer);
        out += ": ";
    } else {
        out += ": ";
        // A pointer without a position only happens if the source map lost track; keep it.
        if (!pointer.empty()) {
            append_printable(out, pointer);
            out += ": ";
        }
    }
    append_printable(out, message);
    if (!hint.empty()) {
        out += " (";
        append_printable(out, hint);
        out += ')';
    }
    return out;
}

policy_error::policy_error(std::vector<Diagnostic> diags)
    : std::runtime_error(join(diags)), diags_(std::move(diags)) {}

}  // namespace pfp::policy
