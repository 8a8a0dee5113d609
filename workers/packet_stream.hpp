#pragma once
// The stream half of the kernel-to-stream packet readers (nfqueue_sender.cpp, nflog_sender.cpp):
// one outbound stream to the fixed upstream that packets are written to, unframed (each carries
// its own IP header: docs/wire-formats.md, "Raw packet stream"). It connects with a 4 s cap (the
// policy's connect_timeout), reconnects after a failure or loss with backoff (1 s doubling to
// 64 s by default) while the reader keeps draining its socket, and holds at most 4 MiB of
// written-but-unsent bytes. The read side is shut down right after connect: nothing the peer sends
// is ever read. Counts streams, reconnects, failures and the packets it took or refused.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint.hpp"
#include "common/event_loop.hpp"
#include "common/handover.hpp"
#include "common/ipc.hpp"
#include "common/packet_framer.hpp"
#include "common/unique_fd.hpp"

namespace pfp::worker {

class PacketStream {
  public:
    // `source` names the reader in log lines ("nfqueue 3"); `down_fate` says what happens to a
    // packet while the stream is down ("get NF_DROP"). Throws for an upstream that is not vsock:,
    // unix: or tcp:.
    PacketStream(EventLoop& loop, std::string tag, const PacketOptions& options, std::string source,
                 std::string down_fate);
    PacketStream(const PacketStream&) = delete;
    PacketStream& operator=(const PacketStream&) = delete;

    void start() { connect_now(Clock::now()); }
    void stop_connecting() { draining_ = true; }  // no reconnect after this
    bool up() const { return state_ == State::up; }
    bool has_pending() const { return !pending_.empty(); }
    // Up, with so much written but unsent that a reader that can make the kernel hold packets
    // (nfqueue) should stop reading; `room` is called whenever it has room again (below a
    // quarter of that, or the stream is gone and packets meet their down fate instead).
    bool congested() const;
    void when_room(std::function<void()> room) { room_ = std::move(room); }

    // Counts one packet read from the kernel; true when it is on its way (written or queued
    // behind what is), false when the stream is down or full (dropped_stream_down) or the bytes
    // are not exactly one IP packet by its own header (dropped_malformed: a truncated copy).
    bool forward(const uint8_t* p, size_t len);
    // Writes what forward() queued, as far as the socket takes it; the rest waits for EPOLLOUT.
    void flush();
    // Due connects and connect timeouts; the next deadline.
    std::optional<Clock::time_point> tick(Clock::time_point now);

    ipc::PacketStats& stats() { return stats_; }
    ipc::PacketStats snapshot() const;  // stats with streams_active filled in

  private:
    enum class State { waiting, connecting, up };

    struct Watch final : EventSource {
        explicit Watch(PacketStream* s) : self(s) {}
        PacketStream* self;
        void on_event(uint32_t events) override { self->on_stream(events); }
    };

    void malformed(size_t len, const PacketHeaderCheck& head);
    void connect_now(Clock::time_point now);
    void connected();
    void watch_stream();
    void on_stream(uint32_t events);
    void lost(const std::string& why, Clock::time_point now);
    // At the backoff's ceiling every attempt is a minute apart: log each; before, only the first.
    bool log_every_failure() const { return backoff_ >= opts_.backoff_max; }

    EventLoop& loop_;
    std::string tag_, source_, down_fate_;
    PacketOptions opts_;
    Endpoint upstream_;
    unique_fd stream_;
    std::vector<uint8_t> pending_;
    std::function<void()> room_;
    State state_ = State::waiting;
    bool draining_ = false, malformed_logged_ = false;
    Clock::time_point retry_at_{}, connect_deadline_{};
    std::chrono::milliseconds backoff_;
    uint64_t failures_ = 0;
    ipc::PacketStats stats_;
    Watch watch_{this};
};

}  // namespace pfp::worker
