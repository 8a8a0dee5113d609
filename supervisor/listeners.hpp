#pragma once
// Opening the policy's listening sockets through the socket factory, with the policy's tuning
// and socket file ownership.
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "policy/model.hpp"
#include "supervisor/privileges.hpp"
#include "supervisor/socket_factory.hpp"

namespace pfp::supervisor {

// Capabilities needed to open the policy's sockets (what the socket factory says each of its kinds'
// fds needs, plus CAP_CHOWN to give a Unix socket file to another owner) and those its workers
// need at run time (their kind rows'), which the supervisor keeps to hand on at each spawn, plus
// CAP_NET_RAW while a stream-to-raw proxy exists (a reload may move it to another device).
std::set<int> caps_to_open(const policy::Policy& p);
std::set<int> caps_to_keep(const policy::Policy& p);

// A non-blocking, close-on-exec listening socket. Throws std::runtime_error naming the proxy,
// the endpoint and, on EACCES, the capability that was missing. `identity` is the user the
// supervisor will switch to: the default owner of Unix socket files.
unique_fd open_listener(const policy::Proxy& proxy, const Privileges& privs,
                        const std::optional<Identity>& identity);

// A datagram proxy with more than one worker: one SO_REUSEPORT socket per worker.
bool socket_per_worker(const policy::Proxy& proxy);

// The sockets of workers 1..N-1 of such a proxy, joining the group of its listener (opened with
// SO_REUSEPORT by open_listener, by the same user). Throws like open_listener.
std::vector<unique_fd> open_worker_sockets(const policy::Proxy& proxy, const Privileges& privs,
                                           const std::optional<Identity>& identity);

// "" when `l` has the sockets `proxy`'s workers need (one per worker for socket_per_worker);
// else why not, naming the proxy. The group is made when the listener is opened: a reload
// cannot grow it (a socket opened after privileges were dropped belongs to another user, and
// the kernel keeps it out of the group) nor shrink it without moving clients between workers.
std::string worker_sockets_mismatch(const policy::Proxy& proxy, size_t group_size);
// "" when a kept nfqueue or nflog listener's kernel settings (fail_open, queue_maxlen, gso; the
// nflog batching keys) are the same in `next` as in `old`; else which changed, naming the proxy.
// They are set when the queue is bound, with CAP_NET_ADMIN, which pf-proxyd no longer holds.
std::string queue_settings_mismatch(const policy::Proxy& old, const policy::Proxy& next);

// What the socket of `role` is opened on: the listener on `listen`, raw injectors on `upstream`.
const Endpoint& fd_endpoint(const policy::Proxy& proxy, FdRole role);

// The fds of the proxy's kind other than its listener, in its row's order (raw injectors, bound to
// the upstream's device). Throws std::runtime_error naming the proxy, the endpoint and, on EPERM,
// the capability that was missing.
std::vector<unique_fd> open_other_fds(const policy::Proxy& proxy, const Privileges& privs);

// TCP_NODELAY and keep-alive of the policy on a TCP listener (accepted sockets inherit them);
// SO_RCVBUF kDatagramReceiveBuffer on a UDP socket; nothing for other families.
inline constexpr int kDatagramReceiveBuffer = 4 << 20;
void tune_listener(int fd, const policy::Proxy& proxy);
void set_nonblocking(int fd);

// Mode, owner and group of a unix or fc-vsock listener's socket file as the policy says (a
// listener taken back from the FD store gets them again). Throws like open_listener.
// `ours_only`: right after our bind (the file must be ours); false for a file kept from an
// earlier run, which may already belong to the policy's owner.
void apply_socket_file_access(const policy::Proxy& proxy, const Privileges& privs,
                              const std::optional<Identity>& identity, bool ours_only = false);

// The filesystem path an fc-vsock or unix listener binds ("" for abstract or other schemes).
std::string listener_path(const Endpoint& e);

// "tcp:127.0.0.1:9000", "destination-header", ... for log lines.
std::string describe_upstream(const policy::Proxy& p);

}  // namespace pfp::supervisor
