#include "policy/checker.hpp"

#include <algorithm>
#include <map>
#include <utility>

#include "common/host_endpoint.hpp"
#include "policy/duration.hpp"
#include "policy/names.hpp"
#include "policy/suggest.hpp"

namespace pfp::policy::detail {
namespace {

constexpr std::string_view kNameRule =
    "a name of 1-64 characters [A-Za-z0-9_.-] starting with a letter or digit";
constexpr std::string_view kEndpointForm = R"(an endpoint string such as "tcp:127.0.0.1:8080")";
constexpr std::string_view kUpstreamForm =
    R"(an endpoint string such as "tcp:127.0.0.1:8080", "destination-header" or )"
    R"("original-destination")";

}  // namespace

const json* member(const json& obj, std::string_view key) {
    const auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

void Checker::add(SourcePos pos, const std::string& pointer, std::string message,
                  std::string hint) {
    if (diags_.size() >= kMaxDiagnostics) {
        ++dropped_;
        return;
    }
    diags_.push_back(Diagnostic{file_, pos.line, pos.column, shortened(pointer), std::move(message),
                                std::move(hint)});
}

std::vector<Diagnostic> Checker::take() {
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

void Checker::known_keys(const json& obj, const std::string& pointer,
                         std::span<const std::string_view> known, std::string_view unlisted) {
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

std::optional<int> Checker::integer(const json& v, const std::string& pointer, int lo, int hi) {
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

std::optional<bool> Checker::boolean(const json& v, const std::string& pointer) {
    if (v.is_boolean()) return v.get<bool>();
    error(pointer, "expected a boolean (true or false), got " + value_of(v));
    return std::nullopt;
}

std::optional<std::string> Checker::account(const json& v, const std::string& pointer) {
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

std::optional<int64_t> Checker::duration_count(const json& v, const std::string& pointer,
                                               bool micro, const std::string& forms,
                                               const std::string& at_most) {
    ParsedDuration d;
    if (v.is_string()) {
        const std::string& text = v.get_ref<const std::string&>();
        d = micro ? parse_duration_text_us(text) : parse_duration_text(text);
    } else if (v.is_number()) {
        d = micro ? parse_duration_seconds_us(v.get<double>())
                  : parse_duration_seconds(v.get<double>());
    } else {
        error(pointer, "expected a duration (" + forms + "), got " + type_of(v));
        return std::nullopt;
    }
    const std::string got = ", got " + value_of(v);
    switch (d.status) {
        case DurationStatus::ok:
            return d.ms;
        case DurationStatus::syntax:
            error(pointer, "expected a duration (" + forms + ")" + got);
            break;
        case DurationStatus::negative:
            error(pointer, "expected a duration >= 0" + got);
            break;
        case DurationStatus::too_large:
            error(pointer, "expected a duration of at most " + at_most + got);
            break;
        case DurationStatus::inexact:
            error(pointer, std::string("expected a whole number of ") +
                               (micro ? "microseconds" : "milliseconds") + got);
            break;
    }
    return std::nullopt;
}

std::optional<std::chrono::milliseconds> Checker::duration(const json& v,
                                                           const std::string& pointer,
                                                           bool positive) {
    const auto n = duration_count(v, pointer, false, std::string(kDurationForms), "7 days");
    if (!n) return std::nullopt;
    if (positive && *n == 0) {
        error(pointer, "expected a duration > 0, got " + value_of(v));
        return std::nullopt;
    }
    return std::chrono::milliseconds(*n);
}

std::optional<std::chrono::microseconds> Checker::short_duration(const json& v,
                                                                 const std::string& pointer,
                                                                 std::chrono::microseconds max) {
    const std::string at_most = format_us(max);
    const auto n = duration_count(
        v, pointer, true, R"(a number of seconds or a string such as "50us", "0.5ms")", at_most);
    if (!n) return std::nullopt;
    if (*n > max.count()) {
        error(pointer, "expected a duration of at most " + at_most + ", got " + value_of(v));
        return std::nullopt;
    }
    return std::chrono::microseconds(*n);
}

std::optional<Endpoint> Checker::endpoint(const json& v, const std::string& pointer) {
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

std::optional<std::string> Checker::name(const json& v, const std::string& pointer) {
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

std::optional<Checker::Upstream> Checker::upstream(const json& v, const std::string& pointer) {
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
        // A host name the supervisor resolves (tcp: and udp: only).
        if (auto named = parse_host_endpoint(s)) return Upstream{UpstreamMode::fixed, *named};
        const auto word =
            s.find(':') == std::string::npos ? suggest(s, kUpstreamWords) : std::nullopt;
        error(pointer, e.what(), word ? did_you_mean(*word) : "");
        return std::nullopt;
    }
}

std::optional<size_t> Checker::choice(const json& v, const std::string& pointer,
                                      std::span<const std::string_view> names) {
    const std::string expected = "expected " + one_of(names);
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

const json* Checker::nonempty_array(const json& v, const std::string& pointer, const ListWords& w) {
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

std::optional<std::vector<uint32_t>> Checker::cids(const json& v, const std::string& pointer) {
    const json* array = nonempty_array(
        v, pointer, {"CIDs", "CID", "a", "3, 5", "to admit every peer, leave allowed_cids out"});
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

std::optional<unsigned> Checker::file_mode(const json& v, const std::string& pointer) {
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

}  // namespace pfp::policy::detail
