#pragma once
// What the two kernel-to-stream readers (nfqueue_sender.cpp, nflog_sender.cpp) share: the netlink
// socket the supervisor bound (made non-blocking here) watched in the event loop, the stream half
// (packet_stream.hpp) the packets are written to, the reads of several netlink messages per
// system call (recvmmsg) and per wakeup with the kernel's overflow counted, and the worker body's
// calls (start, drain, counters, ticks). A reader adds only what it does with one netlink message
// (on_message) and after a wakeup's reads (after_reads).
#include <libmnl/libmnl.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "workers/packet_stream.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {

class PacketReader : public WorkerBody {
  public:
    // `source` names the socket in log lines ("nfqueue 3"); `down_fate` what happens to a packet
    // while the stream is down ("get NF_DROP"); message_size is one message's buffer (at least
    // the largest the kernel sends this socket), messages_per_read how many one recvmmsg takes,
    // messages_per_wakeup bounds one wakeup's work.
    PacketReader(const Handover& h, const PacketOptions& o, unique_fd sock, EventLoop& loop,
                 const std::string& source, const std::string& down_fate, size_t message_size,
                 unsigned messages_per_read, int messages_per_wakeup);

    void start() override;
    void stop_accepting() override;
    // While draining: done once the queued stream bytes are out (or the stream is gone).
    size_t active() const override { return stream_.up() && stream_.has_pending() ? 1 : 0; }
    std::string encoded_stats() const override { return ipc::encode_stats(stream_.snapshot()); }
    std::optional<Clock::time_point> tick(Clock::time_point now) override {
        return stream_.tick(now);
    }

  protected:
    // One netlink message the kernel sent (mnl_cb_run's callback contract); its bytes lie in a
    // buffer of this reader's own, which it may change (nflog fills in checksums there).
    virtual int on_message(const nlmsghdr* nlh) = 0;
    // After a wakeup's reads, once the stream has been written to (nfqueue: the verdicts).
    virtual void after_reads() {}
    // An NLMSG_ERROR among the messages read (nfqueue: the kernel refused a verdict).
    virtual void message_error() {}
    // Stop reading before the next message while the stream is congested (nfqueue: the kernel
    // holds the packets meanwhile); resumed when the stream has room again.
    void pause_when_congested() {
        pause_when_congested_ = true;
        stream_.when_room([this] { resume_reading(); });
    }

    const std::string& tag() const { return tag_; }
    int sock() const { return sock_.get(); }
    PacketStream& stream() { return stream_; }

  private:
    struct Watch final : EventSource {
        explicit Watch(PacketReader* s) : self(s) {}
        PacketReader* self;
        void on_event(uint32_t) override { self->on_readable(); }
    };

    void on_readable();
    void pause_reading();
    void resume_reading();
    static int dispatch(const nlmsghdr* nlh, void* data);

    EventLoop& loop_;
    std::string tag_, source_;
    unique_fd sock_;
    PacketStream stream_;
    size_t message_size_;
    std::vector<uint8_t> buffers_;  // messages_per_read slots of message_size_ bytes
    std::vector<iovec> iovs_;
    std::vector<mmsghdr> msgs_;
    int messages_per_wakeup_;
    bool reading_ = false, paused_ = false, pause_when_congested_ = false;
    bool read_error_logged_ = false;
    Watch watch_{this};
};

}  // namespace pfp::worker
