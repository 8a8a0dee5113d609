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

#include "common/allow_list.hpp"
#include "policy/source_map.hpp"

namespace pfp::policy {
namespace {

using json = nlohmann::json;

// A policy is a few kilobytes; the cap keeps a hostile file from costing gigabytes of parse tree.
constexpr size_t kMaxPolicyBytes = 16 * 1024 * 1024;
// Past this, more errors only bury the first ones (and a hostile file could make millions).
constexpr size_t kMaxDiagnostics = 100;
constexpr int64_t kMaxDurationMs = int64_t{7} * 24 * 3600 * 1000;

constexpr std::array<std::string_view, 7> kTopKeys{
    "user", "group", "drain_timeout", "metrics", "control_users", "control_groups", "proxies"};
// The endpoints the metrics server can listen on (supervisor/metrics_server.cpp).
constexpr std::array<Scheme, 2> kMetricsSchemes{Scheme::tcp, Scheme::unix_stream};
// In the order of docs/policy.md; unknown-key messages list them so.
constexpr std::array<std::string_view, 24> kProxyKeys{
    "name", "listen", "listen_family", "upstream",
    // The relay: preamble, egress, admission, socket file.
    "send_original_destination", "header", "proxy_protocol", "allow", "allowed_cids",
    "allowed_sources", "socket_mode", "socket_owner", "socket_group",
    // Limits, tuning and logging.
    "workers", "max_connections", "backlog", "connect_timeout", "idle_timeout", "tcp_nodelay",
    "keepalive", "splice", "log_connections", "statistics", "restart"};
constexpr std::array<std::string_view, 3> kKeepaliveKeys{"idle", "interval", "count"};
constexpr std::array<std::string_view, 4> kRestartKeys{"backoff_initial", "backoff_max",
                                                       "healthy_after", "max_failures"};

constexpr std::string_view kDurationForms =
    R"(a number of seconds or a string such as "250ms", "10s", "5m", "1h")";
constexpr std::string_view kNameRule =
    "a name of 1-64 characters [A-Za-z0-9_.-] starting with a letter or digit";
constexpr std::string_view kEndpointForm = R"(an endpoint string such as "tcp:127.0.0.1:8080")";
constexpr std::string_view kUpstreamForm =
    R"(an endpoint string such as "tcp:127.0.0.1:8080", "destination-header" or )"
    R"("original-destination")";

// The words `upstream` takes besides an endpoint, and what each means.
constexpr std::array<std::string_view, 2> kUpstreamWords{"original-destination",
                                                         "destination-header"};
constexpr std::array<UpstreamMode, 2> kUpstreamModes{UpstreamMode::original_destination,
                                                     UpstreamMode::destination_header};
constexpr std::array<std::string_view, 2> kHeaderNames{"standard", "oyster-v4"};
constexpr std::array<HeaderFormat, 2> kHeaderFormats{HeaderFormat::standard,
                                                     HeaderFormat::oyster_v4};
// listen_family of a "systemd:NAME" listener, and the scheme it stands for.
constexpr std::array<std::string_view, 4> kListenFamilyNames{"tcp", "udp", "unix", "vsock"};
constexpr std::array<Scheme, 4> kListenFamilies{Scheme::tcp, Scheme::udp, Scheme::unix_stream,
                                                Scheme::vsock};

// ---- Worker kinds -------------------------------------------------------------------------------

// A listener, as far as choosing a worker kind goes.
enum class Side { tcp, vsock_like };

// What a relay connects to.
enum class Target {
    tcp,                   // a tcp: endpoint
    vsock_like,            // a vsock:, unix: or fc-vsock: endpoint with a fixed port
    original_port,         // a vsock: or fc-vsock: endpoint whose port is original-port
    destination_header,    // "destination-header": read from the stream
    original_destination,  // "original-destination": SO_ORIGINAL_DST of the client
};

// Which listener, upstream and send_original_destination make each worker kind, and which of the
// kind-specific keys it takes. A new kind is one more line here.
struct KindRule {
    Side listen;
    Target upstream;
    bool send_original_destination = false;
    WorkerKind kind;
    bool allow = false;       // `allow`: it connects to TCP destinations
    bool statistics = false;  // `statistics`
};
constexpr std::array kKindRules{
    KindRule{.listen = Side::tcp,
             .upstream = Target::tcp,
             .kind = WorkerKind::tcp_forward,
             .allow = true},
    KindRule{.listen = Side::tcp, .upstream = Target::vsock_like, .kind = WorkerKind::ip_to_vsock},
    KindRule{.listen = Side::tcp,
             .upstream = Target::vsock_like,
             .send_original_destination = true,
             .kind = WorkerKind::ip_to_vsock_transparent},
    KindRule{.listen = Side::tcp,
             .upstream = Target::original_port,
             .kind = WorkerKind::transparent_port_to_vsock},
    KindRule{.listen = Side::vsock_like,
             .upstream = Target::tcp,
             .kind = WorkerKind::vsock_to_ip,
             .allow = true},
    KindRule{.listen = Side::vsock_like,
             .upstream = Target::destination_header,
             .kind = WorkerKind::vsock_to_ip_transparent,
             .allow = true},
    KindRule{.listen = Side::vsock_like,
             .upstream = Target::vsock_like,
             .kind = WorkerKind::vsock_to_vsock,
             .statistics = true},
};

// Each combination makes one kind at most.
constexpr bool kind_rules_are_unambiguous() {
    for (size_t i = 0; i < kKindRules.size(); ++i) {
        for (size_t j = i + 1; j < kKindRules.size(); ++j) {
            const KindRule& a = kKindRules[i];
            const KindRule& b = kKindRules[j];
            if (a.listen == b.listen && a.upstream == b.upstream &&
                a.send_original_destination == b.send_original_destination) {
                return false;
            }
        }
    }
    return true;
}
static_assert(kind_rules_are_unambiguous());

constexpr std::array<Scheme, 1> kTcpSchemes{Scheme::tcp};
constexpr std::array<Scheme, 3> kVsockLikeSchemes{Scheme::vsock, Scheme::unix_stream,
                                                  Scheme::fc_vsock};
// Endpoints whose port may be original-port (unix: has no port).
constexpr std::array<Scheme, 2> kOriginalPortSchemes{Scheme::vsock, Scheme::fc_vsock};

std::span<const Scheme> side_schemes(Side s) {
    if (s == Side::tcp) return kTcpSchemes;
    return kVsockLikeSchemes;
}

std::optional<Side> side_of(Scheme s) {
    if (s == Scheme::tcp) return Side::tcp;
    if (std::find(kVsockLikeSchemes.begin(), kVsockLikeSchemes.end(), s) !=
        kVsockLikeSchemes.end()) {
        return Side::vsock_like;
    }
    return std::nullopt;
}

// The endpoint schemes that reach a target (none for the words).
std::span<const Scheme> target_schemes(Target t) {
    switch (t) {
        case Target::tcp:
            return kTcpSchemes;
        case Target::vsock_like:
            return kVsockLikeSchemes;
        case Target::original_port:
            return kOriginalPortSchemes;
        case Target::destination_header:
        case Target::original_destination:
            break;
    }
    return {};
}

std::optional<Target> target_of(const Endpoint& e) {
    if (e.scheme == Scheme::tcp) return Target::tcp;
    if (!side_of(e.scheme)) return std::nullopt;
    return e.original_port ? Target::original_port : Target::vsock_like;
}

std::string_view article(Scheme s) {
    // "an fc-vsock", "an nfqueue": the names are read letter by letter.
    return s == Scheme::fc_vsock || s == Scheme::nfqueue ? "an" : "a";
}

// "tcp, vsock, unix" (for lists of what is supported).
std::string scheme_list(std::span<const Scheme> schemes) {
    std::string out;
    for (const Scheme s : schemes) {
        if (!out.empty()) out += ", ";
        out += scheme_name(s);
    }
    return out;
}

// "a tcp", "a vsock, unix or fc-vsock" (in prose, before "listener" or "upstream").
std::string schemes_in_prose(std::span<const Scheme> schemes) {
    std::string out;
    for (size_t i = 0; i < schemes.size(); ++i) {
        out += i == 0                    ? std::string(article(schemes[i])) + " "
               : i + 1 == schemes.size() ? " or "
                                         : ", ";
        out += scheme_name(schemes[i]);
    }
    return out;
}

// The upstream a target stands for, in messages.
std::string target_text(Target t) {
    switch (t) {
        case Target::tcp:
        case Target::vsock_like:
            return schemes_in_prose(target_schemes(t)) + " upstream";
        case Target::original_port:
            return "an original-port upstream";
        case Target::destination_header:
            return "\"destination-header\"";
        case Target::original_destination:
            return "\"original-destination\"";
    }
    return "this upstream";
}

// Why a target needs the listener it needs; appended to the message that says so.
std::string_view target_reason(Target t) {
    if (t == Target::original_port) {
        return " (the port comes from SO_ORIGINAL_DST, which only a redirected TCP connection has)";
    }
    return "";
}

void add_unique(std::vector<Scheme>& v, std::span<const Scheme> schemes) {
    for (const Scheme s : schemes) {
        if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
    }
}

struct KindInput {
    std::optional<Scheme> listen;           // nullopt: missing or did not parse (reported already)
    std::optional<Scheme> upstream_scheme;  // an endpoint upstream's scheme
    std::optional<Target> upstream;         // nullopt: missing, did not parse or not supported
    std::optional<bool> send_original_destination;  // nullopt: not a boolean (reported already)
};

struct KindChoice {
    const KindRule* rule = nullptr;  // set when the kind is known
    std::string listen_error;
    std::string upstream_error;
    std::string send_original_destination_error;
};

// The rules that agree with every choice given (nullopt: unknown, matches anything).
std::vector<const KindRule*> rules_for(const std::optional<Side>& listen,
                                       const std::optional<Target>& upstream,
                                       const std::optional<bool>& send_original_destination) {
    std::vector<const KindRule*> out;
    for (const auto& rule : kKindRules) {
        if (listen && rule.listen != *listen) continue;
        if (upstream && rule.upstream != *upstream) continue;
        if (send_original_destination &&
            rule.send_original_destination != *send_original_destination) {
            continue;
        }
        out.push_back(&rule);
    }
    return out;
}

// Every message is about what is known; an unknown part (already reported) rules nothing out.
KindChoice derive_kind(const KindInput& in) {
    KindChoice out;
    const std::optional<Side> side = in.listen ? side_of(*in.listen) : std::nullopt;
    if (in.listen && !side) {
        std::vector<Scheme> listens;
        for (const auto& rule : kKindRules) add_unique(listens, side_schemes(rule.listen));
        out.listen_error =
            std::string(article(*in.listen)) + " " + std::string(scheme_name(*in.listen)) +
            " endpoint is not supported yet (supported: " + scheme_list(listens) + ")";
    }
    std::optional<Target> target = in.upstream;
    if (in.upstream_scheme && !target) {
        std::vector<Scheme> upstreams;
        for (const KindRule* rule : rules_for(side, std::nullopt, std::nullopt)) {
            add_unique(upstreams, target_schemes(rule->upstream));
        }
        out.upstream_error =
            std::string(article(*in.upstream_scheme)) + " " +
            std::string(scheme_name(*in.upstream_scheme)) +
            " endpoint is not supported yet (supported: " + scheme_list(upstreams) + ")";
    } else if (target) {
        const auto by_target = rules_for(std::nullopt, target, std::nullopt);
        if (by_target.empty()) {
            out.upstream_error = target_text(*target) + " is not supported by any worker kind yet";
            target.reset();
        } else if (side && rules_for(side, target, std::nullopt).empty()) {
            std::vector<Scheme> listens;
            for (const KindRule* rule : by_target) add_unique(listens, side_schemes(rule->listen));
            out.upstream_error = target_text(*target) + " needs " + schemes_in_prose(listens) +
                                 " listener, not " + std::string(scheme_name(*in.listen)) +
                                 std::string(target_reason(*target));
            target.reset();
        }
    }
    if (in.send_original_destination == true && rules_for(side, target, true).empty()) {
        if (target == Target::original_port) {
            out.send_original_destination_error =
                "send_original_destination cannot be combined with an original-port upstream";
        } else {
            std::string where;
            for (const KindRule* rule : rules_for(std::nullopt, std::nullopt, true)) {
                if (!where.empty()) where += " or ";
                where += schemes_in_prose(side_schemes(rule->listen)) + " listener with " +
                         target_text(rule->upstream);
            }
            out.send_original_destination_error =
                "send_original_destination applies only to " + where;
        }
    }
    if (side && target && in.send_original_destination && out.listen_error.empty() &&
        out.upstream_error.empty() && out.send_original_destination_error.empty()) {
        const auto rules = rules_for(side, target, in.send_original_destination);
        if (!rules.empty()) {
            out.rule = rules.front();
        } else {  // a listener and upstream that make a kind only with send_original_destination
            out.upstream_error = "no worker kind connects " +
                                 schemes_in_prose(side_schemes(*side)) + " listener to " +
                                 target_text(*target);
        }
    }
    return out;
}

// "tcp-forward, vsock-to-ip" (for lists of the kinds a key applies to).
template <typename Pred>
std::string kinds_where(Pred pred) {
    std::string out;
    for (const auto& rule : kKindRules) {
        if (!pred(rule)) continue;
        if (!out.empty()) out += ", ";
        out += kind_name(rule.kind);
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

    // Every member of `obj` must be one of `known` (or `unlisted`, accepted but never suggested).
    void known_keys(const json& obj, const std::string& pointer,
                    std::span<const std::string_view> known, std::string_view unlisted = {}) {
        for (const auto& [key, value] : obj.items()) {
            if (std::find(known.begin(), known.end(), key) != known.end()) continue;
            if (!unlisted.empty() && key == unlisted) continue;
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

    struct Upstream {
        UpstreamMode mode = UpstreamMode::fixed;
        Endpoint endpoint;  // mode == fixed
    };

    // An endpoint, or one of the words. A near miss of a word gets a hint.
    std::optional<Upstream> upstream(const json& v, const std::string& pointer) {
        if (!v.is_string()) {
            error(pointer, "expected " + std::string(kUpstreamForm) + ", got " + type_of(v));
            return std::nullopt;
        }
        const auto& s = v.get_ref<const std::string&>();
        for (size_t i = 0; i < kUpstreamWords.size(); ++i) {
            if (s == kUpstreamWords[i]) return Upstream{kUpstreamModes[i], {}};
        }
        try {
            return Upstream{UpstreamMode::fixed, parse_endpoint(s)};
        } catch (const endpoint_error& e) {
            const auto word =
                s.find(':') == std::string::npos ? suggest(s, kUpstreamWords) : std::nullopt;
            error(pointer, e.what(), word ? did_you_mean(*word) : "");
            return std::nullopt;
        }
    }

    // The index of the one of `names` that `v` is.
    std::optional<size_t> choice(const json& v, const std::string& pointer,
                                 std::span<const std::string_view> names) {
        std::string expected = "expected ";
        for (size_t i = 0; i < names.size(); ++i) {
            if (i > 0) expected += i + 1 == names.size() ? " or " : ", ";
            expected += quote(names[i]);
        }
        if (!v.is_string()) {
            error(pointer, expected + ", got " + type_of(v));
            return std::nullopt;
        }
        const auto& s = v.get_ref<const std::string&>();
        for (size_t i = 0; i < names.size(); ++i) {
            if (s == names[i]) return i;
        }
        const auto near = suggest(s, names);
        error(pointer, expected + ", got " + quote(s), near ? did_you_mean(*near) : "");
        return std::nullopt;
    }

    // How the messages about one list key name its elements.
    struct ListWords {
        std::string_view plural;    // "allow entries"
        std::string_view singular;  // "allow entry"
        std::string_view article;   // "an"
        std::string_view example;   // R"("10.0.0.0/8:443")"
        std::string_view omitted;   // what leaving the key out means
    };

    // A non-empty array, or nullptr (reported): an empty list would read as "nothing admitted"
    // but could only mean what an omitted key means.
    const json* nonempty_array(const json& v, const std::string& pointer, const ListWords& w) {
        if (!v.is_array()) {
            error(pointer, "expected an array of " + std::string(w.plural) + " such as [" +
                               std::string(w.example) + "], got " + type_of(v));
            return nullptr;
        }
        if (v.empty()) {
            error(pointer, "expected at least one " + std::string(w.singular) +
                               ", got an empty array (" + std::string(w.omitted) + ")");
            return nullptr;
        }
        return &v;
    }

    // `allow` and `allowed_sources`: strings that `parse` accepts or rejects with an
    // allow_list_error, whose message is the diagnostic at that element. All or nothing.
    template <typename Parse>
    std::optional<std::vector<std::string>> allow_strings(const json& v, const std::string& pointer,
                                                          const ListWords& w, Parse parse) {
        const json* array = nonempty_array(v, pointer, w);
        if (!array) return std::nullopt;
        std::vector<std::string> out;
        bool ok = true;
        for (size_t i = 0; i < array->size(); ++i) {
            const json& element = (*array)[i];
            const std::string at = pointer + "/" + std::to_string(i);
            if (!element.is_string()) {
                error(at, "expected " + std::string(w.article) + " " + std::string(w.singular) +
                              " such as " + std::string(w.example) + ", got " + type_of(element));
                ok = false;
                continue;
            }
            const auto& s = element.get_ref<const std::string&>();
            try {
                (void)parse(s);
                out.push_back(s);
            } catch (const allow_list_error& e) {
                error(at, e.what());
                ok = false;
            }
        }
        if (!ok) return std::nullopt;
        return out;
    }

    // `allowed_cids`: u32 numbers, each once. All or nothing.
    std::optional<std::vector<uint32_t>> cids(const json& v, const std::string& pointer) {
        const json* array = nonempty_array(
            v, pointer,
            {"CIDs", "CID", "a", "3, 5", "to admit every peer, leave allowed_cids out"});
        if (!array) return std::nullopt;
        std::vector<uint32_t> out;
        std::map<uint32_t, std::string> seen;  // CID -> pointer of its first element
        bool ok = true;
        for (size_t i = 0; i < array->size(); ++i) {
            const json& element = (*array)[i];
            const std::string at = pointer + "/" + std::to_string(i);
            if (!element.is_number_unsigned() || element.get<uint64_t>() > UINT32_MAX) {
                error(at, "expected a CID 0-4294967295, got " +
                              (element.is_number() ? value_of(element) : type_of(element)));
                ok = false;
                continue;
            }
            const auto cid = static_cast<uint32_t>(element.get<uint64_t>());
            const auto [it, fresh] = seen.try_emplace(cid, at);
            if (!fresh) {
                error(at, "duplicate CID " + std::to_string(cid) + " (first at " +
                              position_text(where(it->second)) + ")");
                ok = false;
                continue;
            }
            out.push_back(cid);
        }
        if (!ok) return std::nullopt;
        return out;
    }

    // "0660", "660": an octal file mode up to 0777, as a string (JSON has no octal numbers, and
    // 660 read as decimal would be a different mode).
    std::optional<unsigned> file_mode(const json& v, const std::string& pointer) {
        constexpr std::string_view kExpected =
            R"(expected an octal mode "000"-"777" or "0000"-"0777" such as "0660")";
        if (!v.is_string()) {
            error(pointer,
                  std::string(kExpected) + ", got " + (v.is_number() ? value_of(v) : type_of(v)));
            return std::nullopt;
        }
        std::string_view s = v.get_ref<const std::string&>();
        if (s.size() == 4 && s[0] == '0') s.remove_prefix(1);
        unsigned mode = 0;
        bool ok = s.size() == 3;
        for (const char c : s) {
            ok = ok && c >= '0' && c <= '7';
            if (ok) mode = mode * 8 + static_cast<unsigned>(c - '0');
        }
        if (ok) return mode;
        error(pointer, std::string(kExpected) + ", got " + value_of(v));
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

// What the option checks know about an entry; nullopt (or null) where that part is missing or
// invalid, reported already, so that it rules nothing in or out.
struct RelayShape {
    std::optional<Scheme> listen;
    bool abstract_listen = false;  // unix:@name: no socket file
    bool activated = false;        // systemd:NAME: the service manager made the socket
    std::optional<UpstreamMode> upstream_mode;
    std::optional<bool> send_original_destination;
    const KindRule* rule = nullptr;
};

constexpr Checker::ListWords kAllowWords{"allow entries", "allow entry", "an",
                                         R"("10.0.0.0/8:443")", "leave allow out for the default"};
constexpr Checker::ListWords kSourceWords{"CIDRs", "CIDR", "a", R"("10.0.0.0/8")",
                                          "to admit every client, leave allowed_sources out"};

// The keys that choose a relay's preamble, admission and egress. A key that cannot apply to this
// entry is reported as such, and its value is not checked further.
void parse_relay_options(Checker& check, const json& v, const std::string& pointer,
                         const RelayShape& shape, Proxy& p) {
    const auto at = [&pointer](std::string_view key) { return pointer + "/" + std::string(key); };
    const std::string listen_name =
        shape.listen ? std::string(scheme_name(*shape.listen)) : std::string();
    const std::string kind = shape.rule ? std::string(kind_name(shape.rule->kind)) : "";

    if (const json* x = member(v, "header")) {
        const bool unused = shape.send_original_destination == false && shape.upstream_mode &&
                            *shape.upstream_mode != UpstreamMode::destination_header;
        if (unused) {
            check.error(at("header"),
                        "header applies only with send_original_destination or a "
                        "\"destination-header\" upstream");
        } else if (auto i = check.choice(*x, at("header"), kHeaderNames)) {
            p.header = kHeaderFormats[*i];
        }
    }
    if (const json* x = member(v, "proxy_protocol")) {
        if (auto b = check.boolean(*x, at("proxy_protocol"))) {
            if (*b && shape.send_original_destination == true) {
                check.error(at("proxy_protocol"),
                            "proxy_protocol cannot be combined with send_original_destination "
                            "(the peer expects the transparent header first)");
            }
            p.proxy_protocol = *b;
        }
    }
    if (const json* x = member(v, "allow")) {
        if (shape.rule && !shape.rule->allow) {
            check.error(at("allow"),
                        "allow applies only to relays that connect to TCP destinations (" +
                            kinds_where([](const KindRule& r) { return r.allow; }) + "), not " +
                            kind);
        } else if (auto list =
                       check.allow_strings(*x, at("allow"), kAllowWords, parse_allow_entry)) {
            p.allow = std::move(*list);
            // A fixed upstream is the only destination: a list that denies it is a mistake.
            if (shape.rule && shape.rule->upstream == Target::tcp) {
                const Decision d = AllowList::parse(p.allow).decide(p.upstream.addr);
                if (!d.allowed()) {
                    check.error(at("allow"), "the upstream " + quote(to_string(p.upstream)) +
                                                 " is not allowed by this list (" +
                                                 std::string(d.reason) + ")");
                }
            }
        }
    }
    if (const json* x = member(v, "allowed_cids")) {
        if (shape.listen && *shape.listen != Scheme::vsock) {
            check.error(at("allowed_cids"),
                        "allowed_cids applies only to vsock listeners, not " + listen_name);
        } else if (auto cids = check.cids(*x, at("allowed_cids"))) {
            p.allowed_cids = std::move(*cids);
        }
    }
    if (const json* x = member(v, "allowed_sources")) {
        if (shape.listen && *shape.listen != Scheme::tcp) {
            check.error(at("allowed_sources"),
                        "allowed_sources applies only to tcp listeners, not " + listen_name);
        } else if (auto list =
                       check.allow_strings(*x, at("allowed_sources"), kSourceWords, parse_cidr)) {
            p.allowed_sources = std::move(*list);
        }
    }
    for (const std::string_view key : {"socket_mode", "socket_owner", "socket_group"}) {
        const json* x = member(v, key);
        if (!x) continue;
        if (shape.listen && *shape.listen != Scheme::unix_stream &&
            *shape.listen != Scheme::fc_vsock) {
            check.error(at(key), std::string(key) +
                                     " applies only to unix and fc-vsock listeners, not " +
                                     listen_name);
        } else if (shape.abstract_listen) {
            check.error(at(key), std::string(key) +
                                     " does not apply to an abstract unix socket (it has no file)");
        } else if (shape.activated) {
            check.error(at(key), std::string(key) +
                                     " does not apply to a socket systemd passes (set SocketMode=, "
                                     "SocketUser= and SocketGroup= in the .socket unit)");
        } else if (key == "socket_mode") {
            if (auto mode = check.file_mode(*x, at(key))) p.unix_socket.mode = *mode;
        } else if (auto name = check.account(*x, at(key))) {
            (key == "socket_owner" ? p.unix_socket.owner : p.unix_socket.group) = std::move(*name);
        }
    }
    if (const json* x = member(v, "log_connections")) {
        if (auto b = check.boolean(*x, at("log_connections"))) p.log_connections = *b;
    }
    if (const json* x = member(v, "statistics")) {
        if (auto b = check.boolean(*x, at("statistics"))) {
            if (*b && shape.rule && !shape.rule->statistics) {
                check.error(at("statistics"),
                            "statistics applies only to " +
                                kinds_where([](const KindRule& r) { return r.statistics; }) +
                                " relays, not " + kind);
            }
            p.statistics = *b;
        }
    }
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
    std::optional<Endpoint> listen;
    if (const json* x = member(v, "listen")) {
        listen = check.endpoint(*x, pointer + "/listen");
        if (listen && listen->original_port) {
            check.error(pointer + "/listen",
                        "original-port applies only to an upstream (a listener needs a port of "
                        "its own)");
            listen.reset();
        }
    }
    // A socket systemd passes could be anything; the policy says which family its proxy takes,
    // and that family chooses the kind as the scheme of a listener pf-proxyd opens would.
    std::optional<Scheme> family;
    if (const json* x = member(v, "listen_family")) {
        if (listen && listen->scheme != Scheme::systemd) {
            check.error(pointer + "/listen_family",
                        "listen_family applies only to a \"systemd:NAME\" listener (the " +
                            std::string(scheme_name(listen->scheme)) + " endpoint names its own)");
        } else if (auto f = check.choice(*x, pointer + "/listen_family", kListenFamilyNames)) {
            family = kListenFamilies[*f];
        } else {
            listen.reset();  // one error, not a second one about the systemd scheme
        }
    } else if (listen && listen->scheme == Scheme::systemd) {
        check.error(pointer + "/listen",
                    "a \"systemd:NAME\" listener needs listen_family (\"tcp\", \"udp\", "
                    "\"unix\" or \"vsock\"): the kind of proxy depends on it");
        listen.reset();
    }
    std::optional<Checker::Upstream> upstream;
    if (const json* x = member(v, "upstream")) upstream = check.upstream(*x, pointer + "/upstream");
    std::optional<bool> send_original_destination = false;
    if (const json* x = member(v, "send_original_destination")) {
        send_original_destination = check.boolean(*x, pointer + "/send_original_destination");
    }

    const std::optional<Scheme> listen_scheme =
        family ? family : listen ? std::optional(listen->scheme) : std::nullopt;
    KindInput in;
    in.listen = listen_scheme;
    if (upstream) {
        switch (upstream->mode) {
            case UpstreamMode::fixed:
                in.upstream_scheme = upstream->endpoint.scheme;
                in.upstream = target_of(upstream->endpoint);
                break;
            case UpstreamMode::original_destination:
                in.upstream = Target::original_destination;
                break;
            case UpstreamMode::destination_header:
                in.upstream = Target::destination_header;
                break;
        }
    }
    in.send_original_destination = send_original_destination;
    const KindChoice kind = derive_kind(in);
    if (!kind.listen_error.empty()) check.error(pointer + "/listen", kind.listen_error);
    if (!kind.upstream_error.empty()) check.error(pointer + "/upstream", kind.upstream_error);
    if (!kind.send_original_destination_error.empty()) {
        check.error(pointer + "/send_original_destination", kind.send_original_destination_error);
    }
    if (kind.rule) p.kind = kind.rule->kind;
    if (listen) {
        p.listen = *listen;
        out.has_listen = true;
    }
    if (family) p.listen_family = *family;
    if (upstream) {
        p.upstream_mode = upstream->mode;
        p.upstream = upstream->endpoint;
    }
    if (send_original_destination) p.send_original_destination = *send_original_destination;

    RelayShape shape;
    if (listen) {
        shape.listen = listen_scheme;
        shape.activated = listen->scheme == Scheme::systemd;
        shape.abstract_listen =
            listen->scheme == Scheme::unix_stream && listen->path.starts_with('@');
    }
    if (upstream) shape.upstream_mode = upstream->mode;
    shape.send_original_destination = send_original_destination;
    shape.rule = kind.rule;
    parse_relay_options(check, v, pointer, shape, p);

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

// What a listener binds, for the duplicate check: its canonical text, except that an fc-vsock
// listener binds the Unix socket file PATH_PORT, which a unix: listener could name too.
std::string bound_address(const Endpoint& e) {
    if (e.scheme == Scheme::fc_vsock) return "unix:" + e.path + "_" + std::to_string(e.port);
    return to_string(e);
}

struct FirstListen {
    std::string pointer;
    std::string text;  // canonical
};

void validate(Checker& check, const json& doc, Policy& policy) {
    if (!doc.is_object()) {
        check.error("", "expected an object, got " + type_of(doc));
        return;
    }
    // "$schema": the JSON Schema editors check the file against (schema/policy.schema.json);
    // it means nothing to pf-proxyd.
    check.known_keys(doc, "", kTopKeys, "$schema");
    if (const json* x = member(doc, "$schema"); x && !x->is_string()) {
        check.error("/$schema", "expected a string (the schema's URI), got " + type_of(*x));
    }
    if (const json* x = member(doc, "user")) policy.user = check.account(*x, "/user");
    if (const json* x = member(doc, "group")) policy.group = check.account(*x, "/group");
    if (const json* x = member(doc, "drain_timeout")) {
        if (auto d = check.duration(*x, "/drain_timeout", false)) policy.drain_timeout = *d;
    }
    if (const json* x = member(doc, "metrics")) {
        if (auto e = check.endpoint(*x, "/metrics")) {
            if (std::find(kMetricsSchemes.begin(), kMetricsSchemes.end(), e->scheme) ==
                kMetricsSchemes.end()) {
                check.error("/metrics", std::string(article(e->scheme)) + " " +
                                            std::string(scheme_name(e->scheme)) +
                                            " endpoint cannot serve metrics (allowed: " +
                                            scheme_list(kMetricsSchemes) + ")");
            } else if (e->scheme == Scheme::unix_stream && !e->path.starts_with('/')) {
                // An abstract socket has no file whose mode could restrict who reads it.
                check.error("/metrics",
                            "expected a unix: endpoint with a path such as "
                            "\"unix:/run/pf-proxy/metrics.sock\", got " +
                                quote(to_string(*e)));
            } else {
                policy.metrics = *e;
            }
        }
    }
    // Names like `user`, each once; resolved by the supervisor, which knows the system's
    // accounts.
    const auto accounts = [&](const char* key, std::vector<std::string>& out) {
        const json* x = member(doc, key);
        if (!x) return;
        const std::string pointer = std::string("/") + key;
        if (!x->is_array()) {
            check.error(pointer, "expected an array of names, got " + type_of(*x));
            return;
        }
        std::map<std::string, std::string> seen;  // name -> pointer of its first element
        for (size_t i = 0; i < x->size(); ++i) {
            const std::string at = pointer + "/" + std::to_string(i);
            auto name = check.account((*x)[i], at);
            if (!name) continue;
            const auto [it, fresh] = seen.try_emplace(*name, at);
            if (!fresh) {
                check.error(at, "duplicate name " + quote(*name) + " (first at " +
                                    position_text(check.where(it->second)) + ")");
                continue;
            }
            out.push_back(std::move(*name));
        }
    };
    accounts("control_users", policy.control_users);
    accounts("control_groups", policy.control_groups);
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
    // Cross-entry checks: the first occurrence's pointer, by name and by what the listener binds.
    std::map<std::string, std::string> names;
    std::map<std::string, FirstListen> listens;
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
            const auto [it, fresh] = listens.try_emplace(bound_address(parsed.proxy.listen),
                                                         FirstListen{pointer + "/listen", text});
            if (!fresh) {
                const std::string first =
                    " (first at " + position_text(check.where(it->second.pointer)) + ")";
                if (it->second.text == text) {
                    check.error(pointer + "/listen",
                                "duplicate listen endpoint " + quote(text) + first);
                } else {
                    check.error(pointer + "/listen", "listen endpoint " + quote(text) +
                                                         " is the same socket file as " +
                                                         quote(it->second.text) + first);
                }
            }
        }
        policy.proxies.push_back(std::move(parsed.proxy));
    }
    if (policy.metrics) {
        const auto it = listens.find(bound_address(*policy.metrics));
        if (it != listens.end()) {
            check.error("/metrics", "the metrics endpoint " + quote(to_string(*policy.metrics)) +
                                        " is also a proxy's listener (at " +
                                        position_text(check.where(it->second.pointer)) + ")");
        }
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
