#include "supervisor/compat/getopt_scan.hpp"

#include <algorithm>

namespace pfp::compat {

std::variant<std::string, ScannedArgs> scan_getopt(const std::vector<std::string>& args,
                                                   std::span<const std::span<const Flag>> flags,
                                                   std::span<const LongFlag> long_flags,
                                                   bool stop_at_help) {
    auto find = [&](char c) -> const Flag* {
        for (const auto& table : flags)
            for (const Flag& f : table)
                if (f.letter == c) return &f;
        return nullptr;
    };
    ScannedArgs s;
    bool options = true;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (!options || a.size() < 2 || a[0] != '-') {
            s.positional.push_back(a);
            continue;
        }
        if (a == "--") {
            options = false;
            continue;
        }
        if (a.starts_with("--")) {
            const size_t eq = a.find('=');
            const std::string name = a.substr(2, eq == std::string::npos ? eq : eq - 2);
            const bool known = std::any_of(long_flags.begin(), long_flags.end(),
                                           [&](const LongFlag& o) { return name == o.name; });
            if (!known) return "unrecognized option '" + a.substr(0, eq) + "'";
            if (eq != std::string::npos) {
                s.options.push_back({name, a.substr(eq + 1), i, eq + 1});
            } else if (i + 1 < args.size()) {
                s.options.push_back({name, args[i + 1], i + 1, 0});
                ++i;
            } else {
                return "option '--" + name + "' requires an argument";
            }
            continue;
        }
        for (size_t j = 1; j < a.size(); ++j) {
            const char c = a[j];
            const Flag* f = find(c);
            if (!f) return std::string("invalid option -- '") + c + "'";
            if (c == 'h') {
                s.help = true;
                if (stop_at_help) return s;
                continue;
            }
            if (!f->value) {
                s.options.push_back({std::string(1, c), "", i, 0});
                continue;
            }
            if (j + 1 < a.size()) {
                s.options.push_back({std::string(1, c), a.substr(j + 1), i, j + 1});
            } else if (i + 1 < args.size()) {
                s.options.push_back({std::string(1, c), args[i + 1], i + 1, 0});
                ++i;
            } else {
                return std::string("option requires an argument -- '") + c + "'";
            }
            break;
        }
    }
    return s;
}

std::string help_line(std::string left, const char* help) {
    left.resize(std::max<size_t>(left.size() + 1, 19), ' ');
    return "  " + left + help + "\n";
}

std::string help_line(const Flag& f) {
    return help_line(std::string("-") + f.letter + (f.value ? std::string(" ") + f.value : ""),
                     f.help);
}

Finished command_error(std::string_view command, const std::string& why) {
    return Finished{1, {"", std::string(command) + ": " + why + "\n"}};
}

bool decimal_in(const std::string& s, uint64_t min, uint64_t max, uint64_t& out) {
    if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos)
        return false;
    out = std::stoull(s);
    return out >= min && out <= max;
}

}  // namespace pfp::compat
