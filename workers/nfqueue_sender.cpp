// The nfqueue-to-stream body (declared in worker_body.hpp): reads whole packets from the nfqueue
// the supervisor bound (copy-packet mode), writes each to one stream to the upstream, unframed
// (docs/wire-formats.md, "Raw packet stream"), and then gives it NF_DROP: the packet goes on
// through the stream instead. Every packet gets a verdict, also when the stream is down
// (`on_stream_down`: NF_DROP, or NF_ACCEPT to let it through here); nothing stays queued then.
// With `gso` the supervisor set NFQA_CFG_F_GSO: a GSO packet comes whole (up to 64 KiB, one
// message instead of dozens) and its offloaded checksum is finished here.
// A stream that is up but slow makes it stop reading until the stream has room: the kernel holds
// the packets meanwhile (up to queue_maxlen). Verdicts go out in batches (one
// NFQNL_MSG_VERDICT_BATCH per run of equal verdicts).
//
// This process keeps CAP_NET_ADMIN, which verdicts need, so it parses nothing the peer sends: the
// stream (packet_stream.cpp) shuts its read side down right after connect, and the only input it
// reads is netlink messages from the kernel. The stream reconnects with backoff while the queue
// keeps draining.
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/l4_checksum.hpp"
#include "common/log.hpp"
#include "common/tcp_segment.hpp"
#include "workers/packet_reader.hpp"
#include "workers/worker_body.hpp"

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

namespace pfp::worker {
namespace {

constexpr size_t kMessageSize = 0xffff + 4096;  // one copied packet and its attributes
constexpr unsigned kPacketsPerRead = 32;        // one recvmmsg: 2.2 MiB of buffers
constexpr int kPacketsPerWakeup = 256;

class NfqueueSender final : public PacketReader {
  public:
    NfqueueSender(const Handover& h, const PacketOptions& o, unique_fd queue, EventLoop& loop)
        : PacketReader(h, o, std::move(queue), loop,
                       "nfqueue " + std::to_string(parse_endpoint(h.fds.at(0).endpoint).queue),
                       o.accept_when_stream_down ? "get NF_ACCEPT" : "get NF_DROP", kMessageSize,
                       kPacketsPerRead, kPacketsPerWakeup),
          accept_when_down_(o.accept_when_stream_down),
          queue_num_(parse_endpoint(h.fds.at(0).endpoint).queue),
          verdict_buf_(MNL_SOCKET_BUFFER_SIZE) {
        pause_when_congested();
    }

  private:
    // An NLMSG_ERROR here answers a verdict (EPERM: CAP_NET_ADMIN was missing when the socket was
    // opened or now); the packets it named stay queued.
    void message_error() override {
        if (verdict_error_logged_) return;
        verdict_error_logged_ = true;
        log::error(tag(), ": the kernel refused a verdict on nfqueue ", queue_num_, ": ",
                   std::strerror(errno));
    }

    void after_reads() override { flush_verdicts(); }

    int on_message(const nlmsghdr* nlh) override {
        nlattr* attr[NFQA_MAX + 1] = {};
        if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) return MNL_CB_OK;
        const auto* ph =
            static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
        const uint32_t id = ntohl(ph->packet_id);
        uint8_t* payload = nullptr;
        size_t len = 0;
        const uint32_t info =
            attr[NFQA_SKB_INFO] ? ntohl(mnl_attr_get_u32(attr[NFQA_SKB_INFO])) : 0;
        if (attr[NFQA_PAYLOAD]) {
            // In the reader's own buffer: a checksum is filled in where the packet lies.
            payload = static_cast<uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD]));
            len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
            // Whole TCP packets are TCP's own segments merged: the byte stream is the same. Any
            // other GSO packet (a UDP_SEGMENT send) would arrive as one datagram instead of the
            // sender's many, and nfqueue does not say where they were cut.
            if ((info & NFQA_SKB_GSO) && !carries_tcp({payload, len})) {
                drop_whole_gso(len);
                verdict(id, down_verdict());
                return MNL_CB_OK;
            }
            // Only with `gso` (NFQA_CFG_F_GSO): the kernel then hands over packets whose TCP or
            // UDP checksum offload left holding the pseudo-header's sum; the kernel that injects
            // them will not finish it. Without the flag the kernel finishes it before queueing.
            if (info & NFQA_SKB_CSUMNOTREADY) fill_l4_checksum({payload, len});
        }
        verdict(id, stream().forward(payload, len) ? NF_DROP : down_verdict());
        return MNL_CB_OK;
    }

    int down_verdict() const { return accept_when_down_ ? NF_ACCEPT : NF_DROP; }

    void drop_whole_gso(size_t len) {
        ipc::PacketStats& stats = stream().stats();
        stats.packets_in++;
        stats.bytes_in += len;
        stats.dropped_malformed++;
        if (whole_gso_logged_) return;
        whole_gso_logged_ = true;
        log::warning(tag(), ": nfqueue ", queue_num_, " queued a whole GSO packet of ", len,
                     " bytes that is not TCP (a UDP_SEGMENT send): dropped, since the datagrams "
                     "it holds cannot be told apart; with \"gso\" queue only TCP (iptables -p "
                     "tcp); later ones are only counted (dropped: malformed)");
    }

    void verdict(uint32_t id, int v) {
        ipc::PacketStats& stats = stream().stats();
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
        if (::send(sock(), nlh, nlh->nlmsg_len, 0) < 0 && !verdict_error_logged_) {
            verdict_error_logged_ = true;  // EPERM: CAP_NET_ADMIN is missing; the kernel decides
            log::error(tag(), ": verdict on nfqueue ", queue_num_,
                       " failed: ", std::strerror(errno));
        }
        batch_count_ = 0;
    }

    bool accept_when_down_;
    uint16_t queue_num_;
    std::vector<char> verdict_buf_;
    bool verdict_error_logged_ = false;
    bool whole_gso_logged_ = false;
    int batch_verdict_ = NF_DROP;
    uint32_t batch_max_id_ = 0;
    size_t batch_count_ = 0;
};

}  // namespace

std::unique_ptr<WorkerBody> make_nfqueue_sender(const Handover& h, const PacketOptions& options,
                                                std::vector<unique_fd> fds, EventLoop& loop) {
    if (fds.size() != 1) throw std::runtime_error("nfqueue-to-stream takes one nfqueue fd");
    return std::make_unique<NfqueueSender>(h, options, std::move(fds.at(0)), loop);
}

}  // namespace pfp::worker
