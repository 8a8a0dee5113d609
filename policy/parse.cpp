#include "policy/parse.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>

#include "policy/source_map.hpp"

namespace pfp::policy {
namespace {

using json = nlohmann::json;

// A policy is a few kilobytes; the cap keeps a hostile file from costing gigabytes of parse tree.
constexpr size_t kMaxPolicyBytes = 16 * 1024 * 1024;
// Past this, more errors only bury the first ones (and a hostile file could make millions).
constexpr size_t kMaxDiagnostics = 100;
constexpr int64_t kMaxDurationMs = int64_t{7} * 24 * 3600 * 1000;

constexpr std::array<std::string_view, 4> kTopKeys{"user", "group", "drain_timeout", "proxies"};
constexpr std::array<std::string_view, 12> kProxyKeys{
    "name",    "listen",          "upstream",     "workers",     "max_connections",
    "backlog", "connect_timeout", "idle_timeout", "tcp_nodelay", "keepalive",
    "splice",  "restart"};
constexpr std::array<std::string_view, 3> kKeepaliveKeys{"idle", "interval", "count"};
constexpr std::array<std::string_view, 4> kRestartKeys{"backoff_initial", "backoff_max",
                                                       "healthy_after", "max_failures"};

constexpr std::string_view kDurationForms =
    R"(a number of seconds or a string such as "250ms", "10s", "5m", "1h")";
constexpr std::string_view kNameRule =
    "a name of 1-64 characters [A-Za-z0-9_.-] starting with a letter or digit";
constexpr std::string_view kEndpointForm = R"(an endpoint string such as "tcp:127.0.0.1:8080")";

// ---- Worker kinds -------------------------------------------------------------------------------

// Which listen/upstream scheme pair each worker kind serves. A new kind is one more line here.
struct KindRule {
    Scheme listen;
    Scheme upstream;
    WorkerKind kind;
};
constexpr std::array kKindRules{
    KindRule{Scheme::tcp, Scheme::tcp, WorkerKind::tcp_forward},
};

std::string_view article(Scheme s) {
    // "an fc-vsock", "an nfqueue": the names are read letter by letter.
    return s == Scheme::fc_vsock || s == Scheme::nfqueue ? "an" : "a";
}

std::string scheme_list(const std::vector<Scheme>& schemes) {
    std::string out;
    for (const Scheme s : schemes) {
        if (!out.empty()) out += ", ";
        out += scheme_name(s);
    }
    return out;
}

struct KindChoice {
    std::optional<WorkerKind> kind;
    std::string listen_error;    // set when no kind listens on this scheme
    std::string upstream_error;  // set when no kind (with this listener) connects to this scheme
};

// `listen` / `upstream` are nullopt when that endpoint did not parse (already reported).
KindChoice derive_kind(std::optional<Scheme> listen, std::optional<Scheme> upstream) {
    std::vector<Scheme> listens, upstreams;
    const auto add = [](std::vector<Scheme>& v, Scheme s) {
        if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
    };
    for (const auto& rule : kKindRules) add(listens, rule.listen);
    const bool listen_ok =
        listen && std::find(listens.begin(), listens.end(), *listen) != listens.end();
    for (const auto& rule : kKindRules) {
        if (!listen_ok || rule.listen == *listen) add(upstreams, rule.upstream);
    }
    KindChoice out;
    if (listen && !listen_ok) {
        out.listen_error = std::string(article(*listen)) + " " + std::string(scheme_name(*listen)) +
                           " endpoint is not supported yet (supported: " + scheme_list(listens) +
                           ")";
    }
    if (upstream && std::find(upstreams.begin(), upstreams.end(), *upstream) == upstreams.end()) {
        out.upstream_error =
            std::string(article(*upstream)) + " " + std::string(scheme_name(*upstream)) +
            " endpoint is not supported yet (supported: " + scheme_list(upstreams) + ")";
    }
    if (listen_ok && upstream) {
        for (const auto& rule : kKindRules) {
            if (rule.listen == *listen && rule.upstream == *upstream) out.kind = rule.kind;
        }
    }
    return out;
}

// ---- Text helpers -------------------------------------------------------------------------------

// A value from the policy, JSON-quoted (control characters escaped, bad UTF-8 replaced) and cut
// at 64 bytes, so a message about it stays one readable line.
std::string quote(std::string_view s) {
    constexpr size_t kMax = 64;
    const bool cut = s.size() > kMax;
    if (cut) {
        size_t n = kMax;
        while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // whole chars
        s = s.substr(0, n);
    }
    std::string out = json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
    if (cut) out.insert(out.size() - 1, "...");
    return out;
}

// What a wrong-typed value is: "string", "number", "boolean", "null", "object", "array".
std::string type_of(const json& v) {
    return v.type_name();
}

// What a right-typed but unacceptable value is: the value itself.
std::string value_of(const json& v) {
    if (v.is_string()) return quote(v.get_ref<const std::string&>());
    if (v.is_primitive()) return v.dump();
    return type_of(v);
}

// The one place the hint's wording lives; Diagnostic::str() adds the parentheses.
std::string did_you_mean(std::string_view known) {
    return "did you mean \"" + std::string(known) + "\"?";
}

// Optimal string alignment distance (Damerau-Levenshtein where each substring is edited once):
// enough to catch a swapped pair of letters ("uesr") as one edit.
size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
                cur[j] = std::min(cur[j], prev2[j - 2] + 1);
            }
        }
        std::swap(prev2, prev);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// The known key an unknown one was probably meant to be: a case-insensitive match first, else the
// closest within two edits (the first listed wins a tie).
std::optional<std::string_view> suggest(std::string_view key,
                                        std::span<const std::string_view> known) {
    for (const auto k : known) {
        if (iequals(key, k)) return k;
    }
    std::optional<std::string_view> best;
    size_t best_distance = 3;
    for (const auto k : known) {
        const size_t longer = std::max(key.size(), k.size());
        if (longer - std::min(key.size(), k.size()) >= best_distance) continue;  // cannot be closer
        const size_t d = edit_distance(key, k);
        if (d < best_distance) {
            best = k;
            best_distance = d;
        }
    }
    return best;
}

std::string position_text(SourcePos pos) {
    return std::to_string(pos.line) + ":" + std::to_string(pos.column);
}

// "2s", "250ms", "5m": durations in messages, in the largest unit that is exact.
std::string format_ms(std::chrono::milliseconds d) {
    const int64_t ms = d.count();
    if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

// ---- Durations ----------------------------------------------------------------------------------

enum class DurationStatus { ok, syntax, too_large, inexact, negative };

struct ParsedDuration {
    DurationStatus status = DurationStatus::syntax;
    int64_t ms = 0;
};

// DIGITS[.DIGITS](ms|s|m|h), computed exactly in integers (no float rounding surprises).
ParsedDuration parse_duration_text(std::string_view s) {
    const auto digits = [&s](size_t from) {
        size_t i = from;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        return i;
    };
    const size_t int_end = digits(0);
    if (int_end == 0) return {};
    std::string_view whole = s.substr(0, int_end);
    std::string_view frac;
    size_t unit_start = int_end;
    if (unit_start < s.size() && s[unit_start] == '.') {
        const size_t frac_end = digits(unit_start + 1);
        if (frac_end == unit_start + 1) return {};
        frac = s.substr(unit_start + 1, frac_end - unit_start - 1);
        unit_start = frac_end;
    }
    const std::string_view unit = s.substr(unit_start);
    int64_t factor = 0;
    if (unit == "ms") {
        factor = 1;
    } else if (unit == "s") {
        factor = 1000;
    } else if (unit == "m") {
        factor = 60'000;
    } else if (unit == "h") {
        factor = 3'600'000;
    } else {
        return {};
    }
    while (whole.size() > 1 && whole[0] == '0') whole.remove_prefix(1);
    while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
    // 12 digits times 3.6e6 still fits in int64; anything longer is far beyond 7 days anyway.
    if (whole.size() > 12) return {DurationStatus::too_large, 0};
    // An exact fraction of any unit here has at most 7 significant decimals (3.6e6 = 2^7*3^2*5^5).
    if (frac.size() > 9) return {DurationStatus::inexact, 0};
    int64_t w = 0, f = 0, scale = 1;
    for (const char c : whole) w = w * 10 + (c - '0');
    for (const char c : frac) {
        f = f * 10 + (c - '0');
        scale *= 10;
    }
    if ((f * factor) % scale != 0) return {DurationStatus::inexact, 0};
    const int64_t ms = w * factor + f * factor / scale;
    if (ms > kMaxDurationMs) return {DurationStatus::too_large, 0};
    return {DurationStatus::ok, ms};
}

ParsedDuration parse_duration_seconds(double seconds) {
    if (!(seconds >= 0)) return {DurationStatus::negative, 0};
    if (seconds > static_cast<double>(kMaxDurationMs) / 1000) return {DurationStatus::too_large, 0};
    const double ms = seconds * 1000;
    const double rounded = std::round(ms);
    // The tolerance only absorbs binary rounding of decimal input such as 0.001.
    if (std::fabs(ms - rounded) > 1e-6) return {DurationStatus::inexact, 0};
    return {DurationStatus::ok, static_cast<int64_t>(rounded)};
}

// ---- nlohmann syntax errors ---------------------------------------------------------------------

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

struct SyntaxError {
    size_t offset;
    std::string message;
    std::string pointer;
};

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

// ---- Validation ---------------------------------------------------------------------------------

class Checker {
  public:
    Checker(const std::string& file, const SourceMap& map) : file_(file), map_(map) {}

    // An error about the value at `pointer`.
    void error(const std::string& pointer, std::string message, std::string hint = {}) {
        add(map_.value(pointer), pointer, std::move(message), std::move(hint));
    }
    // An error about a member's name (unknown or repeated keys).
    void key_error(const std::string& pointer, std::string message, std::string hint = {}) {
        add(map_.key(pointer), pointer, std::move(message), std::move(hint));
    }
    void add(SourcePos pos, const std::string& pointer, std::string message, std::string hint) {
        if (diags_.size() >= kMaxDiagnostics) {
            ++dropped_;
            return;
        }
        diags_.push_back(Diagnostic{file_, pos.line, pos.column, shortened(pointer),
                                    std::move(message), std::move(hint)});
    }
    void note_dropped(size_t n) { dropped_ += n; }

    SourcePos where(const std::string& pointer) const { return map_.value(pointer); }
    bool ok() const { return diags_.empty() && dropped_ == 0; }

    // Sorted by position, so the output reads top to bottom like the file.
    std::vector<Diagnostic> take() {
        std::stable_sort(diags_.begin(), diags_.end(), [](const auto& a, const auto& b) {
            return std::pair(a.line, a.column) < std::pair(b.line, b.column);
        });
        if (dropped_ > 0) {
            diags_.push_back(
                Diagnostic{file_, 0, 0, "",
                           "too many errors, " + std::to_string(dropped_) + " more not shown", ""});
        }
        return std::move(diags_);
    }

    // Every member of `obj` must be one of `known`.
    void known_keys(const json& obj, const std::string& pointer,
                    std::span<const std::string_view> known) {
        for (const auto& [key, value] : obj.items()) {
            if (std::find(known.begin(), known.end(), key) != known.end()) continue;
            const std::string member = pointer + "/" + escape_pointer_token(key);
            if (const auto s = suggest(key, known)) {
                key_error(member, "unknown key " + quote(key), did_you_mean(*s));
            } else {
                std::string list;
                for (const auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
                key_error(member, "unknown key " + quote(key) + ", expected one of: " + list);
            }
        }
    }

    std::optional<int> integer(const json& v, const std::string& pointer, int lo, int hi) {
        const std::string expected =
            "expected an integer " + std::to_string(lo) + "-" + std::to_string(hi);
        if (v.is_number_unsigned()) {
            const auto n = v.get<uint64_t>();
            if (n >= static_cast<uint64_t>(std::max(lo, 0)) && n <= static_cast<uint64_t>(hi)) {
                return static_cast<int>(n);
            }
        } else if (v.is_number_integer()) {
            const auto n = v.get<int64_t>();
            if (n >= lo && n <= hi) return static_cast<int>(n);
        }
        error(pointer, expected + ", got " + (v.is_number() ? value_of(v) : type_of(v)));
        return std::nullopt;
    }

    std::optional<bool> boolean(const json& v, const std::string& pointer) {
        if (v.is_boolean()) return v.get<bool>();
        error(pointer, "expected a boolean (true or false), got " + value_of(v));
        return std::nullopt;
    }

    // Non-empty, and no control characters: a "\u0000" inside would cut the name short when it
    // reaches getpwnam(), naming a different account than the one the file shows.
    std::optional<std::string> account(const json& v, const std::string& pointer) {
        if (!v.is_string()) {
            error(pointer, "expected a non-empty string, got " + type_of(v));
            return std::nullopt;
        }
        const auto& s = v.get_ref<const std::string&>();
        if (s.empty()) {
            error(pointer, "expected a non-empty string, got \"\"");
            return std::nullopt;
        }
        for (const char c : s) {
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
                error(pointer, "expected a string without control characters, got " + quote(s));
                return std::nullopt;
            }
        }
        return s;
    }

    // `positive`: 0 is not allowed (timeouts and intervals that would mean "at once").
    std::optional<std::chrono::milliseconds> duration(const json& v, const std::string& pointer,
                                                      bool positive) {
        ParsedDuration d;
        if (v.is_string()) {
            d = parse_duration_text(v.get_ref<const std::string&>());
        } else if (v.is_number()) {
            d = parse_duration_seconds(v.get<double>());
        } else {
            error(pointer,
                  "expected a duration (" + std::string(kDurationForms) + "), got " + type_of(v));
            return std::nullopt;
        }
        const std::string got = ", got " + value_of(v);
        switch (d.status) {
            case DurationStatus::ok:
                if (positive && d.ms == 0) {
                    error(pointer, "expected a duration > 0" + got);
                    return std::nullopt;
                }
                return std::chrono::milliseconds(d.ms);
            case DurationStatus::syntax:
                error(pointer, "expected a duration (" + std::string(kDurationForms) + ")" + got);
                break;
            case DurationStatus::negative:
                error(pointer, "expected a duration >= 0" + got);
                break;
            case DurationStatus::too_large:
                error(pointer, "expected a duration of at most 7 days" + got);
                break;
            case DurationStatus::inexact:
                error(pointer, "expected a whole number of milliseconds" + got);
                break;
        }
        return std::nullopt;
    }

    std::optional<Endpoint> endpoint(const json& v, const std::string& pointer) {
        if (!v.is_string()) {
            error(pointer, "expected " + std::string(kEndpointForm) + ", got " + type_of(v));
            return std::nullopt;
        }
        try {
            return parse_endpoint(v.get_ref<const std::string&>());
        } catch (const endpoint_error& e) {
            error(pointer, e.what());
            return std::nullopt;
        }
    }

    std::optional<std::string> name(const json& v, const std::string& pointer) {
        if (!v.is_string()) {
            error(pointer, "expected " + std::string(kNameRule) + ", got " + type_of(v));
            return std::nullopt;
        }
        const auto& s = v.get_ref<const std::string&>();
        const auto alnum = [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        };
        bool ok = !s.empty() && s.size() <= 64 && alnum(s[0]);
        for (const char c : s) ok = ok && (alnum(c) || c == '_' || c == '.' || c == '-');
        if (ok) return s;
        error(pointer, "expected " + std::string(kNameRule) + ", got " + quote(s));
        return std::nullopt;
    }

  private:
    const std::string& file_;
    const SourceMap& map_;
    std::vector<Diagnostic> diags_;
    size_t dropped_ = 0;
};

const json* member(const json& obj, std::string_view key) {
    const auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

Keepalive parse_keepalive(Checker& check, const json& v, const std::string& pointer) {
    Keepalive k;
    if (v.is_boolean()) {
        k.enabled = v.get<bool>();
        return k;
    }
    if (!v.is_object()) {
        check.error(pointer,
                    "expected a boolean or an object {idle, interval, count}, got " + type_of(v));
        return k;
    }
    check.known_keys(v, pointer, kKeepaliveKeys);
    k.enabled = true;
    if (const json* idle = member(v, "idle")) {
        if (auto d = check.duration(*idle, pointer + "/idle", true)) k.idle = *d;
    }
    if (const json* interval = member(v, "interval")) {
        if (auto d = check.duration(*interval, pointer + "/interval", true)) k.interval = *d;
    }
    if (const json* count = member(v, "count")) {
        if (auto n = check.integer(*count, pointer + "/count", 1, 127)) k.count = *n;
    }
    return k;
}

RestartPolicy parse_restart(Checker& check, const json& v, const std::string& pointer) {
    RestartPolicy r;
    if (!v.is_object()) {
        check.error(pointer,
                    "expected an object {backoff_initial, backoff_max, healthy_after, "
                    "max_failures}, got " +
                        type_of(v));
        return r;
    }
    check.known_keys(v, pointer, kRestartKeys);
    const json* initial_json = member(v, "backoff_initial");
    const json* max_json = member(v, "backoff_max");
    std::optional<std::chrono::milliseconds> initial, max;
    if (initial_json) {
        initial = check.duration(*initial_json, pointer + "/backoff_initial", true);
        if (initial) r.backoff_initial = *initial;
    }
    if (max_json) {
        max = check.duration(*max_json, pointer + "/backoff_max", true);
        if (max) r.backoff_max = *max;
    }
    if (const json* x = member(v, "healthy_after")) {
        if (auto d = check.duration(*x, pointer + "/healthy_after", true)) r.healthy_after = *d;
    }
    if (const json* x = member(v, "max_failures")) {
        if (auto n = check.integer(*x, pointer + "/max_failures", 1, 1000)) r.max_failures = *n;
    }
    // Point at a field the user wrote: backoff_max if written, else backoff_initial against the
    // default. An invalid value was reported already.
    if (r.backoff_max < r.backoff_initial) {
        if (max) {
            check.error(pointer + "/backoff_max", "expected a duration >= backoff_initial (" +
                                                      format_ms(r.backoff_initial) + "), got " +
                                                      value_of(*max_json));
        } else if (initial && !max_json) {
            check.error(pointer + "/backoff_initial",
                        "expected a duration <= backoff_max (" + format_ms(r.backoff_max) +
                            ", the default), got " + value_of(*initial_json));
        }
    }
    return r;
}

struct ParsedProxy {
    Proxy proxy;
    bool has_name = false;
    bool has_listen = false;
};

ParsedProxy parse_proxy(Checker& check, const json& v, const std::string& pointer) {
    ParsedProxy out;
    Proxy& p = out.proxy;
    p.pointer = pointer;
    if (!v.is_object()) {
        check.error(pointer, "expected a proxy object, got " + type_of(v));
        return out;
    }
    check.known_keys(v, pointer, kProxyKeys);
    for (const std::string_view required : {"name", "listen", "upstream"}) {
        if (!v.contains(required)) {
            check.error(pointer, "missing required key \"" + std::string(required) + "\"");
        }
    }
    if (const json* x = member(v, "name")) {
        if (auto n = check.name(*x, pointer + "/name")) {
            p.name = *n;
            out.has_name = true;
        }
    }
    std::optional<Endpoint> listen, upstream;
    if (const json* x = member(v, "listen")) listen = check.endpoint(*x, pointer + "/listen");
    if (const json* x = member(v, "upstream")) upstream = check.endpoint(*x, pointer + "/upstream");
    const auto scheme = [](const std::optional<Endpoint>& e) {
        return e ? std::optional<Scheme>(e->scheme) : std::nullopt;
    };
    const KindChoice kind = derive_kind(scheme(listen), scheme(upstream));
    if (!kind.listen_error.empty()) check.error(pointer + "/listen", kind.listen_error);
    if (!kind.upstream_error.empty()) check.error(pointer + "/upstream", kind.upstream_error);
    if (kind.kind) p.kind = *kind.kind;
    if (listen) {
        p.listen = *listen;
        out.has_listen = true;
    }
    if (upstream) p.upstream = *upstream;

    if (const json* x = member(v, "workers")) {
        if (auto n = check.integer(*x, pointer + "/workers", 1, 64)) p.workers = *n;
    }
    if (const json* x = member(v, "max_connections")) {
        if (auto n = check.integer(*x, pointer + "/max_connections", 1, 1'000'000)) {
            p.max_connections = *n;
        }
    }
    if (const json* x = member(v, "backlog")) {
        if (auto n = check.integer(*x, pointer + "/backlog", 1, 65535)) p.backlog = *n;
    }
    if (const json* x = member(v, "connect_timeout")) {
        if (auto d = check.duration(*x, pointer + "/connect_timeout", true)) p.connect_timeout = *d;
    }
    if (const json* x = member(v, "idle_timeout")) {
        if (auto d = check.duration(*x, pointer + "/idle_timeout", false)) p.idle_timeout = *d;
    }
    if (const json* x = member(v, "tcp_nodelay")) {
        if (auto b = check.boolean(*x, pointer + "/tcp_nodelay")) p.tcp_nodelay = *b;
    }
    if (const json* x = member(v, "splice")) {
        if (auto b = check.boolean(*x, pointer + "/splice")) p.splice = *b;
    }
    if (const json* x = member(v, "keepalive")) {
        p.keepalive = parse_keepalive(check, *x, pointer + "/keepalive");
    }
    if (const json* x = member(v, "restart")) {
        p.restart = parse_restart(check, *x, pointer + "/restart");
    }
    return out;
}

void validate(Checker& check, const json& doc, Policy& policy) {
    if (!doc.is_object()) {
        check.error("", "expected an object, got " + type_of(doc));
        return;
    }
    check.known_keys(doc, "", kTopKeys);
    if (const json* x = member(doc, "user")) policy.user = check.account(*x, "/user");
    if (const json* x = member(doc, "group")) policy.group = check.account(*x, "/group");
    if (const json* x = member(doc, "drain_timeout")) {
        if (auto d = check.duration(*x, "/drain_timeout", false)) policy.drain_timeout = *d;
    }
    const json* proxies = member(doc, "proxies");
    if (!proxies) {
        check.error("", "missing required key \"proxies\"");
        return;
    }
    if (!proxies->is_array()) {
        check.error("/proxies", "expected an array of proxies, got " + type_of(*proxies));
        return;
    }
    if (proxies->empty()) {
        check.error("/proxies", "expected at least one proxy, got an empty array");
        return;
    }
    // Cross-entry checks: the first occurrence's pointer, by name and by canonical listen text.
    std::map<std::string, std::string> names, listens;
    for (size_t i = 0; i < proxies->size(); ++i) {
        const std::string pointer = "/proxies/" + std::to_string(i);
        ParsedProxy parsed = parse_proxy(check, (*proxies)[i], pointer);
        if (parsed.has_name) {
            const auto [it, fresh] = names.try_emplace(parsed.proxy.name, pointer + "/name");
            if (!fresh) {
                check.error(pointer + "/name", "duplicate proxy name " + quote(parsed.proxy.name) +
                                                   " (first at " +
                                                   position_text(check.where(it->second)) + ")");
            }
        }
        if (parsed.has_listen) {
            const std::string text = to_string(parsed.proxy.listen);
            const auto [it, fresh] = listens.try_emplace(text, pointer + "/listen");
            if (!fresh) {
                check.error(pointer + "/listen", "duplicate listen endpoint " + quote(text) +
                                                     " (first at " +
                                                     position_text(check.where(it->second)) + ")");
            }
        }
        policy.proxies.push_back(std::move(parsed.proxy));
    }
}

[[noreturn]] void fail(const std::string& file, std::string message) {
    throw policy_error({Diagnostic{file, 0, 0, "", std::move(message), ""}});
}

}  // namespace

Policy parse_policy(std::string_view text, const std::string& filename) {
    if (text.size() > kMaxPolicyBytes) {
        fail(filename,
             "the policy is larger than " + std::to_string(kMaxPolicyBytes >> 20) + " MiB");
    }
    const SourceMap map(text);
    const auto syntax_error = [&](size_t offset, const std::string& pointer, std::string message) {
        const SourcePos pos = map.at_offset(offset);
        throw policy_error(
            {Diagnostic{filename, pos.line, pos.column, pointer, std::move(message), ""}});
    };
    // nlohmann stops at a NUL byte as if the text ended there, which would silently ignore
    // whatever follows it. Parse what nlohmann would see, then refuse the NUL itself.
    const size_t nul = text.find('\0');
    const std::string_view seen = text.substr(0, nul);
    SyntaxCheck check;
    json::sax_parse(seen.begin(), seen.end(), &check);
    if (check.failed) {
        SyntaxError e = reword(check, text);
        if (nul == std::string_view::npos || e.offset < nul) {
            syntax_error(e.offset, e.pointer, e.message);
        }
    }
    if (nul != std::string_view::npos) {
        syntax_error(nul, check.pointer, "syntax error: unexpected NUL byte");
    }

    json doc;
    try {
        doc = json::parse(seen.begin(), seen.end());
    } catch (const json::exception& e) {
        fail(filename, std::string("syntax error: ") + e.what());  // not expected after sax_parse
    }

    Policy policy;
    policy.path = filename;
    Checker checker(filename, map);
    for (const auto& dup : map.duplicates()) {
        checker.add(
            dup.second, dup.pointer,
            "duplicate key " + quote(dup.name) + " (first at " + position_text(dup.first) + ")",
            "");
    }
    checker.note_dropped(map.duplicates_dropped());
    validate(checker, doc, policy);
    if (!checker.ok()) throw policy_error(checker.take());
    return policy;
}

Policy load_policy(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) fail(path, std::string("cannot open the policy: ") + std::strerror(errno));
    std::string text;
    int err = 0;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        err = errno;
    } else if (S_ISDIR(st.st_mode)) {
        err = EISDIR;
    } else {
        // Read one byte past the limit so an oversized file (or endless FIFO) is caught.
        char buf[65536];
        for (;;) {
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                err = errno;
                break;
            }
            if (n == 0) break;
            text.append(buf, static_cast<size_t>(n));
            if (text.size() > kMaxPolicyBytes) break;
        }
    }
    ::close(fd);
    if (err != 0) fail(path, std::string("cannot read the policy: ") + std::strerror(err));
    return parse_policy(text, path);
}

}  // namespace pfp::policy
