#include "supervisor/control_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace pfp::supervisor {
namespace {

using control::Command;
using control::Response;

template <class T>
bool contains(const std::vector<T>& v, T x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

// The peer's supplementary groups as they were at connect() time. Empty if the kernel will not
// say, which can only refuse access, never grant it.
std::vector<gid_t> peer_groups(int fd) {
    std::vector<gid_t> groups(32);
    for (int attempt = 0; attempt < 2; ++attempt) {
        auto len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
            groups.resize(len / sizeof(gid_t));
            return groups;
        }
        if (errno != ERANGE) break;
        groups.resize(len / sizeof(gid_t));  // the kernel said how many there are
    }
    return {};
}

std::string failure(std::string error, std::vector<std::string> errors = {}) {
    Response r;
    r.error = std::move(error);
    r.errors = std::move(errors);
    return control::encode_response(r);
}

std::string success(std::string message, std::optional<nlohmann::json> status = std::nullopt) {
    Response r;
    r.ok = true;
    r.message = std::move(message);
    r.status = std::move(status);
    return control::encode_response(r);
}

std::string outcome(const CommandOutcome& o) {
    return o.ok ? success(o.message) : failure(o.message, o.errors);
}

}  // namespace

unique_fd open_control_socket(const std::string& path, const SocketFileAccess& access,
                              const Privileges* privs) {
    constexpr int kBacklog = 64;  // a burst of pf-proxyctl calls waits here, not in connect()
    return listen_socket_file(path, access, privs, "control socket", kBacklog);
}

ControlServer::ControlServer(EventLoop& loop, unique_fd listener, ControlHandler& handler,
                             AccessRule rule, RequestServer::Limits limits)
    : handler_(handler),
      rule_(std::move(rule)),
      server_(loop, std::move(listener), limits, *this) {}

RequestProtocol::Admission ControlServer::admit(int fd) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        log::warning("control socket: refused a client whose credentials cannot be read: ",
                     std::strerror(errno));
        return {"unknown client", failure("permission denied: cannot read the client's "
                                          "credentials")};
    }
    std::string peer =
        "uid " + std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid) + ")";
    if (handler_.is_worker(cred.pid)) {
        log::warning("control socket: refused worker process ", cred.pid,
                     ": workers never use the control socket");
        return {std::move(peer), failure("permission denied: a worker may not use the control "
                                         "socket")};
    }
    const bool allowed =
        cred.uid == 0 || cred.uid == ::geteuid() || contains(rule_.uids, cred.uid) ||
        (!rule_.gids.empty() &&
         (contains(rule_.gids, cred.gid) ||
          std::ranges::any_of(peer_groups(fd), [&](gid_t g) { return contains(rule_.gids, g); })));
    if (allowed) return {std::move(peer), std::nullopt};
    log::warning("control socket: permission denied to uid ", cred.uid, " (pid ", cred.pid, ")");
    return {std::move(peer), failure("permission denied: uid " + std::to_string(cred.uid) +
                                     " is not allowed to use the control socket")};
}

size_t ControlServer::request_length(std::string_view received) const {
    const size_t nl = received.find('\n');
    return nl == std::string_view::npos ? 0 : nl + 1;
}

std::string ControlServer::too_long() const {
    return failure("bad request: request too long: more than " +
                   std::to_string(control::kMaxRequestBytes) + " bytes");
}

// `complete` does not matter: a request the client ended without "\n" is read as the line.
std::string ControlServer::respond(const std::string& peer, std::string_view request, bool) {
    control::Request r;
    try {
        r = control::parse_request(request);
    } catch (const control::protocol_error& e) {
        log::info("control socket: bad request from ", peer, ": ", e.what());
        return failure(std::string("bad request: ") + e.what());
    }
    const std::string_view command = control::command_name(r.command);
    try {
        if (r.command == Command::status) {
            const DaemonStatus s = handler_.status();
            return success("pf-proxyd is " + s.state, to_json(s));
        }
        // Every command that changes something is on record, with who asked.
        if (r.proxy.empty()) {
            log::notice("control socket: ", command, " requested by ", peer);
        } else {
            log::notice("control socket: ", command, " of proxy \"", r.proxy, "\" requested by ",
                        peer);
        }
        switch (r.command) {
            case Command::reload:
                return outcome(handler_.reload());
            case Command::restart:
                return outcome(handler_.restart_proxy(r.proxy));
            case Command::stop:
                return outcome(handler_.stop_proxy(r.proxy));
            case Command::start:
                return outcome(handler_.start_proxy(r.proxy));
            case Command::status:
                break;
        }
    } catch (const std::exception& e) {
        log::error("control socket: ", command, " failed: ", e.what());
        return failure("internal error: " + std::string(command) + " failed: " + e.what());
    }
    return failure("internal error: unhandled command");
}

}  // namespace pfp::supervisor
