#include "common/ipc.hpp"

#include <cstring>
#include <iterator>

#include "common/fd_passing.hpp"

namespace pfp::ipc {

namespace {

template <class T>
void put(std::string& out, T v) {
    char b[sizeof v];
    std::memcpy(b, &v, sizeof v);
    out.append(b, sizeof v);
}

template <class T>
T get(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

constexpr MessageSpec kMessages[] = {
    // clang-format off
    {Type::handover, "HANDOVER", Sender::supervisor},
    {Type::ready, "READY", Sender::worker},
    {Type::drain, "DRAIN", Sender::supervisor},
    {Type::stats, "STATS", Sender::worker},
    {Type::addresses, "ADDRESSES", Sender::supervisor},
    // clang-format on
};

bool known(uint16_t t) {
    for (const auto& m : kMessages)
        if (static_cast<uint16_t>(m.type) == t) return true;
    return false;
}

}  // namespace

std::span<const MessageSpec> message_table() {
    return kMessages;
}

const char* type_name(Type t) {
    for (const auto& m : kMessages)
        if (m.type == t) return m.name;
    return "UNKNOWN";
}

void send(int sock, Type type, const std::string& payload, const std::vector<int>& fds) {
    std::string buf;
    buf.reserve(kHeaderSize + payload.size());
    put<uint32_t>(buf, kMagic);
    put<uint16_t>(buf, static_cast<uint16_t>(type));
    put<uint16_t>(buf, static_cast<uint16_t>(fds.size()));
    put<uint32_t>(buf, static_cast<uint32_t>(payload.size()));
    buf += payload;
    send_with_fds(sock, std::as_bytes(std::span(buf)), fds);
}

std::optional<Message> receive(int sock, size_t max_payload, size_t max_fds) {
    std::vector<std::byte> buf(kHeaderSize + max_payload);
    Received r;
    try {
        r = recv_with_fds(sock, buf, max_fds);
    } catch (const fd_passing_error& e) {
        throw protocol_error(e.what());
    }
    if (r.eof) return std::nullopt;
    if (r.size < kHeaderSize) throw protocol_error("message shorter than its header");
    if (get<uint32_t>(buf.data()) != kMagic) throw protocol_error("bad magic");
    uint16_t type = get<uint16_t>(buf.data() + 4);
    uint16_t nfds = get<uint16_t>(buf.data() + 6);
    uint32_t len = get<uint32_t>(buf.data() + 8);
    if (!known(type)) throw protocol_error("unknown message type " + std::to_string(type));
    if (len != r.size - kHeaderSize)
        throw protocol_error("payload length " + std::to_string(len) + " but " +
                             std::to_string(r.size - kHeaderSize) + " bytes received");
    if (nfds != r.fds.size())
        throw protocol_error("header announces " + std::to_string(nfds) + " fds, " +
                             std::to_string(r.fds.size()) + " received");
    Message m;
    m.type = static_cast<Type>(type);
    m.payload.assign(reinterpret_cast<const char*>(buf.data() + kHeaderSize), len);
    m.fds = std::move(r.fds);
    return m;
}

std::string encode_stats(const StreamStats& s) {
    std::string out;
    for (uint64_t v : {s.accepted, s.active, s.bytes_up, s.bytes_down, s.connect_failures,
                       s.accept_errors, s.denied})
        put<uint64_t>(out, v);
    return out;
}

StreamStats decode_stream_stats(const std::string& payload) {
    constexpr size_t kFields = 7;
    if (payload.size() != kFields * sizeof(uint64_t))
        throw protocol_error("STATS payload of " + std::to_string(payload.size()) + " bytes");
    const auto* p = reinterpret_cast<const std::byte*>(payload.data());
    StreamStats s;
    uint64_t* fields[kFields] = {&s.accepted,         &s.active,        &s.bytes_up, &s.bytes_down,
                                 &s.connect_failures, &s.accept_errors, &s.denied};
    for (size_t i = 0; i < kFields; ++i) *fields[i] = get<uint64_t>(p + i * sizeof(uint64_t));
    return s;
}

namespace {
using D = DatagramStats;
constexpr DatagramField kDatagramFields[] = {
    {"flows_created", &D::flows_created},
    {"flows_active", &D::flows_active},
    {"flows_expired", &D::flows_expired},
    {"flows_evicted", &D::flows_evicted},
    {"datagrams_up", &D::datagrams_up},
    {"datagrams_down", &D::datagrams_down},
    {"bytes_up", &D::bytes_up},
    {"bytes_down", &D::bytes_down},
    {"denied", &D::denied},
    {"truncated", &D::truncated},
    {"refused", &D::refused},
    {"flow_errors", &D::flow_errors},
    {"send_errors", &D::send_errors},
};
static_assert(std::size(kDatagramFields) * sizeof(uint64_t) == kDatagramStatsSize);
}  // namespace

std::span<const DatagramField> datagram_fields() {
    return kDatagramFields;
}

std::string encode_stats(const DatagramStats& s) {
    std::string out;
    for (const auto& f : kDatagramFields) put<uint64_t>(out, s.*f.field);
    return out;
}

DatagramStats decode_datagram_stats(const std::string& payload) {
    if (payload.size() != kDatagramStatsSize)
        throw protocol_error("STATS payload of " + std::to_string(payload.size()) + " bytes");
    const auto* p = reinterpret_cast<const std::byte*>(payload.data());
    DatagramStats s;
    for (size_t i = 0; i < std::size(kDatagramFields); ++i)
        s.*kDatagramFields[i].field = get<uint64_t>(p + i * sizeof(uint64_t));
    return s;
}

namespace {
using P = PacketStats;
constexpr PacketField kPacketFields[] = {
    {"streams", &P::streams},
    {"streams_active", &P::streams_active},
    {"reconnects", &P::reconnects},
    {"connect_failures", &P::connect_failures},
    {"stream_errors", &P::stream_errors},
    {"packets_in", &P::packets_in},
    {"bytes_in", &P::bytes_in},
    {"packets_out", &P::packets_out},
    {"bytes_out", &P::bytes_out},
    {"verdicts_drop", &P::verdicts_drop},
    {"verdicts_accept", &P::verdicts_accept},
    {"dropped_stream_down", &P::dropped_stream_down},
    {"dropped_malformed", &P::dropped_malformed},
    {"dropped_destination", &P::dropped_destination},
    {"dropped_source", &P::dropped_source},
    {"dropped_reserved", &P::dropped_reserved},
    {"dropped_port", &P::dropped_port},
    {"send_errors", &P::send_errors},
    {"queue_overruns", &P::queue_overruns},
    {"packets_cut", &P::packets_cut},
};
static_assert(std::size(kPacketFields) * sizeof(uint64_t) == kPacketStatsSize);
}  // namespace

std::span<const PacketField> packet_fields() {
    return kPacketFields;
}

std::string encode_stats(const PacketStats& s) {
    std::string out;
    for (const auto& f : kPacketFields) put<uint64_t>(out, s.*f.field);
    return out;
}

PacketStats decode_packet_stats(const std::string& payload) {
    if (payload.size() != kPacketStatsSize)
        throw protocol_error("STATS payload of " + std::to_string(payload.size()) + " bytes");
    const auto* p = reinterpret_cast<const std::byte*>(payload.data());
    PacketStats s;
    for (size_t i = 0; i < std::size(kPacketFields); ++i)
        s.*kPacketFields[i].field = get<uint64_t>(p + i * sizeof(uint64_t));
    return s;
}

namespace {
using T = TunnelStats;
constexpr TunnelField kTunnelFields[] = {
    {"sessions", &T::sessions},
    {"sessions_active", &T::sessions_active},
    {"handshake_failures", &T::handshake_failures},
    {"connect_failures", &T::connect_failures},
    {"denied", &T::denied},
    {"accept_errors", &T::accept_errors},
    {"bytes_up", &T::bytes_up},
    {"bytes_down", &T::bytes_down},
    {"datagrams_in", &T::datagrams_in},
    {"datagrams_out", &T::datagrams_out},
    {"send_errors", &T::send_errors},
    {"retransmits", &T::retransmits},
    {"dropped_malformed", &T::dropped_malformed},
    {"dropped_rate_limited", &T::dropped_rate_limited},
    {"dropped_handshake", &T::dropped_handshake},
    {"dropped_full", &T::dropped_full},
    {"dropped_stale_duplicate", &T::dropped_stale_duplicate},
    {"dropped_unknown", &T::dropped_unknown},
    {"dropped_refused", &T::dropped_refused},
};
static_assert(std::size(kTunnelFields) * sizeof(uint64_t) == kTunnelStatsSize);
}  // namespace

std::span<const TunnelField> tunnel_fields() {
    return kTunnelFields;
}

std::string encode_stats(const TunnelStats& s) {
    std::string out;
    for (const auto& f : kTunnelFields) put<uint64_t>(out, s.*f.field);
    return out;
}

TunnelStats decode_tunnel_stats(const std::string& payload) {
    if (payload.size() != kTunnelStatsSize)
        throw protocol_error("STATS payload of " + std::to_string(payload.size()) + " bytes");
    const auto* p = reinterpret_cast<const std::byte*>(payload.data());
    TunnelStats s;
    for (size_t i = 0; i < std::size(kTunnelFields); ++i)
        s.*kTunnelFields[i].field = get<uint64_t>(p + i * sizeof(uint64_t));
    return s;
}

}  // namespace pfp::ipc
