#pragma once
// THE kind table: one row per worker kind says everything the rest of the program needs to know
// about it — how a policy entry selects it, which fds the supervisor hands it (and with which
// capability they are opened), what its worker may create and keep after lock-down, and how it
// words its per-connection log lines. The policy parser, the socket factory, the handover codec,
// the worker factory, the sandbox profiles and the docs all read it. A new kind of an existing
// family is one row here; a kind with behaviour of its own adds one file in workers/.
#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "common/names.hpp"

namespace pfp {

enum class WorkerKind {
    tcp_forward,                // TCP listener -> fixed TCP upstream (tcpfwd)
    ip_to_vsock,                // TCP listener -> fixed vsock-like upstream
    ip_to_vsock_transparent,    // TCP listener -> vsock-like upstream, original dst header first
    transparent_port_to_vsock,  // TCP listener -> vsock CID, port = original destination port
    vsock_to_ip,                // vsock-like listener -> fixed TCP upstream
    vsock_to_ip_transparent,    // vsock-like listener -> TCP destination read from the stream
    vsock_to_vsock,             // vsock-like listener -> fixed vsock-like upstream (vsockproxy)
    udp_forward,                // UDP socket -> fixed UDP upstream, one flow per client (udpfwd)
    stream_to_raw,              // vsock-like listener -> IP packets injected by raw sockets
    nfqueue_to_stream,          // packets of an nfqueue -> one vsock-like stream
    kcp_client,                 // TCP listener -> KCP conversations over UDP to a kcp-server
    kcp_server,                 // UDP socket of KCP conversations -> one TCP upstream each
};

// How a kind moves data; each family has one worker body and one sandbox profile shape.
enum class KindFamily {
    stream,    // accept a stream, connect one upstream stream per client, relay both ways
    datagram,  // datagrams between a bound socket and per-client upstream sockets
    packet,    // whole IP packets between the kernel (nfqueue, raw sockets) and a stream
    tunnel,    // streams carried over a datagram protocol
};

// What one handed-over fd is for; the worker checks each against it on receipt.
enum class FdRole {
    stream_listener,  // listening SOCK_STREAM socket: tcp, vsock, unix, fc-vsock
    datagram_socket,  // bound SOCK_DGRAM socket: udp
    raw_ipv4,         // AF_INET SOCK_RAW IPPROTO_RAW (IP_HDRINCL), maybe bound to a device
    raw_ipv6,         // AF_INET6 SOCK_RAW IPPROTO_RAW, maybe bound to a device
    nfqueue,          // NETLINK_NETFILTER socket bound to one queue, packets copied
};

// Where a stream relay connects each client.
enum class UpstreamMode {
    fixed,                 // `upstream` (a vsock one may take its port from SO_ORIGINAL_DST)
    original_destination,  // "original-destination": SO_ORIGINAL_DST of the client socket
    destination_header,    // "destination-header": read from the stream (transparent header)
    base_address,          // `upstream` + `base_address`: its IP + (original port - listen port)
};

// A listener, as far as choosing a kind goes.
enum class ListenSide { tcp, vsock_like, udp, nfqueue };  // vsock-like: vsock, unix or fc-vsock

// What a relay connects to, as far as choosing a kind goes.
enum class UpstreamTarget {
    tcp,                   // a tcp: endpoint
    vsock_like,            // a vsock:, unix: or fc-vsock: endpoint with a fixed port
    original_port,         // a vsock: or fc-vsock: endpoint whose port is original-port
    destination_header,    // "destination-header"
    original_destination,  // "original-destination"
    base_address,          // a tcp: endpoint with `base_address: true`
    udp,                   // a udp: endpoint
    raw,                   // a raw: endpoint (raw:DEVICE or raw:route): packets injected
};

// The deployed tools' per-connection wording, which operators' log parsing relies on.
struct ConnectionLogStyle {
    std::string_view from_side;      // "ip" in "ip to vsock IO copy done, ..."
    std::string_view to_side;        // "vsock" in the same line
    std::string_view connect_error;  // "TCP" in "Error: failed to connect to TCP endpoint"
    bool quote_upstream = true;      // vsock-to-ip-transparent's tool printed it bare
};

struct KindRow {
    WorkerKind kind;
    std::string_view name;
    std::string_view summary;  // one line for docs and --help
    KindFamily family;
    // Policy: the entries that make this kind, and the kind-specific keys it takes.
    ListenSide listen;
    UpstreamTarget upstream;
    // Other upstreams the same kind takes (tcp-forward: original-destination, base-address).
    std::span<const UpstreamTarget> more_upstreams{};
    bool send_original_destination = false;
    bool takes_allow = false;       // `allow`: it connects to TCP destinations
    bool takes_statistics = false;  // `statistics`
    // `tunnel` names the protocol carrying streams over datagrams ("kcp"): the entry must say it,
    // since a tcp listener with a udp upstream (or the reverse) could mean another protocol.
    bool tunnel = false;
    // Handover: the fds its worker receives, in this order.
    std::span<const FdRole> fds;
    // Sandbox: the socket() domains its worker may create for upstream connections (and why),
    // and the capabilities it keeps after lock-down (and why).
    std::span<const int> upstream_domains;
    std::string_view upstream_why;
    std::string_view connect_why;
    std::span<const int> capabilities;
    std::string_view capabilities_why;
    ConnectionLogStyle log;
};

std::span<const KindRow> kind_table();
const KindRow& kind_row(WorkerKind k);  // every kind has a row (a table test checks)
inline constexpr size_t kWorkerKindCount = 12;

std::string_view kind_name(WorkerKind k);
std::optional<WorkerKind> kind_from_name(std::string_view name);

// Derived from the row, never stored twice.
bool reads_original_dst(const KindRow& row);                // getsockopt(SO_ORIGINAL_DST)
bool takes_upstream(const KindRow& row, UpstreamTarget t);  // `upstream` or `more_upstreams`
// The destination depends on the client (a header it sends, or where it connected): such a
// kind needs an `allow` list (deny by default).
bool client_chooses_destination(UpstreamTarget t);
std::span<const int> listener_domains(ListenSide side);  // AF_* a listener of that side has

// "fixed" is never written in a policy (an endpoint stands for it); the other two are words of
// `upstream` there, and all three are values in the handover.
// "base-address" is a handover value only: a policy writes an endpoint and `base_address: true`.
inline constexpr std::array<Named<UpstreamMode>, 4> kUpstreamModeNames{{
    {UpstreamMode::fixed, "fixed"},
    {UpstreamMode::original_destination, "original-destination"},
    {UpstreamMode::destination_header, "destination-header"},
    {UpstreamMode::base_address, "base-address"},
}};

std::span<const Named<KindFamily>> kind_family_names();
std::span<const Named<FdRole>> fd_role_names();
std::span<const Named<UpstreamMode>> upstream_mode_names();  // "fixed" is never written
inline std::string_view kind_family_name(KindFamily f) {
    return name_in(kind_family_names(), f);
}
inline std::string_view role_name(FdRole r) {
    return name_in(fd_role_names(), r);
}
inline std::string_view upstream_mode_name(UpstreamMode m) {
    return name_in(upstream_mode_names(), m);
}
// The modes whose `upstream` is an endpoint (the others leave it empty).
constexpr bool has_upstream_endpoint(UpstreamMode m) {
    return m == UpstreamMode::fixed || m == UpstreamMode::base_address;
}

}  // namespace pfp
