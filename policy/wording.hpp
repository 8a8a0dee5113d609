#pragma once
// How diagnostics show what a policy says: its values quoted and cut short, the JSON types,
// positions and lists of endpoint schemes in prose.
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "common/endpoint.hpp"
#include "policy/source_map.hpp"

namespace pfp::policy::detail {

using json = nlohmann::json;

// A value from the policy, JSON-quoted (control characters escaped, bad UTF-8 replaced) and cut
// at 64 bytes, so a message about it stays one readable line.
std::string quote(std::string_view s);

// What a wrong-typed value is: "string", "number", "boolean", "null", "object", "array".
std::string type_of(const json& v);

// What a right-typed but unacceptable value is: the value itself.
std::string value_of(const json& v);

// "3:14" (line:column), for "first at ..." in messages about repeated things.
std::string position_text(SourcePos pos);

// `"a", "b" or "c"`: the words a value may be, each quoted, for messages.
std::string one_of(std::span<const std::string_view> words);

// "a" or "an", before the scheme's name.
std::string_view article(Scheme s);

// "tcp, vsock, unix" (for lists of what is supported).
std::string scheme_list(std::span<const Scheme> schemes);

// "a tcp", "a vsock, unix or fc-vsock" (in prose, before "listener" or "upstream").
std::string schemes_in_prose(std::span<const Scheme> schemes);

}  // namespace pfp::policy::detail
