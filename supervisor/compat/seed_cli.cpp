#include "supervisor/compat/seed_cli.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>

#include "policy/diagnostics.hpp"
#include "policy/psk.hpp"
#include "supervisor/compat/bind_probe.hpp"
#include "supervisor/compat/clap_text.hpp"
#include "supervisor/compat/kcptcp.hpp"
#include "supervisor/compat/pid_file.hpp"
#include "supervisor/compat/portfwd.hpp"
#include "supervisor/compat/raw_proxy_tools.hpp"
#include "supervisor/compat/tcp_proxy_tools.hpp"
#include "supervisor/compat/vsockproxy.hpp"
#include "supervisor/daemon.hpp"
#include "supervisor/name_resolver.hpp"

namespace pfp::compat {
namespace {

struct CommandEntry {
    std::string_view name;
    Tool tool;
};

constexpr std::array kCommands{
    CommandEntry{"vsock-to-ip", Tool::vsock_to_ip},
    CommandEntry{"ip-to-vsock", Tool::ip_to_vsock},
    CommandEntry{"vsock-to-ip-transparent", Tool::vsock_to_ip_transparent},
    CommandEntry{"ip-to-vsock-transparent", Tool::ip_to_vsock_transparent},
    CommandEntry{"transparent-port-to-vsock", Tool::transparent_port_to_vsock},
    // The name the PF-Proxy tools' documentation uses for transparent-port-to-vsock.
    CommandEntry{"port-to-vsock-transparent", Tool::transparent_port_to_vsock},
    CommandEntry{"vsockproxy", Tool::vsockproxy},
    CommandEntry{"tcpfwd", Tool::tcpfwd},
    CommandEntry{"udpfwd", Tool::udpfwd},
    CommandEntry{"kcptcp-client", Tool::kcptcp_client},
    CommandEntry{"kcptcp-server", Tool::kcptcp_server},
    CommandEntry{"ip-to-vsock-raw-incoming", Tool::ip_to_vsock_raw_incoming},
    CommandEntry{"ip-to-vsock-raw-outgoing", Tool::ip_to_vsock_raw_outgoing},
    CommandEntry{"vsock-to-ip-raw-incoming", Tool::vsock_to_ip_raw_incoming},
    CommandEntry{"vsock-to-ip-raw-outgoing", Tool::vsock_to_ip_raw_outgoing},
};

void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        const ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        s.remove_prefix(static_cast<size_t>(n));
    }
}

// The classic daemon: the parent returns at once with status 0; the child leaves the session and
// the terminal, and keeps running from /.
void daemonize() {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid > 0) ::_exit(0);
    if (::setsid() < 0) throw std::runtime_error(std::string("setsid: ") + std::strerror(errno));
    if (::chdir("/") < 0) throw std::runtime_error(std::string("chdir /: ") + std::strerror(errno));
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) throw std::runtime_error(std::string("/dev/null: ") + std::strerror(errno));
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(null, fd);
    if (null > STDERR_FILENO) ::close(null);
}

void print(const Output& o) {
    write_all(STDOUT_FILENO, o.out);
    write_all(STDERR_FILENO, o.err);
}

// The commands of portfwd (tcpfwd, udpfwd) and kcptcp: getopt-style, no --user.
bool portfwd_family(Tool tool) {
    return tool == Tool::tcpfwd || tool == Tool::udpfwd || tool == Tool::kcptcp_client ||
           tool == Tool::kcptcp_server;
}

}  // namespace

const std::vector<std::string_view>& command_names() {
    static const std::vector<std::string_view> names = [] {
        std::vector<std::string_view> v;
        for (const auto& c : kCommands) v.push_back(c.name);
        return v;
    }();
    return names;
}

std::optional<Tool> tool_for(std::string_view command) {
    for (const auto& c : kCommands) {
        if (c.name == command) return c.tool;
    }
    return std::nullopt;
}

std::variant<Finished, SeedCommand> parse_command_line(Tool tool, std::string_view command,
                                                       const std::vector<std::string>& args) {
    if (tool == Tool::vsockproxy) return parse_vsockproxy(command, args);
    if (tool == Tool::tcpfwd || tool == Tool::udpfwd) return parse_portfwd(tool, command, args);
    if (tool == Tool::kcptcp_client || tool == Tool::kcptcp_server)
        return parse_kcptcp(tool, command, args);
    if (is_raw_tool(tool)) return parse_raw_proxy_tool(tool, command, args);
    return parse_tcp_proxy_tool(tool, command, args);
}

Output bind_failure(const SeedCommand& cmd, BindStage stage, int err) {
    if (cmd.tool == Tool::vsockproxy) return vsockproxy_bind_failure(stage, err);
    if (portfwd_family(cmd.tool)) return portfwd_bind_failure(cmd.command, cmd, err);
    return tcp_proxy_bind_failure(cmd.tool, err);
}

int run(Tool tool, std::string_view command, const std::vector<std::string>& args) {
    auto parsed = parse_command_line(tool, command, args);
    if (auto* f = std::get_if<Finished>(&parsed)) {
        print(f->output);
        return f->status;
    }
    SeedCommand& cmd = std::get<SeedCommand>(parsed);
    print(cmd.startup);
    if (cmd.late_error) {
        print(*cmd.late_error);
        return 1;
    }
    // The KCP tunnels' keys, as pf-proxyd reads a file's: a -K key from the command's own table,
    // never from (or into) the environment.
    try {
        policy::load_psks(cmd.policy, [&cmd](const char* name) -> const char* {
            if (auto it = cmd.private_variables.find(name); it != cmd.private_variables.end())
                return it->second.c_str();
            return std::getenv(name);
        });
    } catch (const policy::policy_error& e) {
        const std::string own = "proxy \"" + cmd.command + "\": ";
        std::string message = e.diagnostics().front().message;
        if (message.starts_with(own)) message.erase(0, own.size());
        print({"", std::string(command) + ": " + message + "\n"});
        return 1;
    }
    // A queue is not probed: binding it needs CAP_NET_ADMIN, and the daemon's error says enough.
    const Endpoint& listen = cmd.policy.proxies.front().listen;
    if (auto failure = listen.scheme == Scheme::nfqueue ? std::nullopt : probe_listener(listen)) {
        print(bind_failure(cmd, failure->stage, failure->err));
        return 1;
    }
    // A destination host name must resolve before -d forks (pf-proxyd resolves it again at start).
    for (const auto& proxy : cmd.policy.proxies) {
        if (proxy.upstream.host.empty()) continue;
        const auto result = supervisor::resolve_now(
            {{proxy.upstream.host, static_cast<uint16_t>(proxy.upstream.port), AF_UNSPEC}},
            supervisor::ResolverOptions{.server = cmd.policy.resolver});
        if (const auto* err = std::get_if<supervisor::ResolveError>(&result.front())) {
            const std::string why =
                "cannot resolve \"" + proxy.upstream.host + "\": " + err->message;
            // The tcp-proxy tools report in their anyhow style, as for an unusable -i.
            if (tool == Tool::vsock_to_ip)
                print({"", anyhow_error("failed to connect to TCP endpoint", why)});
            else
                print({"", std::string(command) + ": " + why + "\n"});
            return 1;
        }
    }
    // Every check has passed: only now the pid file, then the fork (a bad option never forks).
    std::optional<PidFile> pid_file;
    try {
        if (cmd.pid_file) pid_file.emplace(*cmd.pid_file);
        if (cmd.daemonize) daemonize();
        if (pid_file) pid_file->write_pid();
    } catch (const std::exception& e) {
        print({"", std::string(command) + ": " + e.what() + "\n"});
        return 1;
    }
    supervisor::DaemonOptions options;
    options.source = cmd.policy.path;
    // The portfwd family's commands have no --user (their seeds had none): the way out of root
    // is an unprivileged start, or a policy file.
    if (portfwd_family(cmd.tool))
        options.root_hint =
            "start " + cmd.command +
            " as an unprivileged user, or run pf-proxyd with a policy file that sets \"user\"";
    else
        options.root_hint = "pass --user NAME to drop to a system user";
    options.hangup_stops = cmd.hangup_stops;
    const int status = supervisor::run_daemon(std::move(cmd.policy), options);
    if (tool == Tool::vsockproxy && status == 0) write_all(STDOUT_FILENO, kVsockproxyFinished);
    return status;
}

}  // namespace pfp::compat
