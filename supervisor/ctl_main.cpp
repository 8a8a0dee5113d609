// pf-proxyctl: asks a running pf-proxyd over its control socket (common/control_protocol.hpp)
// what it is doing, or to reload its policy, restart, stop or start a proxy. Exit 0 on success,
// 1 with one line `pf-proxyctl: ...` on stderr otherwise.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <stdexcept>

#include "common/control_protocol.hpp"
#include "common/text.hpp"
#include "common/unique_fd.hpp"
#include "supervisor/status.hpp"

namespace po = boost::program_options;
using namespace pfp;

namespace {

// A reload starts new workers before it answers, so the reply may take a moment.
constexpr std::chrono::seconds kTimeout{10};
constexpr size_t kMaxReply = 64 * 1024 * 1024;

constexpr const char* kUsage =
    "Usage: pf-proxyctl [--control PATH] COMMAND\n"
    "\n"
    "Commands:\n"
    "  status [--json]  proxies, their workers and counters (--json: the status as JSON)\n"
    "  reload           re-read the policy; one with errors changes nothing and they are shown\n"
    "  restart NAME     restart proxy NAME's workers\n"
    "  stop NAME        stop proxy NAME\n"
    "  start NAME       start proxy NAME again after a stop or a failure\n";

class failure : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Daemon text on one line, whatever it holds.
std::string printable(std::string_view s) {
    std::string out;
    append_escaped(out, s, false);
    return out;
}

unique_fd connect_to(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        throw failure("control socket path must be 1-" + std::to_string(sizeof addr.sun_path - 1) +
                      " bytes: " + printable(path));
    std::memcpy(addr.sun_path, path.data(), path.size());
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw failure(std::string("socket: ") + std::strerror(errno));
    // connect() on a Unix socket whose backlog is full waits for room up to SO_SNDTIMEO.
    const timeval tv{.tv_sec = kTimeout.count(), .tv_usec = 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int r;
    do {
        r = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return fd;
    const int err = errno;
    const std::string what = "cannot connect to " + printable(path) + ": " + std::strerror(err);
    switch (err) {
        case ENOENT:
            throw failure(what + " (is pf-proxyd running? --control PATH names another socket)");
        case ECONNREFUSED:
            throw failure(what + " (pf-proxyd may not be running)");
        case EACCES:
        case EPERM:
            throw failure(what +
                          " (allowed: root, pf-proxyd's user, and the policy's control_users and "
                          "control_groups)");
        case EAGAIN:
            throw failure("timed out connecting to " + printable(path) + " (pf-proxyd is busy)");
        default:
            throw failure(what);
    }
}

// Sends the request line, reads the reply until pf-proxyd closes, within kTimeout in all.
std::string ask(const std::string& path, const std::string& request) {
    unique_fd fd = connect_to(path);
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    for (size_t sent = 0; sent < request.size();) {
        const ssize_t n =
            ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw failure(std::string("sending the request: ") + std::strerror(errno));
        sent += static_cast<size_t>(n);
    }
    std::string reply;
    char buf[65536];
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{.fd = fd.get(), .events = POLLIN, .revents = 0};
        const int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) throw failure(std::string("poll: ") + std::strerror(errno));
        if (ready == 0)
            throw failure("no reply from pf-proxyd within " + std::to_string(kTimeout.count()) +
                          " s");
        const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) throw failure(std::string("reading the reply: ") + std::strerror(errno));
        if (n == 0) break;
        reply.append(buf, static_cast<size_t>(n));
        if (reply.size() > kMaxReply) throw failure("the reply from pf-proxyd is too large");
    }
    if (reply.empty()) throw failure("pf-proxyd closed the connection without a reply");
    return reply;
}

control::Command command_of(const std::string& name) {
    for (auto c : {control::Command::status, control::Command::reload, control::Command::restart,
                   control::Command::stop, control::Command::start}) {
        if (control::command_name(c) == name) return c;
    }
    throw failure("unknown command " + quote(name) +
                  " (expected status, reload, restart, stop or start; see pf-proxyctl --help)");
}

int run(int argc, char** argv) {
    po::options_description opts("Options");
    opts.add_options()(
        "control,c",
        po::value<std::string>()->default_value(std::string(control::kDefaultSocketPath)),
        "pf-proxyd's control socket")("json", "status: print the status as JSON")(
        "version,V", "print the version and exit")("help,h", "print this help and exit");
    po::options_description hidden;
    hidden.add_options()("command", po::value<std::string>())(
        "args", po::value<std::vector<std::string>>());
    po::options_description all;
    all.add(opts).add(hidden);
    po::positional_options_description positional;
    positional.add("command", 1).add("args", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(),
                  vm);
        po::notify(vm);
    } catch (const po::error& e) {
        throw failure(std::string(e.what()) + " (see pf-proxyctl --help)");
    }
    if (vm.count("help")) {
        std::cout << kUsage << "\n" << opts;
        return 0;
    }
    if (vm.count("version")) {
        std::cout << "pf-proxyctl " PFPROXY_VERSION "\n";
        return 0;
    }
    if (!vm.count("command")) throw failure("missing command (see pf-proxyctl --help)");
    const std::string name = vm["command"].as<std::string>();
    const auto args =
        vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
    control::Request request;
    request.command = command_of(name);
    const bool json = vm.count("json") > 0;
    if (json && request.command != control::Command::status)
        throw failure("--json goes with status only");
    if (control::takes_proxy(request.command)) {
        if (args.size() != 1)
            throw failure(name + " takes one proxy name: pf-proxyctl " + name + " NAME");
        request.proxy = args[0];
    } else if (!args.empty()) {
        throw failure(name + " takes no arguments, got " + quote(args[0]));
    }
    std::string line;
    try {
        line = control::encode_request(request);
    } catch (const control::protocol_error& e) {
        throw failure(e.what());
    }

    control::Response reply;
    try {
        reply = control::parse_response(ask(vm["control"].as<std::string>(), line));
    } catch (const control::protocol_error& e) {
        throw failure(std::string("malformed reply from pf-proxyd: ") + e.what());
    }
    if (!reply.ok) {
        std::string out = "pf-proxyctl: " + printable(reply.error) + "\n";
        for (const auto& e : reply.errors) out += printable(e) + "\n";
        std::cerr << out;
        return 1;
    }
    if (request.command != control::Command::status) {
        std::cout << printable(reply.message) << "\n";
        return 0;
    }
    if (!reply.status) throw failure("malformed reply from pf-proxyd: no status");
    if (json) {
        std::cout << reply.status->dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << "\n";
        return 0;
    }
    try {
        std::cout << supervisor::render_table(supervisor::status_from_json(*reply.status));
    } catch (const std::runtime_error& e) {
        throw failure(std::string("malformed reply from pf-proxyd: ") + e.what());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "pf-proxyctl: " << e.what() << "\n";
        return 1;
    }
}
