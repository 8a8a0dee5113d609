#pragma once
// pf-proxyd's control socket: what pf-proxyctl talks to (wire format: common/control_protocol.hpp).
//
// Usage, in the supervisor:
//   // daemon.cpp, before privileges are dropped (the file is created as root):
//   unique_fd ctl = open_control_socket("/run/pf-proxy/control.sock", access, &privs);
//   // once the EventLoop exists; `handler` (the Supervisor) must outlive the server:
//   ControlServer control(loop, std::move(ctl), handler, AccessRule{uids, gids});
//   // in the loop's tick callback, every iteration:
//   next = earliest(next, control.tick(now));
//
// Who may use it is decided per connection from the kernel's record of the peer (SO_PEERCRED,
// SO_PEERGROUPS), not from the file's mode: root, the daemon's effective uid at that moment,
// every uid in AccessRule::uids and every member (primary or supplementary group) of a gid in
// AccessRule::gids. Anyone else gets
//   {"ok":false,"error":"permission denied: uid N is not allowed to use the control socket"}
// and a warning line naming the uid and pid. The file's mode is only the first fence: a user
// or group allowed here must also be able to connect(), i.e. have write permission on the file
// (pick SocketFileAccess to match, e.g. group = the one control group, or mode 0666).
//
// Bounded: at most 16 clients at once (more wait in the listen backlog), requests up to 4 KiB,
// 5 s to send the request and 5 s to read the reply. The handler is called on the loop and its
// answer written without blocking.
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/control_protocol.hpp"
#include "common/event_loop.hpp"
#include "common/unique_fd.hpp"
#include "supervisor/control_handler.hpp"
#include "supervisor/privileges.hpp"
#include "supervisor/request_server.hpp"
#include "supervisor/socket_file.hpp"

namespace pfp::supervisor {

// Who besides root and the daemon's own uid may use the control socket: the policy's
// control_users and control_groups, resolved to ids by the supervisor.
struct AccessRule {
    std::vector<uid_t> uids;
    std::vector<gid_t> gids;
};

// The control socket's listener at `path` (absolute; its directory must exist: systemd's
// RuntimeDirectory=pf-proxy makes /run/pf-proxy). A stale socket file is replaced, a live one is
// an error. Mode and owner as `access` says (default 0660, the caller's uid and gid). Throws
// std::runtime_error naming the path.
unique_fd open_control_socket(const std::string& path, const SocketFileAccess& access = {},
                              const Privileges* privs = nullptr);

class ControlServer : private RequestProtocol {
  public:
    static constexpr RequestServer::Limits kLimits{.max_clients = 16,
                                                   .max_request = control::kMaxRequestBytes,
                                                   .request_timeout = std::chrono::seconds(2),
                                                   .timeout = std::chrono::seconds(5)};

    // `listener` from open_control_socket(). Throws system_error if the loop refuses it.
    // `limits`: kLimits, except in tests that need a shorter timeout.
    ControlServer(EventLoop& loop, unique_fd listener, ControlHandler& handler, AccessRule rule,
                  RequestServer::Limits limits = kLimits);

    std::optional<Clock::time_point> tick(Clock::time_point now) { return server_.tick(now); }
    uint64_t evicted() const { return server_.evicted(); }  // clients that made room for others
    size_t clients() const { return server_.clients(); }

  private:
    Admission admit(int fd) override;
    size_t request_length(std::string_view received) const override;
    std::string respond(const std::string& peer, std::string_view request, bool complete) override;
    std::string too_long() const override;

    ControlHandler& handler_;
    AccessRule rule_;
    RequestServer server_;  // last: it may call back as soon as the loop runs
};

}  // namespace pfp::supervisor
