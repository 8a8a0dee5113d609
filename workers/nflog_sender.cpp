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
#include "workers/packet_reader.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {
namespace {

// The kernel batches several packets into one message buffer of up to the group's nflog_buffer
// (at most 128 KiB) or one packet, whichever is larger; a smaller read would truncate the batch.
constexpr size_t kMessageSize = 256u << 10;
constexpr unsigned kMessagesPerRead = 8;  // one recvmmsg: 2 MiB of buffers
constexpr int kMessagesPerWakeup = 64;

class NflogSender final : public PacketReader {
  public:
    NflogSender(const Handover& h, const PacketOptions& o, unique_fd group, EventLoop& loop)
        : PacketReader(h, o, std::move(group), loop,
                       "nflog group " + std::to_string(parse_endpoint(h.fds.at(0).endpoint).queue),
                       "are dropped", kMessageSize, kMessagesPerRead, kMessagesPerWakeup) {}

  private:
    static int on_attr(const nlattr* a, void* data) {
        auto** tb = static_cast<const nlattr**>(data);
        const uint16_t type = mnl_attr_get_type(a);
        if (mnl_attr_type_valid(a, NFULA_MAX) > 0) tb[type] = a;
        return MNL_CB_OK;
    }

    // One NFULNL_MSG_PACKET per logged packet (several per read when the kernel batched them).
    int on_message(const nlmsghdr* nlh) override {
        if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_ULOG ||
            NFNL_MSG_TYPE(nlh->nlmsg_type) != NFULNL_MSG_PACKET)
            return MNL_CB_OK;
        const nlattr* tb[NFULA_MAX + 1] = {};
        if (mnl_attr_parse(nlh, sizeof(nfgenmsg), &NflogSender::on_attr, tb) < 0) return MNL_CB_OK;
        uint8_t* payload = nullptr;
        size_t len = 0;
        if (tb[NFULA_PAYLOAD]) {
            // In the reader's own buffer: the checksum is filled in where the packet lies.
            payload = static_cast<uint8_t*>(mnl_attr_get_payload(tb[NFULA_PAYLOAD]));
            len = mnl_attr_get_payload_len(tb[NFULA_PAYLOAD]);
            // NFLOG copies what OUTPUT sees: with checksum offload, a TCP or UDP checksum that
            // holds only the pseudo-header's sum. The kernel that injects it will not finish it.
            fill_l4_checksum({payload, len});
        }
        stream().forward(payload, len);
        return MNL_CB_OK;
    }
};

}  // namespace

std::unique_ptr<WorkerBody> make_nflog_sender(const Handover& h, const PacketOptions& options,
                                              std::vector<unique_fd> fds, EventLoop& loop) {
    if (fds.size() != 1) throw std::runtime_error("nflog-to-stream takes one nflog fd");
    return std::make_unique<NflogSender>(h, options, std::move(fds.at(0)), loop);
}

}  // namespace pfp::worker
