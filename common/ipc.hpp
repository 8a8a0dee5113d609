#pragma once
// The supervisor <-> worker message set. One SOCK_SEQPACKET datagram per message:
//   u32 magic "PFP1" | u16 type | u16 fd count | u32 payload length | payload
// Supervisor -> worker: HANDOVER (config JSON + the proxy's fds), DRAIN (u32 ms), ADDRESSES (the
// resolved addresses of a host-name upstream).
// Worker -> supervisor: READY (empty, once), STATS (a fixed struct per kind family). The
// supervisor treats every worker message as hostile: size limits, and a table that says in which
// worker state each message is permitted and what handles it (supervisor/dispatch.cpp).
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/fd_passing.hpp"
#include "common/unique_fd.hpp"

namespace pfp::ipc {

constexpr uint32_t kMagic = 0x31504650;  // "PFP1" little-endian
constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxToWorker = 64 * 1024;
constexpr size_t kMaxFromWorker = 256;

enum class Type : uint16_t {
    handover = 1,
    ready = 2,
    drain = 3,
    stats = 4,
    addresses =
        5,  // supervisor -> worker: a host-name upstream's address set (address_message.hpp)
};

enum class Sender { supervisor, worker };

// Every message type, who sends it and its name in logs; receive() knows no other type.
struct MessageSpec {
    Type type;
    const char* name;
    Sender sender;
};
std::span<const MessageSpec> message_table();

struct Message {
    Type type{};
    std::string payload;
    std::vector<unique_fd> fds;
};

// Counters a stream worker reports about itself (all since the worker started). Each family has
// its own struct; the STATS payload of a worker is its family's struct.
struct StreamStats {
    uint64_t accepted = 0;
    uint64_t active = 0;
    uint64_t bytes_up = 0;    // client -> upstream
    uint64_t bytes_down = 0;  // upstream -> client
    uint64_t connect_failures = 0;
    uint64_t accept_errors = 0;
    uint64_t denied = 0;  // refused by allowed_cids / allowed_sources / allow / a bad header
};

// Counters a datagram worker reports about itself (all since the worker started). A drop is a
// datagram not forwarded; each reason has its own counter.
struct DatagramStats {
    uint64_t flows_created = 0;
    uint64_t flows_active = 0;
    uint64_t flows_expired = 0;  // idle longer than idle_timeout
    uint64_t flows_evicted = 0;  // the least recently active, to make room in a full table
    uint64_t datagrams_up = 0;   // client -> upstream, forwarded
    uint64_t datagrams_down = 0;
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    uint64_t denied = 0;       // from a source allowed_sources refuses
    uint64_t truncated = 0;    // larger than a UDP datagram can be (MSG_TRUNC): never sent cut
    uint64_t refused = 0;      // ECONNREFUSED on a flow socket (ICMP unreachable); flow kept
    uint64_t flow_errors = 0;  // no flow socket could be made (EMFILE, ENOBUFS, ...)
    uint64_t send_errors = 0;  // a send that failed (ENOBUFS, a full buffer, ...)
    bool operator==(const DatagramStats&) const = default;
};
// The fields in wire order (also the names the supervisor's checks and status use).
struct DatagramField {
    const char* name;
    uint64_t DatagramStats::*field;
};
std::span<const DatagramField> datagram_fields();

// Counters a packet worker reports about itself (all since the worker started). Packets move one
// way: "in" is what it took from its listen side (read from the nfqueue, framed from the stream),
// "out" what it passed on (written to the stream, injected). A drop is a packet not passed on;
// each reason has its own counter.
struct PacketStats {
    uint64_t streams = 0;  // streams accepted (stream-to-raw) or connected (nfqueue-to-stream)
    uint64_t streams_active = 0;  // a gauge: 0 or 1
    uint64_t reconnects = 0;      // connects that followed a lost stream or a failed attempt
    uint64_t connect_failures = 0;
    uint64_t stream_errors = 0;  // streams ended by an invalid header or a failed write
    uint64_t packets_in = 0;
    uint64_t bytes_in = 0;
    uint64_t packets_out = 0;
    uint64_t bytes_out = 0;
    uint64_t verdicts_drop = 0;        // NF_DROP verdicts given (the packet went on by the stream)
    uint64_t verdicts_accept = 0;      // NF_ACCEPT verdicts (on_stream_down "accept")
    uint64_t dropped_stream_down = 0;  // no stream, or its buffer was full
    uint64_t dropped_malformed = 0;    // the filters could not read the packet's headers
    uint64_t dropped_destination = 0;  // filters: destination not the enclave's address
    uint64_t dropped_source = 0;       // filters: source not the egress address
    uint64_t dropped_reserved = 0;     // filters: destination in a reserved range
    uint64_t dropped_port = 0;         // filters: TCP/UDP source port outside the allowed ranges
    uint64_t send_errors = 0;     // the kernel refused an injection (no route, too big, ENOBUFS...)
    uint64_t queue_overruns = 0;  // the nfqueue socket overflowed (ENOBUFS)
    uint64_t packets_cut = 0;     // stream-to-raw: packets out that went as segments (route_mtu)
    bool operator==(const PacketStats&) const = default;
};
struct PacketField {
    const char* name;
    uint64_t PacketStats::*field;
};
std::span<const PacketField> packet_fields();

// Counters a tunnel worker (kcp-client, kcp-server) reports about itself (all since the worker
// started). "Up" is toward the upstream: client TCP -> tunnel on kcp-client, tunnel -> upstream TCP
// on kcp-server. A dropped datagram is counted once, by the first reason that refused it.
struct TunnelStats {
    uint64_t sessions = 0;            // conversations opened (client: handshakes completed)
    uint64_t sessions_active = 0;     // a gauge: conversations (client: connections) open now
    uint64_t handshake_failures = 0;  // client: the server never answered the HELLO
    uint64_t connect_failures = 0;    // server: the upstream refused or timed out
    uint64_t denied = 0;              // a source allowed_sources refuses
    uint64_t accept_errors = 0;       // accept4 failed, or no socket for a new connection
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    uint64_t datagrams_in = 0;  // read from the UDP socket(s)
    uint64_t datagrams_out = 0;
    uint64_t send_errors = 0;        // a datagram the kernel would not take (KCP sends it again)
    uint64_t retransmits = 0;        // KCP segments sent again (timeouts and fast resends)
    uint64_t dropped_malformed = 0;  // the drop reasons of docs/kcp-tunnel.md, "Server limits"
    uint64_t dropped_rate_limited = 0;
    uint64_t dropped_handshake = 0;
    uint64_t dropped_full = 0;
    uint64_t dropped_stale_duplicate = 0;
    uint64_t dropped_unknown = 0;
    uint64_t dropped_refused = 0;
    bool operator==(const TunnelStats&) const = default;
};
struct TunnelField {
    const char* name;
    uint64_t TunnelStats::*field;
};
std::span<const TunnelField> tunnel_fields();

class protocol_error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

void send(int sock, Type type, const std::string& payload, const std::vector<int>& fds = {});

// Receives one message of at most `max_payload` bytes. nullopt: the peer closed the channel.
// Throws protocol_error for anything malformed (bad magic, length mismatch, fd count mismatch,
// unknown type, oversize) and system_error for a failed recvmsg (EAGAIN included).
// `max_fds` 0: the sender may never pass fds (fd_passing.hpp: they are defused and closed).
std::optional<Message> receive(int sock, size_t max_payload, size_t max_fds = kMaxPassedFds);

constexpr size_t kStreamStatsSize = 7 * sizeof(uint64_t);
std::string encode_stats(const StreamStats& s);
// Throws protocol_error on a wrong size.
StreamStats decode_stream_stats(const std::string& payload);

constexpr size_t kDatagramStatsSize = 13 * sizeof(uint64_t);
std::string encode_stats(const DatagramStats& s);
// Throws protocol_error on a wrong size.
DatagramStats decode_datagram_stats(const std::string& payload);

constexpr size_t kPacketStatsSize = 20 * sizeof(uint64_t);
std::string encode_stats(const PacketStats& s);
// Throws protocol_error on a wrong size.
PacketStats decode_packet_stats(const std::string& payload);

constexpr size_t kTunnelStatsSize = 19 * sizeof(uint64_t);
std::string encode_stats(const TunnelStats& s);
// Throws protocol_error on a wrong size.
TunnelStats decode_tunnel_stats(const std::string& payload);

const char* type_name(Type t);

}  // namespace pfp::ipc
