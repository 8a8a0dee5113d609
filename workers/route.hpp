#pragma once
// How a stream worker picks and reaches the upstream of each client, built once from the
// handover before lock-down: every stream kind is one combination of these choices.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/allow_list.hpp"
#include "common/endpoint.hpp"
#include "common/handover.hpp"
#include "common/transparent_header.hpp"
#include "common/unique_fd.hpp"

namespace pfp::worker {

enum class Target {
    fixed,                 // the configured upstream
    original_port,         // the configured vsock/fc-vsock upstream, port from SO_ORIGINAL_DST
    destination_header,    // read the transparent header from the client, connect there (TCP)
    original_destination,  // the client's SO_ORIGINAL_DST address itself (TCP)
    base_address,          // the configured TCP upstream's IP + (original port - local port)
};

struct Route {
    WorkerKind kind{};
    Target target = Target::fixed;
    Endpoint listen;
    Endpoint upstream;  // fixed / original_port template
    // A host-name upstream: its name and the addresses it resolved to when the worker started,
    // in the order to try them (the relay keeps the current set; ADDRESSES replace it).
    std::string upstream_host;
    std::vector<SockAddr> upstream_addresses;
    bool send_original_destination = false;  // transparent header first on the upstream
    TransparentHeaderFormat header = TransparentHeaderFormat::standard;
    bool proxy_protocol = false;
    // Destinations; always set where the client chooses them (empty = deny all, which the
    // policy never sends: it refuses such a proxy without `allow`).
    std::optional<AllowList> allow;
    std::optional<CidSet> allowed_cids;      // vsock peers
    std::optional<CidrSet> allowed_sources;  // TCP clients
    bool log_connections = false;
    bool statistics = false;
    // TCP socket tuning (applied to TCP sockets only).
    bool tcp_nodelay = true;
    bool keepalive = true;
    int keepalive_idle_s = 60, keepalive_interval_s = 10, keepalive_count = 6;

    // `listen`: the listener's endpoint text. Throws std::runtime_error naming what is wrong.
    static Route build(WorkerKind kind, const std::string& listen, const StreamOptions& o);

    // nullopt: admitted; else the reason for the log line.
    std::optional<std::string> admit(const SockAddr& peer) const;

    // The destination depends on the client, so `allow` is checked for each connection.
    bool client_chooses_destination() const {
        return target == Target::destination_header || target == Target::original_destination ||
               target == Target::base_address;
    }
    // Each connection needs the client's SO_ORIGINAL_DST.
    bool reads_original_destination() const {
        return send_original_destination || target == Target::original_port ||
               target == Target::original_destination || target == Target::base_address;
    }

    // TCP_NODELAY on an upstream socket before its connect (TCP only). Keepalive waits: see
    // keepalive_delay().
    void tune(int fd, int family) const;
    // The keepalive options on a connected upstream TCP socket. The relay sets them only on a
    // connection that has lived keepalive_delay(): a short connection never needs them and would
    // pay four system calls (a tenth of a short connection's cost); a long one gets its first
    // probe at most that much later than keepalive.idle.
    bool wants_keepalive(int family) const;
    void arm_keepalive(int fd) const;
    std::chrono::milliseconds keepalive_delay() const;
};

// A host-name upstream's handover addresses, checked against `first` (the handover's upstream:
// the same scheme and port, and the first of them); empty for a numeric upstream. Throws
// std::runtime_error naming what is wrong.
std::vector<SockAddr> upstream_address_set(const std::string& host,
                                           const std::vector<std::string>& texts,
                                           const Endpoint& first);

// Starts a non-blocking connect to `dest` (tcp, vsock, unix, fc-vsock: the Unix socket of the
// hybrid vsock). Returns 0 with `out` set, or an errno value.
int start_connect(const Route& route, const Endpoint& dest, unique_fd& out);

// The line a Firecracker / Cloud Hypervisor hybrid vsock expects first.
std::string fc_vsock_connect_line(uint32_t port);

enum class FcReply { need_more, ok, bad };
// Parses the hybrid vsock's answer "OK <n>\n" at the start of `peeked`; `line_len` is set to
// the length of the line to consume when the answer is complete.
FcReply parse_fc_vsock_reply(std::string_view peeked, size_t& line_len);

}  // namespace pfp::worker
