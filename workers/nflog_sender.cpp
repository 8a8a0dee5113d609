// The nflog-to-stream body (declared in worker_body.hpp): reads the packets the kernel copies to
// the nflog group the supervisor bound (iptables `-j NFLOG --nflog-group N`, copy-packet mode) and
// writes each to one stream to the upstream, unframed (docs/wire-formats.md, "Raw packet stream").
// NFLOG gives no verdict: the rule after it (a DROP) decides the packet, so this reader only
// reads. A packet that cannot be written is counted as dropped_stream_down and is gone. Unlike
// nfqueue, nflog hands packets over as OUTPUT saw them: TCP/UDP checksums are filled in here, and
// a GSO packet comes as one (up to 64 KiB), so the injecting side's route needs that MTU or the
// sender's device must not segment late (docs/policy.md, nflog).
//
// It keeps no capability: the group was bound by the supervisor, receiving needs none, and the
// kernel refuses (EPERM) any nfnetlink message it sends, so it cannot rebind, unbind or reach
// another netfilter subsystem with this socket. The stream (packet_stream.cpp) never reads what the
// peer sends, and reconnects with backoff while the group keeps draining.
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/l4_checksum.hpp"
#include "common/log.hpp"
#include "workers/packet_stream.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {
namespace {

// The kernel batches several packets into one skb of up to nlbufsiz (the supervisor sets it);
// a buffer smaller than that would truncate the batch (MSG_TRUNC).
constexpr size_t kRecvBuffer = 256u << 10;
constexpr int kReadsPerWakeup = 64;

class NflogSender final : public WorkerBody {
  public:
    NflogSender(const Handover& h, const PacketOptions& o, unique_fd group, EventLoop& loop)
        : loop_(loop),
          tag_(h.tag()),
          group_(std::move(group)),
          group_num_(parse_endpoint(h.fds.at(0).endpoint).queue),
          stream_(loop, h.tag(), o, "nflog group " + std::to_string(group_num_), "are dropped"),
          recv_(kRecvBuffer) {
        // The supervisor configured it blocking (it waited for the kernel's ACKs).
        const int fl = ::fcntl(group_.get(), F_GETFL);
        if (fl < 0 || ::fcntl(group_.get(), F_SETFL, fl | O_NONBLOCK) < 0)
            throw std::runtime_error("fcntl(nflog, O_NONBLOCK): " +
                                     std::string(std::strerror(errno)));
    }

    void start() override {
        if (!loop_.add(group_.get(), EPOLLIN, &group_watch_))
            throw std::runtime_error("epoll_ctl(nflog): " + std::string(std::strerror(errno)));
        reading_ = true;
        stream_.start();
    }

    void stop_accepting() override {
        stream_.stop_connecting();
        if (reading_) loop_.remove(group_.get());
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
        explicit Watch(NflogSender* s) : self(s) {}
        NflogSender* self;
        void on_event(uint32_t) override { self->on_group(); }
    };

    void on_group() {
        for (int i = 0; i < kReadsPerWakeup; ++i) {
            const ssize_t n = ::recv(group_.get(), recv_.data(), recv_.size(), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                // ENOBUFS: the socket overflowed and the kernel dropped what it could not
                // deliver. Counted; reading goes on.
                if (errno == ENOBUFS) {
                    stream_.stats().queue_overruns++;
                } else if (!read_error_logged_) {
                    read_error_logged_ = true;
                    log::warning(tag_, ": reading nflog group ", group_num_,
                                 " failed: ", std::strerror(errno));
                }
                continue;
            }
            mnl_cb_run(recv_.data(), static_cast<size_t>(n), 0, 0, &NflogSender::on_message, this);
        }
        stream_.flush();
    }

    static int on_attr(const nlattr* a, void* data) {
        auto** tb = static_cast<const nlattr**>(data);
        const uint16_t type = mnl_attr_get_type(a);
        if (mnl_attr_type_valid(a, NFULA_MAX) > 0) tb[type] = a;
        return MNL_CB_OK;
    }

    // One NFULNL_MSG_PACKET per logged packet (several per read when the kernel batched them).
    static int on_message(const nlmsghdr* nlh, void* data) {
        auto* self = static_cast<NflogSender*>(data);
        if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_ULOG ||
            NFNL_MSG_TYPE(nlh->nlmsg_type) != NFULNL_MSG_PACKET)
            return MNL_CB_OK;
        const nlattr* tb[NFULA_MAX + 1] = {};
        if (mnl_attr_parse(nlh, sizeof(nfgenmsg), &NflogSender::on_attr, tb) < 0) return MNL_CB_OK;
        uint8_t* payload = nullptr;
        size_t len = 0;
        if (tb[NFULA_PAYLOAD]) {
            // In recv_, which this body owns: the checksum is filled in where the packet lies.
            payload = static_cast<uint8_t*>(mnl_attr_get_payload(tb[NFULA_PAYLOAD]));
            len = mnl_attr_get_payload_len(tb[NFULA_PAYLOAD]);
            // NFLOG copies what OUTPUT sees: with checksum offload, a TCP or UDP checksum that
            // holds only the pseudo-header's sum. The kernel that injects it will not finish it.
            fill_l4_checksum({payload, len});
        }
        self->stream_.forward(payload, len);
        return MNL_CB_OK;
    }

    EventLoop& loop_;
    std::string tag_;
    unique_fd group_;
    uint16_t group_num_;
    PacketStream stream_;
    std::vector<uint8_t> recv_;
    bool reading_ = false, read_error_logged_ = false;
    Watch group_watch_{this};
};

}  // namespace

std::unique_ptr<WorkerBody> make_nflog_sender(const Handover& h, const PacketOptions& options,
                                              std::vector<unique_fd> fds, EventLoop& loop) {
    if (fds.size() != 1) throw std::runtime_error("nflog-to-stream takes one nflog fd");
    return std::make_unique<NflogSender>(h, options, std::move(fds.at(0)), loop);
}

}  // namespace pfp::worker
