#pragma once
// Host names in upstreams, resolved by the supervisor (never by a sandboxed worker) with c-ares on
// the supervisor's own event loop: asynchronous, so a slow or silent DNS server never blocks the
// loop, and the answers carry their TTLs, which decide when a set is resolved again.
//
// c-ares opens its own UDP/TCP sockets; it tells this class which ones to watch (the socket-state
// callback), and the loop hands their events back to ares_process_fd(). Timeouts are a deadline the
// owner's tick() reports.
#include <ares.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/endpoint.hpp"
#include "common/event_loop.hpp"

namespace pfp::supervisor {

struct ResolverOptions {
    // "127.0.0.1:5353" (or "[::1]:53"): ask this server only, and skip /etc/hosts. Empty: the
    // system's resolver configuration (/etc/resolv.conf, /etc/hosts).
    std::string server;
    std::chrono::milliseconds timeout{2000};  // per try
    int tries = 2;
};

// One resolution: the addresses in the order to try them (RFC 8305 interleaving), each with the
// port asked for, and the smallest TTL of the answers.
struct AddressSet {
    std::vector<SockAddr> addresses;
    std::chrono::seconds ttl{0};
};

// The resolver's answer when there is no address: "Domain name not found", "Timeout while
// contacting DNS servers", ... (ares_strerror).
struct ResolveError {
    std::string message;
};

using ResolveResult = std::variant<AddressSet, ResolveError>;

class NameResolver {
  public:
    // Throws std::runtime_error naming what failed (an unparsable server, c-ares init).
    NameResolver(EventLoop& loop, ResolverOptions options);
    ~NameResolver();  // pending callbacks are dropped, never called
    NameResolver(const NameResolver&) = delete;
    NameResolver& operator=(const NameResolver&) = delete;

    // `family`: AF_UNSPEC (both), AF_INET or AF_INET6. `socktype`: SOCK_STREAM or SOCK_DGRAM
    // (only what the addresses are for; the set is the same). `done` runs later, from the loop.
    void resolve(const std::string& host, uint16_t port, int family,
                 std::function<void(ResolveResult)> done);

    // For the owner's tick: handles c-ares' timeouts that are due and frees watches of sockets
    // c-ares closed (never while the loop may still dispatch to them); returns the next deadline.
    std::optional<Clock::time_point> tick(Clock::time_point now);

    size_t pending() const { return pending_.size(); }

  private:
    class SocketWatch;
    struct Pending;
    static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);
    static void on_answer(void* arg, int status, int timeouts, ares_addrinfo* result);

    EventLoop& loop_;
    ares_channel channel_ = nullptr;
    std::map<ares_socket_t, std::unique_ptr<SocketWatch>> watches_;
    std::vector<std::unique_ptr<SocketWatch>> closed_;  // freed at the next tick
    std::map<uint64_t, std::unique_ptr<Pending>> pending_;
    uint64_t next_id_ = 1;
    bool destroying_ = false;
};

// Resolves every name once before the supervisor's loop runs (pf-proxyd's start): a private loop,
// run until every answer is in. Returns one result per request, in order.
struct ResolveRequest {
    std::string host;
    uint16_t port = 0;
    int family = 0;  // AF_UNSPEC
};
std::vector<ResolveResult> resolve_now(const std::vector<ResolveRequest>& requests,
                                       const ResolverOptions& options);

}  // namespace pfp::supervisor
