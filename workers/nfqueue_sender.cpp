// The nfqueue-to-stream body (declared in worker_body.hpp): reads whole packets from the nfqueue
// the supervisor bound (copy-packet mode), writes each to one stream to the upstream, unframed
// (docs/wire-formats.md, "Raw packet stream"), and then gives it NF_DROP: the packet goes on
// through the stream instead. Every packet gets a verdict, also when the stream is down
// (`on_stream_down`: NF_DROP, or NF_ACCEPT to let it through here); nothing stays queued then.
// A stream that is up but slow makes it stop reading until the stream has room: the kernel holds
// the packets meanwhile (up to queue_maxlen). Verdicts go out in batches (one
// NFQNL_MSG_VERDICT_BATCH per run of equal verdicts).
//
// This process keeps CAP_NET_ADMIN, which verdicts need, so it parses nothing the peer sends: the
// stream (packet_stream.cpp) shuts its read side down right after connect, and the only input it
// reads is netlink messages from the kernel. The stream reconnects with backoff while the queue
// keeps draining.
#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "workers/packet_stream.hpp"
#include "workers/worker_body.hpp"

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

namespace pfp::worker {
namespace {

constexpr size_t kRecvBuffer = 0xffff + 4096;  // one copied packet and its attributes
constexpr int kPacketsPerWakeup = 256;

class NfqueueSender final : public WorkerBody {
  public:
    NfqueueSender(const Handover& h, const PacketOptions& o, unique_fd queue, EventLoop& loop)
        : loop_(loop),
          tag_(h.tag()),
          accept_when_down_(o.accept_when_stream_down),
          queue_(std::move(queue)),
          queue_num_(parse_endpoint(h.fds.at(0).endpoint).queue),
          stream_(loop, h.tag(), o, "nfqueue " + std::to_string(queue_num_),
                  o.accept_when_stream_down ? "get NF_ACCEPT" : "get NF_DROP"),
          recv_(kRecvBuffer),
          verdict_buf_(MNL_SOCKET_BUFFER_SIZE) {
        // The supervisor configured it blocking (it waited for the kernel's ACKs).
        const int fl = ::fcntl(queue_.get(), F_GETFL);
        if (fl < 0 || ::fcntl(queue_.get(), F_SETFL, fl | O_NONBLOCK) < 0)
            throw std::runtime_error("fcntl(nfqueue, O_NONBLOCK): " +
                                     std::string(std::strerror(errno)));
        stream_.when_room([this] { resume_reading(); });
    }

    void start() override {
        if (!loop_.add(queue_.get(), EPOLLIN, &queue_watch_))
            throw std::runtime_error("epoll_ctl(nfqueue): " + std::string(std::strerror(errno)));
        reading_ = true;
        stream_.start();
    }

    void stop_accepting() override {
        stream_.stop_connecting();
        if (reading_) loop_.remove(queue_.get());
        reading_ = false;
    }

    // While draining: done once the queued stream bytes are out (or the stream is gone).
    size_t active() const override { return stream_.up() && stream_.has_pending() ? 1 : 0; }

    std::string encoded_stats() const override { return ipc::encode_stats(stream_.snapshot()); }

    std::optional<Clock::time_point> tick(Clock::time_point now) override {
        return stream_.tick(now);
    }

  private:
    struct Watch final : EventSource {
        explicit Watch(NfqueueSender* s) : self(s) {}
        NfqueueSender* self;
        void on_event(uint32_t events) override { self->on_queue(events); }
    };

    // A slow stream peer: packets wait in the kernel's queue (up to queue_maxlen; beyond it the
    // kernel drops them, or accepts them with fail_open) instead of being refused here, so the
    // tunnel's TCP flows see a queue, not loss. Reading resumes when the stream has room.
    void pause_reading() {
        if (paused_ || !reading_) return;
        if (loop_.modify(queue_.get(), 0, &queue_watch_)) paused_ = true;
    }
    void resume_reading() {
        if (!paused_ || !reading_) return;
        if (loop_.modify(queue_.get(), EPOLLIN, &queue_watch_)) paused_ = false;
    }

    void on_queue(uint32_t) {
        ipc::PacketStats& stats = stream_.stats();
        for (int i = 0; i < kPacketsPerWakeup; ++i) {
            if (stream_.congested()) {
                pause_reading();
                break;
            }
            const ssize_t n = ::recv(queue_.get(), recv_.data(), recv_.size(), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                // ENOBUFS: the socket overflowed and the kernel dropped (or, fail_open, accepted)
                // packets it could not deliver. Counted; reading goes on.
                if (errno == ENOBUFS) stats.queue_overruns++;
                if (errno != ENOBUFS)
                    log::warning(tag_, ": reading nfqueue ", queue_num_,
                                 " failed: ", std::strerror(errno));
                continue;
            }
            // An NLMSG_ERROR here answers a verdict (EPERM: CAP_NET_ADMIN was missing when the
            // socket was opened or now); the packets it named stay queued.
            if (mnl_cb_run(recv_.data(), static_cast<size_t>(n), 0, 0, &NfqueueSender::on_message,
                           this) == MNL_CB_ERROR &&
                !verdict_error_logged_) {
                verdict_error_logged_ = true;
                log::error(tag_, ": the kernel refused a verdict on nfqueue ", queue_num_, ": ",
                           std::strerror(errno));
            }
        }
        stream_.flush();  // the packets first, then their verdicts
        flush_verdicts();
    }

    static int on_message(const nlmsghdr* nlh, void* data) {
        auto* self = static_cast<NfqueueSender*>(data);
        nlattr* attr[NFQA_MAX + 1] = {};
        if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) return MNL_CB_OK;
        const auto* ph =
            static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
        const uint32_t id = ntohl(ph->packet_id);
        const uint8_t* payload = nullptr;
        size_t len = 0;
        if (attr[NFQA_PAYLOAD]) {
            payload = static_cast<const uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD]));
            len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
        }
        self->verdict(id, self->stream_.forward(payload, len) ? NF_DROP : self->down_verdict());
        return MNL_CB_OK;
    }

    int down_verdict() const { return accept_when_down_ ? NF_ACCEPT : NF_DROP; }

    void verdict(uint32_t id, int v) {
        ipc::PacketStats& stats = stream_.stats();
        (v == NF_ACCEPT ? stats.verdicts_accept : stats.verdicts_drop)++;
        if (batch_count_ > 0 && v != batch_verdict_) flush_verdicts();
        batch_verdict_ = v;
        batch_max_id_ = batch_count_ > 0 ? std::max(batch_max_id_, id) : id;
        ++batch_count_;
    }

    // One message gives every packet up to batch_max_id_ (all ours, in order) the same verdict.
    void flush_verdicts() {
        if (batch_count_ == 0) return;
        nlmsghdr* nlh = nfq_nlmsg_put(verdict_buf_.data(), NFQNL_MSG_VERDICT_BATCH, queue_num_);
        nfq_nlmsg_verdict_put(nlh, static_cast<int>(batch_max_id_), batch_verdict_);
        if (::send(queue_.get(), nlh, nlh->nlmsg_len, 0) < 0 && !verdict_error_logged_) {
            verdict_error_logged_ = true;  // EPERM: CAP_NET_ADMIN is missing; the kernel decides
            log::error(tag_, ": verdict on nfqueue ", queue_num_,
                       " failed: ", std::strerror(errno));
        }
        batch_count_ = 0;
    }

    EventLoop& loop_;
    std::string tag_;
    bool accept_when_down_;
    unique_fd queue_;
    uint16_t queue_num_;
    PacketStream stream_;
    std::vector<uint8_t> recv_;
    std::vector<char> verdict_buf_;
    bool reading_ = false, paused_ = false, verdict_error_logged_ = false;
    int batch_verdict_ = NF_DROP;
    uint32_t batch_max_id_ = 0;
    size_t batch_count_ = 0;
    Watch queue_watch_{this};
};

}  // namespace

std::unique_ptr<WorkerBody> make_nfqueue_sender(const Handover& h, const PacketOptions& options,
                                                std::vector<unique_fd> fds, EventLoop& loop) {
    if (fds.size() != 1) throw std::runtime_error("nfqueue-to-stream takes one nfqueue fd");
    return std::make_unique<NfqueueSender>(h, options, std::move(fds.at(0)), loop);
}

}  // namespace pfp::worker
