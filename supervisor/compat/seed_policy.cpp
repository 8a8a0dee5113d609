#include "supervisor/compat/seed_policy.hpp"

#include <utility>

#include "policy/diagnostics.hpp"
#include "policy/parse.hpp"

namespace pfp::compat {

std::string policy_source(std::string_view command) {
    return "the " + std::string(command) + " command line";
}

std::variant<Finished, SeedCommand> with_policy(SeedCommand cmd,
                                                const std::optional<std::string>& user,
                                                nlohmann::ordered_json proxy) {
    nlohmann::ordered_json entry = {{"name", cmd.command}};
    for (auto& [key, value] : proxy.items()) entry[key] = std::move(value);
    entry["log_connections"] = true;
    nlohmann::ordered_json doc = nlohmann::ordered_json::object();
    if (user) doc["user"] = *user;
    doc["proxies"] = nlohmann::ordered_json::array({std::move(entry)});

    const std::string source = policy_source(cmd.command);
    const std::string invalid = "Error: " + source + " makes an invalid policy: ";
    std::string text;
    try {
        text = doc.dump();
    } catch (const nlohmann::ordered_json::type_error&) {
        // A policy file is UTF-8; an option value (--user) may be any bytes.
        return Finished{1, {"", invalid + "an option value is not valid UTF-8\n"}};
    }
    try {
        cmd.policy = policy::parse_policy(text, source);
    } catch (const policy::policy_error& e) {
        std::string line = invalid;
        bool first = true;
        for (const auto& d : e.diagnostics()) {
            if (!first) line += "; ";
            first = false;
            line += d.pointer.empty() ? d.message : d.pointer + ": " + d.message;
        }
        return Finished{1, {"", line + "\n"}};
    }
    return cmd;
}

}  // namespace pfp::compat
