// pf-proxy-compat: the seed tools' command lines (vsock-to-ip, ip-to-vsock,
// vsock-to-ip-transparent, ip-to-vsock-transparent, transparent-port-to-vsock,
// port-to-vsock-transparent, vsockproxy, tcpfwd, udpfwd, kcptcp-client, kcptcp-server, the raw
// proxies) in one binary that runs as whichever name it is called
// by. `pf-proxy-compat NAME ARGS...` runs NAME too. seed_cli.hpp describes the mapping.
#include <errno.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/compat/kcptcp.hpp"
#include "supervisor/compat/seed_cli.hpp"

namespace {

std::string_view basename_of(std::string_view path) {
    const size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string command_list() {
    std::string s;
    for (auto name : pfp::compat::command_names()) s += "  " + std::string(name) + "\n";
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    using pfp::compat::tool_for;
    std::string command(argc > 0 ? basename_of(argv[0]) : "pf-proxy-compat");
    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);

    auto tool = tool_for(command);
    int first_arg = 1;  // argv's index of args.front()
    if (!tool && !args.empty() && (tool = tool_for(args.front()))) {
        command = args.front();
        args.erase(args.begin());
        first_arg = 2;
        // Log lines carry the command's name, as when it is called through its link.
        static std::string short_name;
        short_name = command;
        program_invocation_short_name = short_name.data();
    }
    if (!tool) {
        const std::string_view first = args.empty() ? "" : std::string_view(args.front());
        if (first == "-V" || first == "--version") {
            std::printf("pf-proxy-compat %s\n", PFPROXY_VERSION);
            return 0;
        }
        const std::string usage =
            "Usage: pf-proxy-compat COMMAND [ARGS...], or call it through "
            "a link named COMMAND.\nCommands:\n" +
            command_list();
        if (first == "-h" || first == "--help") {
            std::fputs(usage.c_str(), stdout);
            return 0;
        }
        if (args.empty() && command == "pf-proxy-compat") {
            std::fputs(usage.c_str(), stderr);
        } else {
            std::fprintf(
                stderr, "pf-proxy-compat: unknown command '%s'\n%s",
                std::string(args.empty() || command != "pf-proxy-compat" ? command : args.front())
                    .c_str(),
                usage.c_str());
        }
        return 1;
    }
    if (*tool == pfp::compat::Tool::kcptcp_client || *tool == pfp::compat::Tool::kcptcp_server)
        pfp::compat::hide_key_arguments(argc - first_arg + 1, argv + first_arg - 1);
    return pfp::compat::run(*tool, command, args);
}
