#include "supervisor/compat/options.hpp"

namespace po = boost::program_options;

namespace pfp::compat {
namespace {

const OptSpec* find_spec(const std::vector<OptSpec>& specs, std::string_view name) {
    while (!name.empty() && name.front() == '-') name.remove_prefix(1);
    for (const auto& o : specs) {
        if (o.long_name == name || (name.size() == 1 && o.short_name == name[0])) return &o;
    }
    return nullptr;
}

// clap reads "-v=88:4000" as the value "88:4000"; Boost would keep the '='.
std::vector<std::string> split_short_equals(const std::vector<std::string>& args,
                                            const std::vector<OptSpec>& specs) {
    std::vector<std::string> out;
    bool options = true;
    for (const auto& a : args) {
        if (a == "--") options = false;
        const OptSpec* o = options && a.size() >= 3 && a[0] == '-' && a[1] != '-' && a[2] == '='
                               ? find_spec(specs, std::string_view(a).substr(1, 1))
                               : nullptr;
        if (o && !o->value_name.empty()) {
            out.push_back(a.substr(0, 2));
            out.push_back(a.substr(3));
        } else {
            out.push_back(a);
        }
    }
    return out;
}

}  // namespace

po::options_description describe(const std::vector<OptSpec>& specs) {
    po::options_description desc;
    for (const auto& o : specs) {
        std::string name(o.long_name);
        if (o.short_name) name += std::string(",") + o.short_name;
        if (o.value_name.empty())
            desc.add_options()(name.c_str(), "");
        else
            desc.add_options()(name.c_str(), po::value<std::string>(), "");
    }
    return desc;
}

std::variant<Finished, Values> read_options(std::string_view command,
                                            const std::vector<OptSpec>& specs,
                                            const std::vector<std::string>& args) {
    po::parsed_options parsed(nullptr);
    try {
        parsed = po::command_line_parser(split_short_equals(args, specs))
                     .options(describe(specs))
                     .style(kOptionStyle)
                     .allow_unregistered()
                     .run();
    } catch (const po::invalid_command_line_syntax& e) {
        const OptSpec* o = find_spec(specs, e.get_option_name());
        if (o && e.kind() == po::invalid_syntax::missing_parameter) {
            return usage_error(
                "a value is required for '" + display(*o) + "' but none was supplied", command,
                specs, false);
        }
        return usage_error(e.what(), command, specs, true);
    } catch (const po::error& e) {
        return usage_error(e.what(), command, specs, true);
    }

    Values values;
    for (const auto& opt : parsed.options) {
        const OptSpec* o =
            opt.unregistered || opt.string_key.empty() ? nullptr : find_spec(specs, opt.string_key);
        if (!o) {
            const std::string token =
                opt.original_tokens.empty() ? opt.string_key : opt.original_tokens.front();
            return usage_error("unexpected argument '" + token + "' found", command, specs, true);
        }
        if (o->long_name == "help") return Finished{0, {help_text(command, specs), ""}};
        if (o->long_name == "version") return version_text(command);
        auto& v = values[std::string(o->long_name)];
        if (!v.empty() && !o->repeatable) {
            return usage_error("the argument '" + display(*o) + "' cannot be used multiple times",
                               command, specs, true);
        }
        v.push_back(opt.value.empty() ? std::string() : opt.value.front());
    }

    std::string missing;
    for (const auto& o : specs) {
        if (o.required && !values.count(o.long_name)) missing += "\n  " + display(o);
    }
    if (!missing.empty()) {
        return usage_error("the following required arguments were not provided:" + missing, command,
                           specs, true);
    }
    return values;
}

std::optional<std::string> value_of(const Values& v, std::string_view name) {
    auto it = v.find(name);
    if (it == v.end() || it->second.empty()) return std::nullopt;
    return it->second.front();
}

}  // namespace pfp::compat
