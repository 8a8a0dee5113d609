#pragma once
// The Prometheus metrics endpoint (policy key `metrics`): a minimal HTTP/1.0 and 1.1 responder,
// one request per connection, `Connection: close`.
//   GET /metrics (or HEAD) -> 200, text/plain; version=0.0.4; charset=utf-8,
//                             render_prometheus(handler.status())
//   another path -> 404; another method -> 405; anything malformed -> 400
//
// Usage, in the supervisor:
//   // daemon.cpp, before privileges are dropped (metrics_caps() says what bind() needs):
//   unique_fd m = open_metrics_listener(*policy.metrics, &privs, access);
//   // once the EventLoop exists; `handler` must outlive the server:
//   MetricsServer metrics(loop, std::move(m), handler);
//   // in the loop's tick callback, every iteration:
//   next = earliest(next, metrics.tick(now));
//
// There is no authentication: whoever can reach the endpoint reads the metrics (proxy names,
// kinds, counters). Bind it to loopback or a Unix socket whose mode says who may read.
// Bounded like the control socket: 16 clients, 8 KiB of request head, 5 s to send it and 5 s to
// read the reply.
#include <optional>
#include <set>

#include "common/endpoint.hpp"
#include "common/event_loop.hpp"
#include "common/unique_fd.hpp"
#include "supervisor/control_handler.hpp"
#include "supervisor/privileges.hpp"
#include "supervisor/request_server.hpp"
#include "supervisor/socket_file.hpp"

namespace pfp::supervisor {

// Capabilities opening `e` needs: CAP_NET_BIND_SERVICE for a TCP port below
// net.ipv4.ip_unprivileged_port_start. (A unix: file given to another owner also needs
// CAP_CHOWN, which depends on `access` and is not counted here.)
std::set<int> metrics_caps(const Endpoint& e);

// A non-blocking, close-on-exec listener for a tcp: or unix: endpoint (the parser allows no
// other). `access` applies to a unix: socket file (default 0660, the caller's uid and gid).
// `privs` (may be null) raises CAP_NET_BIND_SERVICE around bind() and CAP_CHOWN around chown().
// Throws std::runtime_error naming the endpoint.
unique_fd open_metrics_listener(const Endpoint& e, const Privileges* privs = nullptr,
                                const SocketFileAccess& access = {});

class MetricsServer : private RequestProtocol {
  public:
    static constexpr RequestServer::Limits kLimits{.max_clients = 16,
                                                   .max_request = 8192,
                                                   .request_timeout = std::chrono::seconds(2),
                                                   .timeout = std::chrono::seconds(5)};

    // `listener` from open_metrics_listener(). Throws system_error if the loop refuses it.
    // `limits`: kLimits, except in tests that need a shorter timeout.
    MetricsServer(EventLoop& loop, unique_fd listener, ControlHandler& handler,
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
    RequestServer server_;  // last: it may call back as soon as the loop runs
};

}  // namespace pfp::supervisor
