#include "policy/suggest.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace pfp::policy::detail {
namespace {

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

}  // namespace

std::string did_you_mean(std::string_view known) {
    return "did you mean \"" + std::string(known) + "\"?";
}

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

std::optional<std::string_view> suggest(std::string_view word,
                                        std::span<const std::string_view> known) {
    for (const auto k : known) {
        if (iequals(word, k)) return k;
    }
    std::optional<std::string_view> best;
    size_t best_distance = 3;
    for (const auto k : known) {
        const size_t longer = std::max(word.size(), k.size());
        if (longer - std::min(word.size(), k.size()) >= best_distance)
            continue;  // cannot be closer
        const size_t d = edit_distance(word, k);
        if (d < best_distance) {
            best = k;
            best_distance = d;
        }
    }
    return best;
}

}  // namespace pfp::policy::detail
