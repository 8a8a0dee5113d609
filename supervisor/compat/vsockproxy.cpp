#include "supervisor/compat/vsockproxy.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "supervisor/compat/clap_text.hpp"
#include "supervisor/compat/options.hpp"
#include "supervisor/compat/seed_policy.hpp"

namespace po = boost::program_options;

namespace pfp::compat {
namespace {

constexpr std::string_view kUsage =
    "usage: vsockproxy <local_port> <remote_cid> <remote_port> <allowed_cid>\n";

const std::vector<OptSpec>& specs() {
    static const std::vector<OptSpec> s = {kUserOpt, kHelpOpt, kVersionOpt};
    return s;
}

std::string help() {
    return std::string(kUsage) +
           "\n"
           "Listens on vsock port <local_port> (any CID) and relays each connection to vsock\n"
           "<remote_cid>:<remote_port>. Only peers with CID <allowed_cid> are admitted (0: any).\n"
           "\n" +
           options_table(specs()) + "\n" + std::string(help_footer());
}

bool negative_number(std::string_view s) {
    return s.size() >= 2 && s[0] == '-' &&
           std::all_of(s.begin() + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::variant<Finished, SeedCommand> parse_vsockproxy(std::string_view command,
                                                     const std::vector<std::string>& args) {
    po::options_description desc = describe(specs());
    desc.add_options()("arg", po::value<std::vector<std::string>>(), "");
    po::positional_options_description positional;
    positional.add("arg", -1);

    auto fail = [&](const std::string& why) {
        return Finished{1, {"", std::string(command) + ": " + why + "\n" + std::string(kUsage)}};
    };

    po::parsed_options parsed(nullptr);
    try {
        parsed = po::command_line_parser(args)
                     .options(desc)
                     .positional(positional)
                     .style(kOptionStyle)
                     .allow_unregistered()
                     .run();
    } catch (const po::error& e) {
        return fail(e.what());
    }

    std::vector<std::string> numbers;
    Values values;
    for (const auto& opt : parsed.options) {
        const std::string token =
            opt.original_tokens.empty() ? opt.string_key : opt.original_tokens.front();
        if (opt.unregistered) {
            if (!negative_number(token)) return fail("unknown option '" + token + "'");
            numbers.push_back(token);  // read as a number below, and rejected there
            continue;
        }
        if (opt.string_key == "arg") {
            numbers.insert(numbers.end(), opt.value.begin(), opt.value.end());
            continue;
        }
        if (opt.string_key == "help") return Finished{0, {help(), ""}};
        if (opt.string_key == "version") return version_text(command);
        auto& v = values[opt.string_key];
        if (!v.empty()) return fail("option '--" + opt.string_key + "' given more than once");
        v.push_back(opt.value.empty() ? std::string() : opt.value.front());
    }
    // As the tool did: too few arguments print the usage line on stdout.
    if (numbers.size() < 4) return Finished{1, {std::string(kUsage), ""}};

    // Decimal numbers only, where atoi read "abc" as 0 (any guest) and "-1" as CID 4294967295.
    static constexpr std::array<std::string_view, 4> kNames = {"<local_port>", "<remote_cid>",
                                                               "<remote_port>", "<allowed_cid>"};
    std::array<uint32_t, 4> n{};
    for (size_t i = 0; i < 4; ++i) {
        const std::string& s = numbers[i];
        uint64_t v = 0;
        bool ok = !s.empty() && s.size() <= 10;
        for (char c : s) ok = ok && c >= '0' && c <= '9';
        if (ok) v = std::stoull(s);
        if (!ok || v > UINT32_MAX) {
            return fail("invalid " + std::string(kNames[i]) + " '" + s +
                        "': expected a number 0-4294967295");
        }
        n[i] = static_cast<uint32_t>(v);
    }

    SeedCommand cmd;
    cmd.tool = Tool::vsockproxy;
    cmd.command = std::string(command);
    if (numbers.size() > 4) {
        std::string extra;
        for (size_t i = 4; i < numbers.size(); ++i) extra += " '" + numbers[i] + "'";
        cmd.startup.err = std::string(command) + ": ignoring extra arguments:" + extra + "\n";
    }
    char line[160];
    std::snprintf(line, sizeof line,
                  "vsockproxy started (local port %u, remote cid %u, remote port %u, "
                  "allowed_cid %u)\n",
                  n[0], n[1], n[2], n[3]);
    cmd.startup.out = line;

    nlohmann::ordered_json proxy = {
        {"listen", "vsock:any:" + std::to_string(n[0])},
        {"upstream", "vsock:" + std::to_string(n[1]) + ":" + std::to_string(n[2])},
    };
    if (n[3] != 0) proxy["allowed_cids"] = nlohmann::ordered_json::array({n[3]});  // 0: any guest
    proxy["statistics"] = true;
    return with_policy(std::move(cmd), value_of(values, "user"), std::move(proxy));
}

Output vsockproxy_bind_failure(BindStage stage, int err) {
    return {
        std::string(stage == BindStage::socket ? "Failed to create socket: " : "Failed to bind: ") +
            std::strerror(err) + "\n",
        ""};
}

}  // namespace pfp::compat
