// The nfqueue-to-stream body (declared in worker_body.hpp): reads whole packets from the nfqueue
// the supervisor bound (copy-packet mode), writes each to one stream to the upstream, unframed
// (docs/wire-formats.md, "Raw packet stream"), and then gives it NF_DROP: the packet goes on
// through the stream instead. Every packet gets a verdict, also when the stream is down or full
// (`on_stream_down`: NF_DROP, or NF_ACCEPT to let it through here); nothing stays queued. Verdicts
// go out in batches (one NFQNL_MSG_VERDICT_BATCH per run of equal verdicts).
//
// This process keeps CAP_NET_ADMIN, which verdicts need, so it parses nothing the peer sends: the
// stream's read side is shut down right after connect, and the only input it reads is netlink
// messages from the kernel. The stream reconnects with backoff while the queue keeps draining.
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

#include "common/endpoint.hpp"
#include "common/log.hpp"
#include "common/socket_util.hpp"
#include "workers/worker_body.hpp"

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

namespace pfp::worker {
namespace {

constexpr size_t kRecvBuffer = 0xffff + 4096;  // one copied packet and its attributes
constexpr size_t kMaxPending = 4u << 20;       // stream bytes held while the peer is slow
constexpr int kPacketsPerWakeup = 256;

class NfqueueSender final : public WorkerBody {
  public:
    NfqueueSender(const Handover& h, const PacketOptions& o, unique_fd queue, EventLoop& loop)
        : loop_(loop),
          tag_(h.tag()),
          opts_(o),
          upstream_(parse_endpoint(o.upstream)),
          queue_(std::move(queue)),
          queue_num_(parse_endpoint(h.fds.at(0).endpoint).queue),
          recv_(kRecvBuffer),
          verdict_buf_(MNL_SOCKET_BUFFER_SIZE),
          backoff_(o.backoff_initial) {
        if (upstream_.scheme != Scheme::vsock && upstream_.scheme != Scheme::unix_stream &&
            upstream_.scheme != Scheme::tcp)
            throw std::runtime_error(
                "nfqueue-to-stream connects to a vsock:, unix: or tcp: upstream, not " +
                o.upstream);
        // The supervisor configured it blocking (it waited for the kernel's ACKs).
        const int fl = ::fcntl(queue_.get(), F_GETFL);
        if (fl < 0 || ::fcntl(queue_.get(), F_SETFL, fl | O_NONBLOCK) < 0)
            throw std::runtime_error("fcntl(nfqueue, O_NONBLOCK): " +
                                     std::string(std::strerror(errno)));
        pending_.reserve(kMaxPending);
    }

    void start() override {
        if (!loop_.add(queue_.get(), EPOLLIN, &queue_watch_))
            throw std::runtime_error("epoll_ctl(nfqueue): " + std::string(std::strerror(errno)));
        reading_ = true;
        connect_now(Clock::now());
    }

    void stop_accepting() override {
        draining_ = true;
        if (reading_) loop_.remove(queue_.get());
        reading_ = false;
    }

    // While draining: done once the queued stream bytes are out (or the stream is gone).
    size_t active() const override { return state_ == State::up && !pending_.empty() ? 1 : 0; }

    std::string encoded_stats() const override {
        ipc::PacketStats s = stats_;
        s.streams_active = state_ == State::up ? 1 : 0;
        return ipc::encode_stats(s);
    }

    std::optional<Clock::time_point> tick(Clock::time_point now) override {
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

  private:
    enum class State { waiting, connecting, up };

    struct Watch final : EventSource {
        Watch(NfqueueSender* s, void (NfqueueSender::*h)(uint32_t)) : self(s), handler(h) {}
        NfqueueSender* self;
        void (NfqueueSender::*handler)(uint32_t);
        void on_event(uint32_t events) override { (self->*handler)(events); }
    };

    // ---- the queue -----------------------------------------------------------------------------

    void on_queue(uint32_t) {
        for (int i = 0; i < kPacketsPerWakeup; ++i) {
            const ssize_t n = ::recv(queue_.get(), recv_.data(), recv_.size(), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                // ENOBUFS: the socket overflowed and the kernel dropped (or, fail_open, accepted)
                // packets it could not deliver. Counted; reading goes on.
                if (errno == ENOBUFS) stats_.queue_overruns++;
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
        flush_stream();  // the packets first, then their verdicts
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
        self->verdict(id, self->forward(payload, len) ? NF_DROP : self->down_verdict());
        return MNL_CB_OK;
    }

    int down_verdict() const { return opts_.accept_when_stream_down ? NF_ACCEPT : NF_DROP; }

    // True when the packet is on its way through the stream (written or queued behind it).
    bool forward(const uint8_t* p, size_t len) {
        // A truncated copy (longer than the copy range) would desynchronise the peer's framing.
        stats_.packets_in++;
        stats_.bytes_in += len;
        if (state_ != State::up || len == 0 || pending_.size() + len > kMaxPending) {
            stats_.dropped_stream_down++;
            return false;
        }
        pending_.insert(pending_.end(), p, p + len);
        stats_.packets_out++;
        return true;
    }

    void verdict(uint32_t id, int v) {
        (v == NF_ACCEPT ? stats_.verdicts_accept : stats_.verdicts_drop)++;
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

    // ---- the stream ----------------------------------------------------------------------------

    void connect_now(Clock::time_point now) {
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
        loop_.add(stream_.get(), EPOLLOUT, &stream_watch_);
    }

    void connected() {
        // Never read: whatever the peer sends is discarded by the kernel from now on.
        ::shutdown(stream_.get(), SHUT_RD);
        if (state_ != State::connecting) loop_.add(stream_.get(), 0, &stream_watch_);
        state_ = State::up;
        stats_.streams++;
        if (failures_ > 0) stats_.reconnects++;
        log::info(tag_, ": stream to ", opts_.upstream, " connected",
                  failures_ ? " after " + std::to_string(failures_) + " failed attempts" : "",
                  "; packets of nfqueue ", queue_num_, " go through it");
        failures_ = 0;
        backoff_ = opts_.backoff_initial;
        watch_stream();
    }

    void watch_stream() {
        loop_.modify(stream_.get(), pending_.empty() ? 0u : uint32_t{EPOLLOUT}, &stream_watch_);
    }

    void on_stream(uint32_t events) {
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
        flush_stream();
    }

    void flush_stream() {
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
    }

    // The stream is gone or never came: packets get on_stream_down's verdict until it is back.
    // Bytes of packets already given NF_DROP that were still queued here are lost with it (a
    // partial packet must never start the next stream).
    void lost(const std::string& why, Clock::time_point now) {
        const bool was_up = state_ == State::up;
        if (stream_) {
            loop_.remove(stream_.get());
            stream_.reset();
        }
        pending_.clear();
        if (!was_up) stats_.connect_failures++;
        if (was_up) stats_.stream_errors++;
        ++failures_;
        state_ = State::waiting;
        retry_at_ = now + backoff_;
        const char* verdict = opts_.accept_when_stream_down ? "NF_ACCEPT" : "NF_DROP";
        if (was_up || failures_ == 1 || log_every_failure())
            log::warning(tag_, ": stream to ", opts_.upstream,
                         was_up ? " lost: " : " failed: ", why, "; packets get ", verdict,
                         " until it is back; reconnecting in ", backoff_.count(), " ms");
        backoff_ = std::min(backoff_ * 2, opts_.backoff_max);
    }

    // At the backoff's ceiling every attempt is a minute apart: log each; before, only the first.
    bool log_every_failure() const { return backoff_ >= opts_.backoff_max; }

    EventLoop& loop_;
    std::string tag_;
    PacketOptions opts_;
    Endpoint upstream_;
    unique_fd queue_, stream_;
    uint16_t queue_num_;
    std::vector<uint8_t> recv_, pending_;
    std::vector<char> verdict_buf_;
    State state_ = State::waiting;
    bool reading_ = false, draining_ = false, verdict_error_logged_ = false;
    Clock::time_point retry_at_{}, connect_deadline_{};
    std::chrono::milliseconds backoff_;
    uint64_t failures_ = 0;
    int batch_verdict_ = NF_DROP;
    uint32_t batch_max_id_ = 0;
    size_t batch_count_ = 0;
    ipc::PacketStats stats_;
    Watch queue_watch_{this, &NfqueueSender::on_queue};
    Watch stream_watch_{this, &NfqueueSender::on_stream};
};

}  // namespace

std::unique_ptr<WorkerBody> make_nfqueue_sender(const Handover& h, const PacketOptions& options,
                                                std::vector<unique_fd> fds, EventLoop& loop) {
    if (fds.size() != 1) throw std::runtime_error("nfqueue-to-stream takes one nfqueue fd");
    return std::make_unique<NfqueueSender>(h, options, std::move(fds.at(0)), loop);
}

}  // namespace pfp::worker
