#pragma once
// The per-connection lines of the tools pf-proxy replaces, when log_connections is on:
//   Proxying to: "127.0.0.1:8080"
//   vsock to ip IO copy done, from "88:4000" to "127.0.0.1:8080"
//   Failed to transfer data: error=Connection reset by peer
// Each kind words them its own way (its row's ConnectionLogStyle); this file builds the lines.
#include <memory>
#include <string>

#include "common/endpoint.hpp"
#include "common/worker_kind.hpp"

namespace pfp::worker {

// Texts one connection needs for its lines, computed once when it starts.
struct ConnectionLog {
    std::string client;        // the accepted side, as the seed prints it
    std::string upstream;      // the connected side, as the seed prints it
    std::string original_dst;  // ", with original_dst=..." suffix, or ""
    std::string peer;          // the client's own address (statistics lines)
};

// How the seed prints an address: `"127.0.0.1:8080"` (quoted socket address),
// `VsockAddr { cid: 88, port: 5000 }`, or our endpoint text for unix/fc-vsock hops.
std::string seed_address(const SockAddr& a, bool quoted);
std::string seed_endpoint(const Endpoint& e, bool quoted);

// Lines, in the kind's words. `up` is the client -> upstream direction.
std::unique_ptr<ConnectionLog> make_connection_log(WorkerKind kind, const Endpoint& listen,
                                                   const SockAddr& client, const Endpoint& dest,
                                                   const SockAddr* original_dst);
std::string proxying_line(WorkerKind kind, const ConnectionLog& l);
std::string copy_done_line(WorkerKind kind, const ConnectionLog& l, bool up);
// The replaced tools' wording for a connection that failed to reach its upstream, and
// for a transparent header that could not be read.
std::string connect_error_line(WorkerKind kind);
std::string header_error_line();
// vsockproxy-style statistics of one connection over the last `seconds`.
std::string statistics_line(const ConnectionLog& l, uint64_t up, uint64_t down, uint64_t up_delta,
                            uint64_t down_delta, double seconds);

}  // namespace pfp::worker
