#include "common/worker_kind.hpp"

#include <linux/capability.h>
#include <sys/socket.h>

#include <array>
#include <stdexcept>
#include <string>

namespace pfp {
namespace {

constexpr std::array kListenerOnly{FdRole::stream_listener};
constexpr std::array kRedirectedTcp{UpstreamTarget::original_destination,
                                    UpstreamTarget::base_address};
constexpr std::array kDatagramOnly{FdRole::datagram_socket};
constexpr std::array kIpDomains{AF_INET, AF_INET6};
constexpr std::array kListenerAndInjectors{FdRole::stream_listener, FdRole::raw_ipv4,
                                           FdRole::raw_ipv6};
constexpr std::span<const int> kNoDomains{};
constexpr std::array kNfqueueOnly{FdRole::nfqueue};
constexpr std::array kNetlinkDomain{AF_NETLINK};
constexpr std::array kNetAdmin{CAP_NET_ADMIN};
// fc-vsock is a Unix socket on the host (Firecracker's hybrid vsock); unix: upstreams too.
constexpr std::array kVsockDomains{AF_VSOCK, AF_UNIX};
// The nfqueue reader's one stream: vsock, unix or TCP (the worker narrows it to its upstream's).
constexpr std::array kStreamDomains{AF_VSOCK, AF_UNIX, AF_INET, AF_INET6};
constexpr std::array kTcpUpstream{UpstreamTarget::tcp};
constexpr std::span<const int> kNoCapabilities{};
constexpr std::string_view kNoCapabilitiesWhy =
    "its listener is handed over and its upstreams are unprivileged outbound connects";
constexpr std::string_view kIpWhy = "upstream TCP connections; no Unix, vsock, packet or netlink";
constexpr std::string_view kVsockWhy =
    "upstream vsock (or fc-vsock/unix) connections; no AF_INET/AF_INET6, packet or netlink";

constexpr std::array<KindRow, kWorkerKindCount> kRows{{
    {.kind = WorkerKind::tcp_forward,
     .name = "tcp-forward",
     .summary = "TCP listener -> fixed TCP upstream, or one a redirected client's original "
                "destination gives",
     .family = KindFamily::stream,
     .listen = ListenSide::tcp,
     .upstream = UpstreamTarget::tcp,
     .more_upstreams = kRedirectedTcp,
     .takes_allow = true,
     .fds = kListenerOnly,
     .upstream_domains = kIpDomains,
     .upstream_why = kIpWhy,
     .connect_why = "non-blocking connect to the fixed upstream, or to the one the original "
                    "destination gives after the allow list said yes",
     .capabilities = kNoCapabilities,
     .capabilities_why = kNoCapabilitiesWhy,
     .log = {"tcp", "tcp", "TCP"}},
    {.kind = WorkerKind::ip_to_vsock,
     .name = "ip-to-vsock",
     .summary = "TCP listener -> fixed vsock, fc-vsock or unix upstream",
     .family = KindFamily::stream,
     .listen = ListenSide::tcp,
     .upstream = UpstreamTarget::vsock_like,
     .fds = kListenerOnly,
     .upstream_domains = kVsockDomains,
     .upstream_why = kVsockWhy,
     .connect_why = "non-blocking connect to the fixed vsock upstream",
     .capabilities = kNoCapabilities,
     .capabilities_why = kNoCapabilitiesWhy,
     .log = {"ip", "vsock", "vsock"}},
    {.kind = WorkerKind::ip_to_vsock_transparent,
     .name = "ip-to-vsock-transparent",
     .summary = "redirected TCP -> vsock-like upstream, original destination sent first",
     .family = KindFamily::stream,
     .listen = ListenSide::tcp,
     .upstream = UpstreamTarget::vsock_like,
     .send_original_destination = true,
     .fds = kListenerOnly,
     .upstream_domains = kVsockDomains,
     .upstream_why = kVsockWhy,
     .connect_why = "non-blocking connect to the fixed vsock upstream",
     .capabilities = kNoCapabilities,
     .capabilities_why = kNoCapabilitiesWhy,
     .log = {"ip", "vsock", "vsock"}},
    {.kind = WorkerKind::transparent_port_to_vsock,
     .name = "transparent-port-to-vsock",
     .summary = "redirected TCP -> vsock CID at the client's original port",
     .family = KindFamily::stream,
     .listen = ListenSide::tcp,
     .upstream = UpstreamTarget::original_port,
     .fds = kListenerOnly,
     .upstream_domains = kVsockDomains,
     .upstream_why = kVsockWhy,
     .connect_why = "non-blocking connect to the vsock CID at the client's original port",
     .capabilities = kNoCapabilities,
     .capabilities_why = kNoCapabilitiesWhy,
     .log = {"port", "vsock", "vsock"}},
    {.kind = WorkerKind::vsock_to_ip,
     .name = "vsock-to-ip",
     .summary = "vsock-like listener -> fixed TCP upstream",
     .family = KindFamily::stream,
     .listen = ListenSide::vsock_like,
     .upstream = UpstreamTarget::tcp,
     .takes_allow = true,
     .fds = kListenerOnly,
     .upstream_domains = kIpDomains,
     .upstream_why = kIpWhy,
     .connect_why = "non-blocking connect to the fixed TCP upstream",
     .capabilities = kNoCapabilities,
     .capabilities_why = kNoCapabilitiesWhy,
     .log = {"vsock", "ip", "TCP"}},
    {.kind = WorkerKind::vsock_to_ip_transparent,
     .name = "vsock-to-ip-transparent",
     .summary = "vsock-like listener -> the TCP destination its peer names in a header",
     .family = KindFamily::stream,
     .listen = ListenSide::vsock_like,
     .upstream = UpstreamTarget::destination_header,
     .takes_allow = true,
     .fds = kListenerOnly,
     .upstream_domains = kIpDomains,
     .upstream_why = kIpWhy,
     .connect_why = "connect to the destination the peer names, after the allow list said yes",
     .capabilities = kNoCapabilities,
     .capabilities_why = kNoCapabilitiesWhy,
     .log = {"vsock", "ip", "TCP", false}},
    {.kind = WorkerKind::vsock_to_vsock,
     .name = "vsock-to-vsock",
     .summary = "vsock-like listener -> fixed vsock-like upstream (vsockproxy)",
     .family = KindFamily::stream,
     .listen = ListenSide::vsock_like,
     .upstream = UpstreamTarget::vsock_like,
     .takes_statistics = true,
     .fds = kListenerOnly,
     .upstream_domains = kVsockDomains,
     .upstream_why = kVsockWhy,
     .connect_why = "non-blocking connect to the fixed vsock upstream",
     .capabilities = kNoCapabilities,
     .capabilities_why = kNoCapabilitiesWhy,
     .log = {"vsock", "vsock", "vsock"}},
    {.kind = WorkerKind::udp_forward,
     .name = "udp-forward",
     .summary = "UDP socket -> fixed UDP upstream, one connected upstream socket per client",
     .family = KindFamily::datagram,
     .listen = ListenSide::udp,
     .upstream = UpstreamTarget::udp,
     .fds = kDatagramOnly,
     .upstream_domains = kIpDomains,
     .upstream_why = "one UDP socket per client flow toward the upstream; no TCP, Unix, vsock, "
                     "packet or netlink",
     .connect_why = "fixes a flow socket's peer to the upstream (a UDP connect sends nothing)",
     .capabilities = kNoCapabilities,
     .capabilities_why = "its socket is handed over and its flow sockets are unprivileged",
     .log = {"udp", "udp", "UDP"}},
    {.kind = WorkerKind::stream_to_raw,
     .name = "stream-to-raw",
     .summary = "vsock-like listener -> IP packets injected through raw sockets",
     .family = KindFamily::packet,
     .listen = ListenSide::vsock_like,
     .upstream = UpstreamTarget::raw,
     .fds = kListenerAndInjectors,
     .upstream_domains = kNoDomains,
     .upstream_why = "none: the supervisor opens both raw injectors",
     .connect_why = "",
     .capabilities = kNoCapabilities,
     .capabilities_why = "raw sockets opened by the supervisor keep sending without CAP_NET_RAW",
     .log = {"vsock", "ip", "raw"}},
    {.kind = WorkerKind::nfqueue_to_stream,
     .name = "nfqueue-to-stream",
     .summary = "packets of an nfqueue -> one vsock or unix stream, each then dropped",
     .family = KindFamily::packet,
     .listen = ListenSide::nfqueue,
     .upstream = UpstreamTarget::vsock_like,
     .more_upstreams = kTcpUpstream,
     .fds = kNfqueueOnly,
     .upstream_domains = kStreamDomains,
     .upstream_why = "the one stream to the vsock, unix or tcp upstream (narrowed to that one "
                     "family at start); no packet or netlink",
     .connect_why = "non-blocking connect (and reconnect with backoff) to the fixed upstream",
     .capabilities = kNetAdmin,
     .capabilities_why =
         "the kernel checks CAP_NET_ADMIN of the process sending each nfqueue verdict",
     .log = {"ip", "vsock", "vsock"}},
    {.kind = WorkerKind::kcp_client,
     .name = "kcp-client",
     .summary = "TCP listener -> one KCP conversation over UDP per client, to a kcp-server",
     .family = KindFamily::tunnel,
     .listen = ListenSide::tcp,
     .upstream = UpstreamTarget::udp,
     .takes_statistics = true,
     .tunnel = true,
     .fds = kListenerOnly,
     .upstream_domains = kIpDomains,
     .upstream_why = "one UDP socket per client connection toward the kcp-server (the upstream's "
                     "family only); no TCP, Unix, vsock, packet or netlink",
     .connect_why = "fixes a conversation socket's peer to the server (a UDP connect sends "
                    "nothing)",
     .capabilities = kNoCapabilities,
     .capabilities_why = "its listener is handed over and its UDP sockets are unprivileged",
     .log = {"tcp", "kcp", "UDP"}},
    {.kind = WorkerKind::kcp_server,
     .name = "kcp-server",
     .summary = "UDP socket of KCP conversations -> one TCP upstream connection per conversation",
     .family = KindFamily::tunnel,
     .listen = ListenSide::udp,
     .upstream = UpstreamTarget::tcp,
     .takes_statistics = true,
     .tunnel = true,
     .fds = kDatagramOnly,
     .upstream_domains = kIpDomains,
     .upstream_why = "one TCP connection per conversation to the upstream (its family only); no "
                     "UDP sockets beyond the handed-over one, no Unix, vsock, packet or netlink",
     .connect_why = "non-blocking connect to the fixed TCP upstream",
     .capabilities = kNoCapabilities,
     .capabilities_why = "its UDP socket is handed over and its upstreams are unprivileged "
                         "outbound connects",
     .log = {"kcp", "tcp", "TCP"}},
}};

// Rows are indexed by their kind; a row out of place would hand one kind another's sandbox.
constexpr bool rows_in_kind_order() {
    for (size_t i = 0; i < kRows.size(); ++i)
        if (static_cast<size_t>(kRows[i].kind) != i) return false;
    return true;
}
static_assert(rows_in_kind_order());

constexpr std::array kFamilyNames{
    Named<KindFamily>{KindFamily::stream, "stream"},
    Named<KindFamily>{KindFamily::datagram, "datagram"},
    Named<KindFamily>{KindFamily::packet, "packet"},
    Named<KindFamily>{KindFamily::tunnel, "tunnel"},
};
constexpr std::array kRoleNames{
    Named<FdRole>{FdRole::stream_listener, "listener"},
    Named<FdRole>{FdRole::datagram_socket, "datagram socket"},
    Named<FdRole>{FdRole::raw_ipv4, "raw IPv4 injector"},
    Named<FdRole>{FdRole::raw_ipv6, "raw IPv6 injector"},
    Named<FdRole>{FdRole::nfqueue, "nfqueue"},
};

}  // namespace

std::span<const KindRow> kind_table() {
    return kRows;
}

const KindRow& kind_row(WorkerKind k) {
    const auto i = static_cast<size_t>(k);
    if (i >= kRows.size())
        throw std::invalid_argument("no row for worker kind " + std::to_string(i));
    return kRows[i];
}

std::string_view kind_name(WorkerKind k) {
    const auto i = static_cast<size_t>(k);
    return i < kRows.size() ? kRows[i].name : "unknown";
}

std::optional<WorkerKind> kind_from_name(std::string_view name) {
    for (const auto& row : kRows)
        if (row.name == name) return row.kind;
    return std::nullopt;
}

bool takes_upstream(const KindRow& row, UpstreamTarget t) {
    if (row.upstream == t) return true;
    for (const UpstreamTarget m : row.more_upstreams)
        if (m == t) return true;
    return false;
}

bool client_chooses_destination(UpstreamTarget t) {
    return t == UpstreamTarget::destination_header || t == UpstreamTarget::original_destination ||
           t == UpstreamTarget::base_address;
}

bool reads_original_dst(const KindRow& row) {
    return row.send_original_destination || takes_upstream(row, UpstreamTarget::original_port) ||
           takes_upstream(row, UpstreamTarget::original_destination) ||
           takes_upstream(row, UpstreamTarget::base_address);
}

std::span<const int> listener_domains(ListenSide side) {
    if (side == ListenSide::tcp || side == ListenSide::udp) return kIpDomains;
    if (side == ListenSide::nfqueue) return kNetlinkDomain;
    return kVsockDomains;
}

std::span<const Named<KindFamily>> kind_family_names() {
    return kFamilyNames;
}
std::span<const Named<FdRole>> fd_role_names() {
    return kRoleNames;
}
std::span<const Named<UpstreamMode>> upstream_mode_names() {
    return kUpstreamModeNames;
}

}  // namespace pfp
