#pragma once
// One name table per enum: the policy parser, the handover codec, the worker and the docs read
// the same table, so a value is spelled the same way at every hop.
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pfp {

template <class E>
struct Named {
    E value;
    std::string_view name;
};

template <class E>
std::string_view name_in(std::span<const Named<E>> table, E value) {
    for (const auto& n : table)
        if (n.value == value) return n.name;
    return "?";
}

template <class E>
std::optional<E> value_in(std::span<const Named<E>> table, std::string_view name) {
    for (const auto& n : table)
        if (n.name == name) return n.value;
    return std::nullopt;
}

// "a, b or c": the names of a table, for messages that list what is accepted.
template <class E>
std::string names_in(std::span<const Named<E>> table, std::string_view last_sep = " or ") {
    std::string out;
    for (size_t i = 0; i < table.size(); ++i) {
        if (i) out += i + 1 == table.size() ? last_sep : ", ";
        out += table[i].name;
    }
    return out;
}

}  // namespace pfp
