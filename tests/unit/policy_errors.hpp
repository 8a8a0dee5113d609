#pragma once
// For the policy unit tests: what parse_policy() reports for a document, or "<valid>".
#include <string>

#include "policy/parse.hpp"

namespace pfp::policy {

inline std::string errors(const std::string& text) {
    try {
        (void)parse_policy(text, "p.json");
    } catch (const policy_error& e) {
        return e.what();
    }
    return "<valid>";
}

}  // namespace pfp::policy
