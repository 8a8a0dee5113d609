#include "common/kcp/server_sessions.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>

namespace pfp::kcp {

const char* to_string(DropReason r) noexcept {
    switch (r) {
        case DropReason::malformed:
            return "malformed";
        case DropReason::rate_limited:
            return "handshake rate limit";
        case DropReason::handshake:
            return "handshake refused";
        case DropReason::full:
            return "session limit";
        case DropReason::stale_duplicate:
            return "duplicate handshake of an ended session";
        case DropReason::unknown:
            return "unknown conversation";
        case DropReason::refused:
            return "refused by the conversation";
    }
    return "?";
}

// Sends one session's datagrams to its source address.
struct ServerSessions::SlotSink final : DatagramSink {
    ServerOutput* out = nullptr;
    const SourceKey* source = nullptr;
    void send_datagram(std::span<const uint8_t> d) override {
        out->send_to({source->bytes.data(), source->len}, d);
    }
};

ServerSessions::ServerSessions(const ServerHandshakeConfig& handshake, const TunnelConfig& tunnel,
                               const ServerLimits& limits, uint32_t now_ms)
    : handshake_(handshake),
      security_(handshake.security),
      tunnel_(tunnel),
      limits_(limits),
      wheel_(limits.max_sessions, now_ms) {
    if (limits_.max_sessions == 0 || limits_.max_per_source == 0 || limits_.max_sources == 0 ||
        limits_.hellos_per_second == 0 || limits_.hello_burst == 0)
        throw std::invalid_argument("KCP server: every limit must be positive");
    slots_.resize(limits_.max_sessions);
    for (size_t i = limits_.max_sessions; i > 0; --i) free_.push_back(static_cast<Id>(i - 1));
}

ServerSessions::Dispatch ServerSessions::drop(DropReason r, HelloVerdict v) noexcept {
    ++dropped_[static_cast<size_t>(r)];
    Dispatch d;
    d.reason = r;
    d.verdict = v;
    return d;
}

void ServerSessions::refill(SourceState& s, uint32_t now_ms) const noexcept {
    const uint64_t cap = uint64_t{limits_.hello_burst} * 1000;
    const uint32_t elapsed = static_cast<uint32_t>(std::max(diff32(now_ms, s.refilled_at), 0));
    s.tokens_milli = std::min(cap, s.tokens_milli + uint64_t{elapsed} * limits_.hellos_per_second);
    s.refilled_at = now_ms;
}

bool ServerSessions::take_token(SourceState& s, uint32_t now_ms) noexcept {
    refill(s, now_ms);
    if (s.tokens_milli < 1000) return false;
    s.tokens_milli -= 1000;
    return true;
}

ServerSessions::SourceState* ServerSessions::source_state(const SourceKey& key, uint32_t now_ms) {
    if (const auto it = sources_.find(key); it != sources_.end()) return &it->second;
    if (sources_.size() >= limits_.max_sources) return nullptr;
    SourceState s;
    s.tokens_milli = uint64_t{limits_.hello_burst} * 1000;
    s.refilled_at = now_ms;
    return &sources_.emplace(key, s).first->second;
}

ServerSessions::Dispatch ServerSessions::on_datagram(std::span<const uint8_t> datagram,
                                                     std::span<const uint8_t> source,
                                                     uint32_t now_ms, uint64_t unix_seconds,
                                                     RandomSource& random, ServerOutput& out) {
    Type type{};
    if (peek_type(datagram, type) != WireError::none || type == Type::welcome ||
        source.size() > Source{}.size())
        return drop(DropReason::malformed);
    SourceKey key;
    std::copy(source.begin(), source.end(), key.bytes.begin());
    key.len = static_cast<uint8_t>(source.size());

    if (type != Type::hello) {
        SealedView v;
        if (parse_sealed(datagram, v) != WireError::none) return drop(DropReason::malformed);
        const auto it = by_conv_.find({key, v.conv});
        if (it == by_conv_.end()) return drop(DropReason::unknown);
        Slot& slot = *slots_[it->second];
        if (slot.session.on_datagram(datagram, now_ms) != ChannelError::none)
            return drop(DropReason::refused);
        Dispatch d;
        d.kind = Dispatch::Kind::delivered;
        d.id = it->second;
        return d;
    }

    SourceState* state = source_state(key, now_ms);
    if (state == nullptr) return drop(DropReason::full);
    if (!take_token(*state, now_ms)) return drop(DropReason::rate_limited);
    const HelloOutcome o = handshake_.on_hello(datagram, source, unix_seconds, random);
    if (o.verdict == HelloVerdict::duplicate) {
        const auto it = by_conv_.find({key, o.conv});
        if (it == by_conv_.end()) return drop(DropReason::stale_duplicate);
        out.send_to(source, o.answer);
        Dispatch d;
        d.kind = Dispatch::Kind::answered;
        d.id = it->second;
        return d;
    }
    if (o.verdict != HelloVerdict::accepted) return drop(DropReason::handshake, o.verdict);
    if (free_.empty() || state->sessions >= limits_.max_per_source ||
        by_conv_.contains({key, o.conv}))
        return drop(DropReason::full);
    const Id id = free_.back();
    slots_[id] = std::make_unique<Slot>(Slot{
        key, o.conv, TunnelSession(Role::server, o.conv, security_, o.secrets, tunnel_, now_ms)});
    free_.pop_back();
    by_conv_.emplace(std::pair{key, o.conv}, id);
    ++state->sessions;
    ++count_;
    out.send_to(source, o.answer);
    reschedule(id);
    Dispatch d;
    d.kind = Dispatch::Kind::opened;
    d.id = id;
    d.early_data = o.early_data;
    return d;
}

TunnelSession* ServerSessions::session(Id id) noexcept {
    return id < slots_.size() && slots_[id] ? &slots_[id]->session : nullptr;
}

void ServerSessions::reschedule(Id id) {
    if (TunnelSession* s = session(id)) wheel_.schedule(id, s->next_deadline());
}

void ServerSessions::tick(uint32_t now_ms, ServerOutput& out, std::vector<Id>& ended) {
    std::vector<Id> due;
    wheel_.expire(now_ms, due);
    for (const Id id : due) {
        Slot* slot = slots_[id].get();
        if (slot == nullptr) continue;
        SlotSink sink;
        sink.out = &out;
        sink.source = &slot->source;
        slot->session.flush(now_ms, sink);
        if (slot->session.state() == TunnelSession::State::open)
            wheel_.schedule(id, slot->session.next_deadline());
        else
            ended.push_back(id);
    }
}

void ServerSessions::remove(Id id) {
    if (id >= slots_.size() || !slots_[id]) return;
    const Slot& slot = *slots_[id];
    by_conv_.erase({slot.source, slot.conv});
    if (const auto it = sources_.find(slot.source); it != sources_.end() && it->second.sessions > 0)
        --it->second.sessions;
    wheel_.cancel(id);
    slots_[id].reset();
    free_.push_back(id);
    --count_;
}

void ServerSessions::expire_handshakes(uint64_t unix_seconds, uint32_t now_ms) {
    handshake_.expire(unix_seconds);
    // A source with no conversation and a full bucket carries no information any more.
    for (auto it = sources_.begin(); it != sources_.end();) {
        refill(it->second, now_ms);
        const bool idle = it->second.sessions == 0 &&
                          it->second.tokens_milli == uint64_t{limits_.hello_burst} * 1000;
        it = idle ? sources_.erase(it) : std::next(it);
    }
}

}  // namespace pfp::kcp
