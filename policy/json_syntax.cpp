#include "policy/json_syntax.hpp"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <vector>

#include "policy/source_map.hpp"
#include "policy/wording.hpp"

namespace pfp::policy::detail {
namespace {

// Records where nlohmann's parser stopped, and in which member: it follows the parse events to
// know the JSON pointer of the innermost open object or array (plus the member whose value is
// being read), so a syntax error says "/proxies/0" and not only a line. Builds no tree:
// json::parse does that afterwards.
class SyntaxCheck : public json::json_sax_t {
  public:
    bool null() override { return value(); }
    bool boolean(bool) override { return value(); }
    bool number_integer(number_integer_t) override { return value(); }
    bool number_unsigned(number_unsigned_t) override { return value(); }
    bool number_float(number_float_t, const string_t&) override { return value(); }
    bool string(string_t&) override { return value(); }
    bool binary(binary_t&) override { return value(); }
    bool start_object(std::size_t) override { return open(false); }
    bool key(string_t& k) override {
        if (!frames_.empty()) {
            frames_.back().key = k;
            frames_.back().in_member = true;
        }
        return true;
    }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(true); }
    bool end_array() override { return close(); }

    // Also called for out_of_range.406 (number overflow), whose exception carries no position.
    bool parse_error(std::size_t position, const std::string& last_token,
                     const json::exception& ex) override {
        failed = true;
        byte = position;
        token = last_token;
        id = ex.id;
        what = ex.what();
        pointer = shortened(current_pointer());
        return false;
    }

    bool failed = false;
    size_t byte = 0;  // 1-based offset of the last byte nlohmann read
    std::string token;
    int id = 0;
    std::string what;
    std::string pointer;

  private:
    struct Frame {
        bool array = false;
        size_t index = 0;        // arrays: the element being read
        std::string key;         // objects: the member being read
        bool in_member = false;  // objects: a key was read, its value is not finished
    };

    bool value() {
        if (!frames_.empty()) {
            if (frames_.back().array) {
                ++frames_.back().index;
            } else {
                frames_.back().in_member = false;
            }
        }
        return true;
    }
    bool open(bool array) {
        frames_.push_back(Frame{array, 0, {}, false});
        return true;
    }
    bool close() {
        if (!frames_.empty()) frames_.pop_back();
        return value();
    }

    std::string current_pointer() const {
        std::string out;
        for (size_t i = 0; i < frames_.size(); ++i) {
            const Frame& f = frames_[i];
            const bool innermost = i + 1 == frames_.size();
            // Inside the innermost array we cannot tell "reading element N" from "after element
            // N-1", so the array itself is named.
            if (f.array && !innermost) {
                out += "/" + std::to_string(f.index);
            } else if (!f.array && f.in_member) {
                out += "/" + escape_pointer_token(f.key);
            }
        }
        return out;
    }

    std::vector<Frame> frames_;
};

bool is_number_char(char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}
bool is_word_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '-' || c == '+' || c == '.';
}

// nlohmann reports the last byte of an unexpected token; readers expect its first byte.
size_t token_start(std::string_view text, size_t end, std::string_view token) {
    if (end >= text.size()) return end;
    if (token == "true" || token == "null") return end >= 3 ? end - 3 : end;
    if (token == "false") return end >= 4 ? end - 4 : end;
    if (token == "number") {
        size_t start = end;
        while (start > 0 && is_number_char(text[start - 1])) --start;
        while (start < end && text[start] != '-' && (text[start] < '0' || text[start] > '9')) {
            ++start;
        }
        return start;
    }
    if (token == "string" && text[end] == '"') {
        // The opening quote is the nearest '"' to the left not escaped by an odd run of '\'.
        for (size_t i = end; i-- > 0;) {
            if (text[i] != '"') continue;
            size_t backslashes = 0;
            while (backslashes < i && text[i - 1 - backslashes] == '\\') ++backslashes;
            if (backslashes % 2 == 0) return i;
        }
    }
    return end;
}

std::string_view unexpected_words(std::string_view token) {
    if (token == "true literal") return "true";
    if (token == "false literal") return "false";
    if (token == "null literal") return "null";
    if (token == "string literal") return "string";
    if (token == "number literal") return "number";
    return token;
}

std::string expected_words(std::string_view token, std::string_view context) {
    if (token == "'[', '{', or a literal") return "a value";
    if (token == "string literal") return context == "object key" ? "a quoted key" : "a string";
    // nlohmann names only the closing bracket; a comma is just as valid there.
    if (token == "']'" && context == "array") return "',' or ']'";
    if (token == "'}'" && context == "object") return "',' or '}'";
    return std::string(token);
}

// Turns nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 4: syntax error
// while parsing array - unexpected number literal; expected ']'" into "syntax error: unexpected
// number, expected ',' or ']'" at the token's first byte. Unknown shapes pass through trimmed.
SyntaxError reword(const SyntaxCheck& check, std::string_view text) {
    size_t offset = check.byte > 0 ? std::min(check.byte - 1, text.size()) : 0;
    std::string_view msg = check.what;
    if (msg.starts_with('[')) {
        const size_t close = msg.find("] ");
        if (close != std::string_view::npos) msg.remove_prefix(close + 2);
    }
    if (check.id == 406) {  // out_of_range: "number overflow parsing '1e400'"
        const std::string_view token = std::string_view(check.token).substr(0, 32);
        return {token_start(text, offset, "number"),
                "syntax error: number " + std::string(token) + " is out of range", check.pointer};
    }
    if (msg.starts_with("parse error")) {
        const size_t colon = msg.find(": ");
        if (colon != std::string_view::npos) msg.remove_prefix(colon + 2);
    }
    std::string_view context;
    constexpr std::string_view kWhile = "syntax error while parsing ";
    if (msg.starts_with(kWhile)) {
        const size_t dash = msg.find(" - ");
        if (dash != std::string_view::npos) {
            context = msg.substr(kWhile.size(), dash - kWhile.size());
            msg.remove_prefix(dash + 3);
        }
    } else if (msg.starts_with("syntax error - ")) {
        msg.remove_prefix(15);
    }
    std::string expected;
    constexpr std::array<std::string_view, 10> kTokens{"'[', '{', or a literal",
                                                       "string literal",
                                                       "':'",
                                                       "']'",
                                                       "'}'",
                                                       "','",
                                                       "end of input",
                                                       "'['",
                                                       "'{'",
                                                       "number literal"};
    for (const auto token : kTokens) {
        const std::string tail = "; expected " + std::string(token);
        if (msg.ends_with(tail)) {
            expected = expected_words(token, context);
            msg.remove_suffix(tail.size());
            break;
        }
    }
    // The "last read" excerpt repeats what the position already shows, sometimes mangled.
    const size_t last_read = msg.find("; last read: ");
    if (last_read != std::string_view::npos) msg = msg.substr(0, last_read);

    std::string out = "syntax error: ";
    if (msg.starts_with("unexpected ")) {
        const std::string_view token = unexpected_words(msg.substr(11));
        offset = token_start(text, offset, token);
        out += "unexpected ";
        out += token;
    } else if (msg == "invalid literal") {
        // Usually a bare word such as nobody for "nobody": name the whole word.
        size_t at = offset;
        if (at < text.size() && !is_word_char(text[at]) && at > 0) --at;
        size_t start = at, end = at;
        while (start > 0 && start <= text.size() && is_word_char(text[start - 1])) --start;
        while (end < text.size() && is_word_char(text[end])) ++end;
        out += "invalid literal";
        if (end > start) {
            out += ' ' + quote(text.substr(start, end - start));
            offset = start;
        }
    } else {
        // Lexer messages like "invalid number; expected digit after '-'".
        for (const char c : msg) {
            if (c == ';') {
                out += ',';
            } else {
                out += c;
            }
        }
    }
    if (!expected.empty()) out += ", expected " + expected;
    return {offset, out, check.pointer};
}

}  // namespace

std::optional<SyntaxError> find_syntax_error(std::string_view text) {
    const size_t nul = text.find('\0');
    const std::string_view seen = text.substr(0, nul);
    SyntaxCheck check;
    json::sax_parse(seen.begin(), seen.end(), &check);
    if (check.failed) {
        SyntaxError e = reword(check, text);
        if (nul == std::string_view::npos || e.offset < nul) return e;
    }
    if (nul != std::string_view::npos) {
        return SyntaxError{nul, "syntax error: unexpected NUL byte", check.pointer};
    }
    return std::nullopt;
}

}  // namespace pfp::policy::detail
