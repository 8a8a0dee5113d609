#pragma once
// Every socket the policy can ask for, by endpoint and role, opened by the supervisor with a
// capability raised only around the one call that needs it: stream listeners (tcp, vsock, unix,
// fc-vsock), bound UDP sockets, raw IP injectors (CAP_NET_RAW) and nfqueue and nflog readers bound
// to their queue or group (CAP_NET_ADMIN). The proxies' listeners, the metrics endpoint, the
// control socket and the seed commands' bind check all open their sockets here.
#include <sys/types.h>

#include <functional>
#include <set>
#include <stdexcept>
#include <string>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "common/worker_kind.hpp"
#include "supervisor/privileges.hpp"

namespace pfp::supervisor {

// Where opening failed; callers word their messages from it.
enum class SocketStep {
    socket,       // socket(); for a raw socket without CAP_NET_RAW, EPERM
    option,       // a setsockopt the role needs
    stale_file,   // a pathname unix socket's existing file (detail says what is wrong with it)
    bind,         // bind(); EACCES for a privileged port without CAP_NET_BIND_SERVICE
    file_access,  // the file_access callback (mode, owner) threw: its message is the detail
    listen,
    queue,  // binding the nfqueue or nflog group (EBUSY: another reader has it; EPERM: no cap)
};

class socket_error : public std::runtime_error {
  public:
    socket_error(SocketStep step, std::string call, int err, std::string detail = {});
    SocketStep step;
    std::string call;    // "bind", "setsockopt(IP_HDRINCL)", ...
    int err;             // errno, 0 when none
    std::string detail;  // stale_file: "not a socket", "in use", "remove"
};

struct SocketRequest {
    FdRole role = FdRole::stream_listener;
    Endpoint endpoint;
    int backlog = 4096;  // listeners
    // Options accepted sockets inherit from a listener (TCP_NODELAY, keep-alive): before bind.
    std::function<void(int fd)> tune;
    // A pathname unix (or fc-vsock) socket's file right after bind, while it has no permissions
    // yet (bound under umask 0777): give it its mode and owner. May throw.
    std::function<void(const std::string& path)> file_access;
    // The socket file's mode from the moment it exists (bind runs under the matching umask).
    mode_t file_mode = 0;
    uint32_t queue_maxlen = 0;  // nfqueue: 0 keeps the kernel's default
    bool fail_open = false;     // nfqueue: the kernel accepts packets when the queue is full
    bool gso = false;           // nfqueue: GSO packets are queued whole, checksums unfinished
    // nflog: the group's batching; the defaults send each packet at once (policy/model.hpp).
    uint32_t nflog_threshold = 1;
    uint32_t nflog_timeout_cs = 0;  // hundredths of a second, the kernel's unit
    uint32_t nflog_buffer = 0;      // 0 keeps the kernel's default (one page)
    // Datagram sockets: SO_REUSEPORT before bind, so sockets opened by the same user on the same
    // address form one group and the kernel spreads clients over them by their address hash.
    bool reuse_port = false;
};

// The capabilities opening `e` for `role` needs (CAP_NET_BIND_SERVICE for a privileged port,
// CAP_NET_RAW for a raw injector, CAP_NET_ADMIN for an nfqueue or nflog reader); CAP_CHOWN is the
// caller's to add, since only it knows whether a socket file changes owner.
std::set<int> capabilities_to_open(FdRole role, const Endpoint& e);

// The filesystem path a unix or fc-vsock listener binds ("" for abstract or other schemes).
std::string socket_path(const Endpoint& e);

// Binding `e` needs CAP_NET_BIND_SERVICE: a TCP or UDP port below
// net.ipv4.ip_unprivileged_port_start, or a vsock port below 1024.
bool needs_bind_service(const Endpoint& e);
uint32_t unprivileged_port_start();
constexpr uint32_t kVsockReservedPorts = 1024;  // the kernel's LAST_RESERVED_PORT + 1

// A non-blocking, close-on-exec socket as `req` asks. A pathname unix socket file left by an
// earlier run is replaced; a live one or any other file is an error. `privs` may be null (no
// capability is raised then). Throws socket_error.
unique_fd open_socket(const SocketRequest& req, const Privileges* privs);

}  // namespace pfp::supervisor
