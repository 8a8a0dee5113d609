#pragma once
// "did you mean": the known word an unknown one was probably meant to be.
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pfp::policy::detail {

// The one place the hint's wording lives; Diagnostic::str() adds the parentheses.
std::string did_you_mean(std::string_view known);

// Optimal string alignment distance (Damerau-Levenshtein where each substring is edited once):
// enough to catch a swapped pair of letters ("uesr") as one edit.
size_t edit_distance(std::string_view a, std::string_view b);

// The known word an unknown one was probably meant to be: a case-insensitive match first, else
// the closest within two edits (the first listed wins a tie).
std::optional<std::string_view> suggest(std::string_view word,
                                        std::span<const std::string_view> known);

}  // namespace pfp::policy::detail
