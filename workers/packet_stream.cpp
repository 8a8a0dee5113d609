#include "workers/packet_stream.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"
#include "common/packet_framer.hpp"

namespace pfp::worker {
namespace {

constexpr size_t kMaxPending = 4u << 20;  // stream bytes held while the peer is slow
// A reader that can pause stops at this much (far enough below kMaxPending that what one more
// read brings still fits: 32 copied packets of up to 64 KiB), and resumes below a quarter of it.
constexpr size_t kCongested = 1u << 20;

}  // namespace

PacketStream::PacketStream(EventLoop& loop, std::string tag, const PacketOptions& options,
                           std::string source, std::string down_fate)
    : loop_(loop),
      tag_(std::move(tag)),
      source_(std::move(source)),
      down_fate_(std::move(down_fate)),
      opts_(options),
      upstream_(parse_endpoint(options.upstream)),
      backoff_(options.backoff_initial) {
    if (upstream_.scheme != Scheme::vsock && upstream_.scheme != Scheme::unix_stream &&
        upstream_.scheme != Scheme::tcp)
        throw std::runtime_error(
            "a packet reader connects to a vsock:, unix: or tcp: upstream, "
            "not " +
            options.upstream);
    pending_.reserve(kMaxPending);
}

ipc::PacketStats PacketStream::snapshot() const {
    ipc::PacketStats s = stats_;
    s.streams_active = state_ == State::up ? 1 : 0;
    return s;
}

bool PacketStream::congested() const {
    return state_ == State::up && pending_.size() >= kCongested;
}

bool PacketStream::forward(const uint8_t* p, size_t len) {
    stats_.packets_in++;
    stats_.bytes_in += len;
    // A copy its own header does not frame exactly (truncated by a copy range, or not IP) would
    // desynchronise the peer's framing: never written.
    const PacketHeaderCheck head = check_packet_header({p, len});
    if (len == 0 || head.status != PacketHeaderCheck::Status::length_known || head.length != len) {
        stats_.dropped_malformed++;
        malformed(len, head);
        return false;
    }
    if (state_ != State::up || pending_.size() + len > kMaxPending) {
        stats_.dropped_stream_down++;
        return false;
    }
    pending_.insert(pending_.end(), p, p + len);
    stats_.packets_out++;
    return true;
}

// Silent drops stalled TCP through the tunnel (a packet above the copy limit is retransmitted the
// same size, and dropped again, until the sender gives up): the first is logged with its cause.
void PacketStream::malformed(size_t len, const PacketHeaderCheck& head) {
    if (malformed_logged_) return;
    malformed_logged_ = true;
    if (head.status == PacketHeaderCheck::Status::length_known && head.length > len) {
        log::warning(tag_, ": ", source_, " copied a packet of ", head.length, " bytes as ", len,
                     ": dropped, since a truncated packet cannot go on the stream (the kernel "
                     "copies at most 65531 bytes of a queued packet; keep the MTU of the devices "
                     "whose packets are queued at or below that); later ones are only counted "
                     "(dropped: malformed)");
        return;
    }
    log::warning(tag_, ": ", source_, " gave ", len,
                 " bytes that are not exactly one IP packet by their own header: dropped; later "
                 "ones are only counted (dropped: malformed)");
}

std::optional<Clock::time_point> PacketStream::tick(Clock::time_point now) {
    if (state_ == State::waiting && !draining_) {
        if (now >= retry_at_) connect_now(now);
    } else if (state_ == State::connecting && now >= connect_deadline_) {
        lost("connect timed out after " + std::to_string(opts_.connect_timeout.count()) + " ms",
             now);
    }
    if (state_ == State::waiting && !draining_) return retry_at_;
    if (state_ == State::connecting) return connect_deadline_;
    return std::nullopt;
}

void PacketStream::connect_now(Clock::time_point now) {
    stream_.reset(::socket(upstream_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!stream_) {
        lost(std::string("socket: ") + std::strerror(errno), now);
        return;
    }
    if (::connect(stream_.get(), upstream_.addr.get(), upstream_.addr.len) == 0) {
        connected();
        return;
    }
    if (errno != EINPROGRESS) {  // a unix listener with a full backlog says EAGAIN: failed
        lost(std::string("connect: ") + std::strerror(errno), now);
        return;
    }
    state_ = State::connecting;
    connect_deadline_ = now + opts_.connect_timeout;
    loop_.add(stream_.get(), EPOLLOUT, &watch_);
}

void PacketStream::connected() {
    // Never read: whatever the peer sends is discarded by the kernel from now on.
    ::shutdown(stream_.get(), SHUT_RD);
    if (state_ != State::connecting) loop_.add(stream_.get(), 0, &watch_);
    state_ = State::up;
    stats_.streams++;
    if (failures_ > 0) stats_.reconnects++;
    log::info(tag_, ": stream to ", opts_.upstream, " connected",
              failures_ ? " after " + std::to_string(failures_) + " failed attempts" : "",
              "; packets of ", source_, " go through it");
    failures_ = 0;
    backoff_ = opts_.backoff_initial;
    watch_stream();
}

void PacketStream::watch_stream() {
    loop_.modify(stream_.get(), pending_.empty() ? 0u : uint32_t{EPOLLOUT}, &watch_);
}

void PacketStream::on_stream(uint32_t events) {
    if (state_ == State::connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(stream_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err != 0) {
            lost(std::string("connect: ") + std::strerror(err), Clock::now());
            return;
        }
        connected();
        return;
    }
    if (events & (EPOLLERR | EPOLLHUP)) {
        lost("closed by the peer", Clock::now());
        return;
    }
    flush();
}

void PacketStream::flush() {
    if (state_ != State::up || pending_.empty()) return;
    size_t off = 0;
    while (off < pending_.size()) {
        const ssize_t n =
            ::send(stream_.get(), pending_.data() + off, pending_.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            const std::string why = std::strerror(errno);
            pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(off));
            lost(why, Clock::now());
            return;
        }
        off += static_cast<size_t>(n);
        stats_.bytes_out += static_cast<uint64_t>(n);
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(off));
    watch_stream();
    if (room_ && pending_.size() < kCongested / 4) room_();
}

// The stream is gone or never came: packets meet down_fate_ until it is back. Bytes of packets
// already passed on that were still queued here are lost with it (a partial packet must never
// start the next stream).
void PacketStream::lost(const std::string& why, Clock::time_point now) {
    const bool was_up = state_ == State::up;
    if (stream_) {
        loop_.remove(stream_.get());
        stream_.reset();
    }
    pending_.clear();
    if (room_) room_();
    if (!was_up) stats_.connect_failures++;
    if (was_up) stats_.stream_errors++;
    ++failures_;
    state_ = State::waiting;
    retry_at_ = now + backoff_;
    if (was_up || failures_ == 1 || log_every_failure())
        log::warning(tag_, ": stream to ", opts_.upstream, was_up ? " lost: " : " failed: ", why,
                     "; packets ", down_fate_, " until it is back; reconnecting in ",
                     backoff_.count(), " ms");
    backoff_ = std::min(backoff_ * 2, opts_.backoff_max);
}

}  // namespace pfp::worker
