#pragma once
// The policy model: what one JSON policy file says, fully validated and resolved.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint.hpp"
#include "common/transparent_header.hpp"
#include "common/worker_kind.hpp"

namespace pfp::policy {

using std::chrono::milliseconds;

struct Keepalive {
    bool enabled = true;
    milliseconds idle{60'000};
    milliseconds interval{10'000};
    int count = 6;
    bool operator==(const Keepalive&) const = default;
};

struct RestartPolicy {
    milliseconds backoff_initial{100};
    milliseconds backoff_max{30'000};
    milliseconds healthy_after{60'000};  // a worker up this long resets the backoff
    int max_failures = 10;               // consecutive failures before the proxy is marked failed
    bool operator==(const RestartPolicy&) const = default;
};

// Where a stream relay connects each client, and the transparent header's format: the same
// enums (and name tables) the handover and the workers use.
using UpstreamMode = pfp::UpstreamMode;
using HeaderFormat = pfp::TransparentHeaderFormat;  // 7/19 bytes "standard", or legacy 6

// Owner and mode of a Unix socket file the supervisor creates.
struct UnixSocketFile {
    std::optional<std::string> owner;  // default: the policy's user
    std::optional<std::string> group;  // default: the owner's group
    unsigned mode = 0660;
    bool operator==(const UnixSocketFile&) const = default;
};

// kcp-client and kcp-server (docs/kcp-tunnel.md): KCP's tuning, the rekey interval and the
// server's limits. The defaults are the protocol core's (Config::fast, kDefaultRekeyAfter,
// kcp::ServerLimits; the workers check they agree).
struct KcpTuning {
    bool nodelay = true;
    milliseconds interval{10};
    int resend = 2;  // fast resend after this many acks of later segments; 0: never
    bool no_congestion_control = true;
    int send_window = 1024;
    int receive_window = 1024;
    uint64_t rekey_after = uint64_t{1} << 30;  // datagrams per epoch
    int max_sessions = 1024;                   // kcp-server
    int max_per_source = 64;
    int hellos_per_second = 20;
    int hello_burst = 40;
    bool operator==(const KcpTuning&) const = default;
};

struct Proxy {
    std::string name;
    WorkerKind kind{};
    Endpoint listen;
    std::optional<Scheme> listen_family;  // "systemd:NAME" listeners: tcp, udp, unix_stream, vsock
    // tcp: and udp: listeners on an IPv6 address: IPV6_V6ONLY, so "[::]:PORT" takes IPv6 only
    // (an IPv4 listener may then share the port). Off: the kernel's default (dual-stack).
    bool ipv6_only = false;
    Endpoint upstream;  // meaningful when has_upstream_endpoint(upstream_mode)
    // fixed, original_destination, destination_header, or base_address (`base_address: true`
    // with a tcp: upstream: each connection goes to its IP + (original port - listen port)).
    UpstreamMode upstream_mode = UpstreamMode::fixed;
    bool send_original_destination = false;  // transparent header before the payload
    HeaderFormat header = HeaderFormat::standard;
    bool proxy_protocol = false;     // PROXY v2 header before the payload
    std::vector<std::string> allow;  // egress allow list (common/allow_list.hpp syntax)
    // `allow: "any"` (allow holds AllowList::any()'s entries): an open relay the operator asked
    // for; the supervisor warns at each start.
    bool allow_any = false;
    std::vector<uint32_t> allowed_cids;        // vsock listeners: peer CIDs admitted (empty: all)
    std::vector<std::string> allowed_sources;  // TCP listeners: client CIDRs admitted (empty: all)
    UnixSocketFile unix_socket;                // unix and fc-vsock listeners
    bool log_connections = false;              // one line per connection (the seeds' output)
    bool statistics = false;                   // vsockproxy-style per-connection statistics
    int workers = 1;                           // worker processes sharing the listener
    int max_connections = 10'000;              // per proxy, split evenly across its workers
    int backlog = 4096;
    int max_flows = 8192;  // datagram kinds: client flows per proxy, split across its workers
    bool batch = true;     // datagram kinds: recvmmsg/sendmmsg
    milliseconds connect_timeout{10'000};
    // How long a destination-header relay waits for the whole header (docs/policy.md).
    milliseconds header_timeout{5'000};
    // 0: never. Finite by default so connections whose peers vanished without a FIN (keepalive
    // off, or a peer that still ACKs) give their max_connections slot back; an hour is the usual
    // tunnel timeout, past the keepalive period of pooled and interactive connections.
    milliseconds idle_timeout{std::chrono::hours(1)};  // datagram kinds: 60 s
    bool tcp_nodelay = true;
    Keepalive keepalive;
    bool splice = true;  // false: copy through user-space buffers
    // Stream kinds: after its last event a worker keeps polling (epoll_wait with timeout 0) this
    // long before it sleeps; 0: off. Trades a busy CPU for fewer wake-ups (docs/policy.md).
    std::chrono::microseconds busy_poll{0};
    // Stream kinds: "threads" hands each established connection to a pair of blocking threads
    // (at most relay_threads connections per proxy, split across its workers; the rest use the
    // event engine). docs/architecture.md, "The thread relay".
    bool thread_relay = false;
    int relay_threads = 64;
    RestartPolicy restart;
    // nfqueue listeners: what a packet gets when the stream cannot take it ("drop" or "accept"),
    // whether the kernel accepts packets when the queue is full (fail_open), the queue's length,
    // whether GSO packets are queued whole (gso; the kernel segments them first otherwise).
    bool accept_when_stream_down = false;
    bool fail_open = false;
    bool gso = false;
    uint32_t queue_maxlen = 0;  // 0: the kernel's default (1024)
    // nflog listeners: the group's batching. The kernel sends what it logged once nflog_threshold
    // packets wait, nflog_timeout after the first, or when its batch buffer (nflog_buffer bytes,
    // 0: the kernel's default, one page) is full. The defaults send each packet at once.
    uint32_t nflog_threshold = 1;
    milliseconds nflog_timeout{0};
    uint32_t nflog_buffer = 0;
    // stream-to-raw: the MTU of the route the packets leave by (0: not set). A TCP packet above it
    // (a whole GSO packet from a reader with gso) is cut into segments that fit. "auto": the MTU
    // the kernel reports for each destination's route instead (route_mtu stays 0).
    uint32_t route_mtu = 0;
    bool route_mtu_auto = false;
    // stream-to-raw: which packets may be injected (common/packet_filter.hpp); empty lists and
    // false: no rule. Addresses and port ranges in their text forms, as written.
    std::vector<std::string> filter_destinations;
    std::vector<std::string> filter_sources;
    bool filter_drop_reserved = false;
    std::vector<std::string> filter_source_ports;
    // kcp-client and kcp-server: where the 32-byte PSK comes from (at most one; neither: plain,
    // unauthenticated KCP), and the key itself, which only the supervisor reads
    // (policy/psk.hpp), at start and on reload; the parser never does.
    std::string psk_file;
    std::string psk_env;
    std::string psk;  // 32 raw bytes once read; empty: no key
    int mtu = 1350;   // the tunnel's datagram size
    // SO_RCVBUF/SO_SNDBUF of the UDP socket(s); KCP tunnels default to 4 MiB
    // (policy/tunnel_options.cpp); 0 (every other kind): the kernel's default
    int socket_buffer = 0;
    KcpTuning kcp;
    std::string pointer;  // "/proxies/N", for messages about this entry
};

// Same configuration (everything but where in the file it was written): a reload leaves such a
// proxy running untouched.
bool same_configuration(const Proxy& a, const Proxy& b);

struct Policy {
    std::string path;
    std::optional<std::string> user;   // switch to this user after opening sockets
    std::optional<std::string> group;  // default: the user's primary group
    milliseconds drain_timeout{30'000};
    std::optional<Endpoint> metrics;  // tcp: or unix: Prometheus endpoint; none: no endpoint
    // Allowed on the control socket besides root and the daemon's own user; the supervisor
    // resolves the names (the parser only checks their form).
    std::vector<std::string> control_users;
    std::vector<std::string> control_groups;
    // Host-name upstreams: the DNS server asked ("127.0.0.1:5353", "[::1]:53"; empty: the
    // system's resolv.conf and /etc/hosts), and the bounds a TTL is clamped to before a name is
    // resolved again.
    std::string resolver;
    milliseconds resolve_min{5'000};
    milliseconds resolve_max{3'600'000};
    std::vector<Proxy> proxies;
};

}  // namespace pfp::policy
