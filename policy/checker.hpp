#pragma once
// The Checker reads the values of a parsed policy document and collects a located diagnostic for
// every one it cannot accept, so that one run reports every error of the file.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/allow_list.hpp"
#include "common/endpoint.hpp"
#include "policy/diagnostics.hpp"
#include "policy/model.hpp"
#include "policy/source_map.hpp"
#include "policy/wording.hpp"

namespace pfp::policy::detail {

// Past this, more errors only bury the first ones (and a hostile file could make millions).
constexpr size_t kMaxDiagnostics = 100;

// The member `key` of an object, or nullptr.
const json* member(const json& obj, std::string_view key);

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
    void add(SourcePos pos, const std::string& pointer, std::string message, std::string hint);
    void note_dropped(size_t n) { dropped_ += n; }

    SourcePos where(const std::string& pointer) const { return map_.value(pointer); }
    bool ok() const { return diags_.empty() && dropped_ == 0; }

    // Sorted by position, so the output reads top to bottom like the file.
    std::vector<Diagnostic> take();

    // Each check below reports what is wrong with the value at `pointer` and returns nullopt, or
    // returns the value.

    // Every member of `obj` must be one of `known` (or `unlisted`, accepted but never suggested).
    void known_keys(const json& obj, const std::string& pointer,
                    std::span<const std::string_view> known, std::string_view unlisted = {});

    std::optional<int> integer(const json& v, const std::string& pointer, int lo, int hi);
    std::optional<bool> boolean(const json& v, const std::string& pointer);

    // Non-empty, and no control characters: a "\u0000" inside would cut the name short when it
    // reaches getpwnam(), naming a different account than the one the file shows.
    std::optional<std::string> account(const json& v, const std::string& pointer);

    // `positive`: 0 is not allowed (timeouts and intervals that would mean "at once").
    std::optional<std::chrono::milliseconds> duration(const json& v, const std::string& pointer,
                                                      bool positive);

    // A short window in microseconds ("50us", "0.2ms", 0.0001), 0 allowed, at most `max`.
    std::optional<std::chrono::microseconds> short_duration(const json& v,
                                                            const std::string& pointer,
                                                            std::chrono::microseconds max);

    std::optional<Endpoint> endpoint(const json& v, const std::string& pointer);
    std::optional<std::string> name(const json& v, const std::string& pointer);

    struct Upstream {
        UpstreamMode mode = UpstreamMode::fixed;
        Endpoint endpoint;  // mode == fixed
    };

    // An endpoint, or one of the words. A near miss of a word gets a hint.
    std::optional<Upstream> upstream(const json& v, const std::string& pointer);

    // The index of the one of `names` that `v` is.
    std::optional<size_t> choice(const json& v, const std::string& pointer,
                                 std::span<const std::string_view> names);

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
    const json* nonempty_array(const json& v, const std::string& pointer, const ListWords& w);

    // `allow` and `allowed_sources`: strings that `parse` accepts or rejects with an
    // allow_list_error, whose message is the diagnostic at that element. All or nothing.
    template <typename Parse>
    std::optional<std::vector<std::string>> allow_strings(const json& v, const std::string& pointer,
                                                          const ListWords& w, Parse parse);

    // `allowed_cids`: u32 numbers, each once. All or nothing.
    std::optional<std::vector<uint32_t>> cids(const json& v, const std::string& pointer);

    // "0660", "660": an octal file mode up to 0777, as a string (JSON has no octal numbers, and
    // 660 read as decimal would be a different mode).
    std::optional<unsigned> file_mode(const json& v, const std::string& pointer);

  private:
    // A duration in milliseconds or (`micro`) microseconds, or nullopt after an error naming
    // what was wrong; `forms` shows the accepted forms, `at_most` the upper bound in words.
    std::optional<int64_t> duration_count(const json& v, const std::string& pointer, bool micro,
                                          const std::string& forms, const std::string& at_most);

    const std::string& file_;
    const SourceMap& map_;
    std::vector<Diagnostic> diags_;
    size_t dropped_ = 0;
};

template <typename Parse>
std::optional<std::vector<std::string>> Checker::allow_strings(const json& v,
                                                               const std::string& pointer,
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

}  // namespace pfp::policy::detail
