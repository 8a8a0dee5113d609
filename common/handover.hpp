#pragma once
// The HANDOVER message: what the supervisor tells a worker about the proxy it serves, beside the
// fds it passes. A header (who the worker is), a table of fds (each with its role and endpoint,
// in the order they travel), and the options of the kind's family, one struct per family. JSON
// on the wire; the supervisor is trusted by the worker, but the decoder is strict anyway:
// unknown or missing keys, unknown names and out-of-range numbers are errors.
#include <chrono>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/transparent_header.hpp"
#include "common/worker_kind.hpp"

namespace pfp {

struct HandoverFd {
    FdRole role = FdRole::stream_listener;
    std::string endpoint;  // canonical endpoint text (the socket's real address when known)
    bool operator==(const HandoverFd&) const = default;
};

// Everything a stream relay needs besides its listener (policy/model.hpp explains each).
struct StreamOptions {
    UpstreamMode upstream_mode = UpstreamMode::fixed;
    std::string upstream;  // canonical endpoint text when upstream_mode is fixed, else empty
    // A host-name upstream: the name (for log lines) and the addresses the supervisor resolved it
    // to, in the order to try them ("tcp:10.0.0.1:443"); `upstream` is the first of them. Empty
    // for a numeric upstream. ADDRESSES messages (address_message.hpp) replace the set.
    std::string upstream_host;
    std::vector<std::string> upstream_addresses;
    bool send_original_destination = false;
    TransparentHeaderFormat header = TransparentHeaderFormat::standard;
    bool proxy_protocol = false;
    std::vector<std::string> allow;
    std::vector<uint32_t> allowed_cids;
    std::vector<std::string> allowed_sources;
    // The host's own addresses when the worker started (the supervisor lists them at each worker
    // start, so a reload or restart picks up changes): protected from the `allow` list.
    std::vector<std::string> host_addresses;
    int max_connections = 10'000;  // this worker's share
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds idle_timeout{0};
    std::chrono::milliseconds header_timeout{5'000};
    bool tcp_nodelay = true;
    bool keepalive = true;
    std::chrono::milliseconds keepalive_idle{60'000};
    std::chrono::milliseconds keepalive_interval{10'000};
    int keepalive_count = 6;
    bool splice = true;
    std::chrono::microseconds busy_poll{0};  // 0: the loop sleeps as soon as nothing is ready
    // Connections this worker hands to a pair of blocking threads once connected (the policy's
    // `relay` "threads", its share of relay_threads); 0: the event engine serves every one, and
    // the sandbox profile allows no thread creation.
    int relay_threads = 0;
    bool log_connections = false;
    bool statistics = false;
    bool operator==(const StreamOptions&) const = default;
};

// Everything a datagram forwarder needs besides its bound socket (docs/policy.md explains each).
struct DatagramOptions {
    std::string upstream;                         // canonical udp: endpoint text
    std::string upstream_host;                    // as in StreamOptions
    std::vector<std::string> upstream_addresses;  // as in StreamOptions
    std::vector<std::string> allowed_sources;
    int max_flows = 8192;                            // this worker's share of the flow table
    std::chrono::milliseconds idle_timeout{60'000};  // 0: never
    bool batch = true;                               // recvmmsg/sendmmsg, else one call each
    bool log_connections = false;                    // a line per flow created and ended
    bool operator==(const DatagramOptions&) const = default;
};

// The packet family (docs/wire-formats.md, "Raw packet stream"): whole IP packets between a
// stream and the kernel.
struct PacketOptions {
    // Canonical endpoint text: raw:DEVICE or raw:route (stream-to-raw), the stream's vsock:,
    // unix: or tcp: endpoint (nfqueue-to-stream).
    std::string upstream;
    bool log_connections = false;
    // nfqueue-to-stream: the verdict of a packet that cannot be written (NF_DROP or NF_ACCEPT),
    // the stream's connect timeout and its reconnect backoff (doubling).
    bool accept_when_stream_down = false;
    std::chrono::milliseconds connect_timeout{4'000};
    std::chrono::milliseconds backoff_initial{1'000};
    std::chrono::milliseconds backoff_max{64'000};
    // stream-to-raw: the packet filters (common/packet_filter.hpp), in their text forms.
    std::vector<std::string> filter_destinations;
    std::vector<std::string> filter_sources;
    bool filter_drop_reserved = false;
    std::vector<std::string> filter_source_ports;
    // stream-to-raw: a TCP packet above this many bytes is cut into segments that fit (0: never),
    // or, with route_mtu_auto, above the MTU the kernel reports for its destination's route.
    uint32_t route_mtu = 0;
    bool route_mtu_auto = false;
    bool operator==(const PacketOptions&) const = default;
};

// The tunnel family (docs/kcp-tunnel.md): kcp-client (TCP in, KCP over UDP to `upstream`) and
// kcp-server (KCP over its UDP socket in, TCP to `upstream`). docs/policy.md explains each.
struct TunnelOptions {
    std::string upstream;                         // canonical udp: (client) or tcp: (server) text
    std::string upstream_host;                    // as in StreamOptions
    std::vector<std::string> upstream_addresses;  // as in StreamOptions
    std::vector<std::string> allowed_sources;
    // The pre-shared key: 32 bytes, or none (plain KCP). Only here does it reach the worker; the
    // JSON carries it as hex, and neither side ever logs the message.
    std::vector<uint8_t> psk;
    int mtu = 1350;
    int socket_buffer = 0;  // 0: the kernel's default
    // KCP tuning and the rekey interval.
    bool nodelay = true;
    std::chrono::milliseconds interval{10};
    int resend = 2;
    bool no_congestion_control = true;
    int send_window = 1024;
    int receive_window = 1024;
    uint64_t rekey_after = uint64_t{1} << 30;
    // kcp-server's limits.
    int max_sessions = 1024;
    int max_per_source = 64;
    int hellos_per_second = 20;
    int hello_burst = 40;
    int max_connections = 10'000;  // kcp-client: this worker's share
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds idle_timeout{180'000};
    bool log_connections = false;
    bool statistics = false;
    bool operator==(const TunnelOptions&) const = default;
};

// One alternative per family that has a worker body.
using FamilyOptions = std::variant<StreamOptions, DatagramOptions, PacketOptions, TunnelOptions>;

struct Handover {
    std::string proxy;  // policy name
    WorkerKind kind{};
    int index = 0;       // which of the proxy's worker processes
    int generation = 0;  // the proxy's configuration generation
    std::chrono::milliseconds drain_timeout{30'000};
    std::vector<HandoverFd> fds;  // one entry per passed fd, in order
    FamilyOptions options;
    bool operator==(const Handover&) const = default;

    std::string to_json() const;
    static Handover from_json(const std::string& text);  // throws std::runtime_error

    // "web/0": how the worker names itself in log lines.
    std::string tag() const { return proxy + "/" + std::to_string(index); }
};

}  // namespace pfp
