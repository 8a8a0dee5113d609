#pragma once
// Datagram I/O in batches, shared by the datagram and tunnel workers (udp_forward.cpp,
// kcp_client.cpp, kcp_server.cpp). A system call's exit is the largest cost per datagram on the
// machines this runs on, so datagrams move many per call:
// - RecvBatch: the buffers and headers of one recvmmsg, with the senders' addresses.
// - send_segmented(): a run of equal-sized datagrams to one destination as one UDP_SEGMENT send
//   (the kernel cuts it into the same datagrams: at the receiving socket on loopback, in the
//   device or in software elsewhere).
// - OutputBatch: datagrams produced one at a time (KCP's flush) gathered until the end of the
//   event-loop pass, then sent per destination with send_segmented() or sendmmsg.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace pfp::worker {

class RecvBatch {
  public:
    // `count` datagrams of up to `size` bytes each, `stride` bytes apart (>= size).
    RecvBatch(size_t count, size_t size, size_t stride);

    // Up to `max` (<= count) datagrams from fd into slots [0, n); with `names`, each sender's
    // address too. -1 with errno when none could be read. `max` 1 uses recvmsg.
    int receive(int fd, bool names, size_t max);

    size_t count() const { return msgs_.size(); }
    std::span<uint8_t> data(size_t i) {
        return {static_cast<uint8_t*>(iov_[i].iov_base), msgs_[i].msg_len};
    }
    // The whole slot (for a caller that stages it elsewhere, e.g. as an iovec).
    iovec& slot(size_t i) { return iov_[i]; }
    bool truncated(size_t i) const { return (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }
    sockaddr_storage& name(size_t i) { return names_[i]; }
    socklen_t name_len(size_t i) const { return msgs_[i].msg_hdr.msg_namelen; }

  private:
    std::vector<uint8_t> buffers_;
    std::vector<iovec> iov_;
    std::vector<mmsghdr> msgs_;
    std::vector<sockaddr_storage> names_;
    size_t size_;
};

// Segmentation offload limits: at most 64 segments (the oldest kernels' UDP_MAX_SEGMENTS), the
// whole within one IPv4 datagram, each small enough for an Ethernet MTU over IPv6 (a larger one
// would not fit the path's MTU).
inline constexpr size_t kMaxSegments = 64;
inline constexpr size_t kMaxSegmentedPayload = 65507;
inline constexpr size_t kMaxSegmentSize = 1452;

enum class SegmentResult {
    sent,         // the whole run went out in one call
    not_a_run,    // not equal sizes (only the last may be shorter), or past the limits: not tried
    failed,       // the send failed (errno set): send them one by one
    unsupported,  // the kernel or device cannot segment here (errno set): never try again
};
// iov[0, n) as one segmented send on fd, to `name` (nullptr: the connected peer).
SegmentResult send_segmented(int fd, const iovec* iov, size_t n, const void* name,
                             socklen_t name_len);

class OutputBatch {
  public:
    static constexpr size_t kCapacity = 64;
    // Datagrams up to `max_size` bytes; `sent` and `failed` count datagrams (the caller's
    // statistics).
    OutputBatch(size_t max_size, uint64_t& sent, uint64_t& failed);
    // What is still queued goes out (a worker ending after its last event: its final ACKs and
    // CLOSEs); the owner declares it after the sockets it writes to, so they are still open.
    ~OutputBatch() { flush(); }
    OutputBatch(const OutputBatch&) = delete;
    OutputBatch& operator=(const OutputBatch&) = delete;

    // Copies the datagram for fd (to `to`, or fd's peer when to is null). What is queued for
    // another fd or destination, or a full batch, is sent first. A datagram longer than max_size
    // is counted as failed.
    void add(int fd, const sockaddr* to, socklen_t to_len, std::span<const uint8_t> datagram);
    // Sends everything queued (the end of an event-loop pass).
    void flush();
    bool empty() const { return n_ == 0; }

  private:
    // Fewer datagrams than this of one size go with sendmmsg (one call either way).
    static constexpr size_t kMinRun = 2;
    void send_one_by_one(size_t from, size_t to);

    size_t max_size_;
    uint64_t& sent_;
    uint64_t& failed_;
    std::vector<uint8_t> buffers_;
    std::array<iovec, kCapacity> iov_{};
    std::array<mmsghdr, kCapacity> msgs_{};
    size_t n_ = 0;
    int fd_ = -1;
    sockaddr_storage to_{};
    socklen_t to_len_ = 0;
    bool segment_ = true;  // UDP_SEGMENT works here (until the kernel says otherwise)
};

}  // namespace pfp::worker
