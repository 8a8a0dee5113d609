#include "workers/packet_reader.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"

namespace pfp::worker {

PacketReader::PacketReader(const Handover& h, const PacketOptions& o, unique_fd sock,
                           EventLoop& loop, const std::string& source, const std::string& down_fate,
                           size_t message_size, unsigned messages_per_read, int messages_per_wakeup)
    : loop_(loop),
      tag_(h.tag()),
      source_(source),
      sock_(std::move(sock)),
      stream_(loop, h.tag(), o, source, down_fate),
      message_size_(message_size),
      buffers_(message_size * messages_per_read),
      iovs_(messages_per_read),
      msgs_(messages_per_read),
      messages_per_wakeup_(messages_per_wakeup) {
    for (size_t i = 0; i < messages_per_read; ++i) {
        iovs_[i] = {buffers_.data() + i * message_size_, message_size_};
        msgs_[i].msg_hdr.msg_iov = &iovs_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    // The supervisor configured it blocking (it waited for the kernel's ACKs).
    const int fl = ::fcntl(sock_.get(), F_GETFL);
    if (fl < 0 || ::fcntl(sock_.get(), F_SETFL, fl | O_NONBLOCK) < 0)
        throw std::runtime_error("fcntl(" + source_ +
                                 ", O_NONBLOCK): " + std::string(std::strerror(errno)));
}

void PacketReader::start() {
    if (!loop_.add(sock_.get(), EPOLLIN, &watch_))
        throw std::runtime_error("epoll_ctl(" + source_ +
                                 "): " + std::string(std::strerror(errno)));
    reading_ = true;
    stream_.start();
}

void PacketReader::stop_accepting() {
    stream_.stop_connecting();
    if (reading_) loop_.remove(sock_.get());
    reading_ = false;
}

// A slow stream peer: packets wait in the kernel (an nfqueue holds them up to queue_maxlen; beyond
// it the kernel drops them, or accepts them with fail_open) instead of being refused here, so the
// tunnel's TCP flows see a queue, not loss. Reading resumes when the stream has room.
void PacketReader::pause_reading() {
    if (paused_ || !reading_) return;
    if (loop_.modify(sock_.get(), 0, &watch_)) paused_ = true;
}

void PacketReader::resume_reading() {
    if (!paused_ || !reading_) return;
    if (loop_.modify(sock_.get(), EPOLLIN, &watch_)) paused_ = false;
}

// The kernel queues one netlink message per packet (nfqueue; nflog per batch): recvmmsg takes up to
// messages_per_read of them in one call, where a recv per packet was the reader's largest cost
// (bench/README.md). A message larger than its slot is cut (MSG_TRUNC) and then fails to parse.
void PacketReader::on_readable() {
    for (int done = 0; done < messages_per_wakeup_;) {
        // Checked between reads: what one read brings (messages_per_read copied packets) still
        // fits in what the stream holds above the congestion mark.
        if (pause_when_congested_ && stream_.congested()) {
            pause_reading();
            break;
        }
        const int n = ::recvmmsg(sock_.get(), msgs_.data(), static_cast<unsigned>(msgs_.size()),
                                 MSG_DONTWAIT, nullptr);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            // ENOBUFS: the socket overflowed and the kernel dropped (or, nfqueue with fail_open,
            // accepted) what it could not deliver. Counted; reading goes on.
            if (errno == ENOBUFS) {
                stream_.stats().queue_overruns++;
            } else if (!read_error_logged_) {
                read_error_logged_ = true;
                log::warning(tag_, ": reading ", source_, " failed: ", std::strerror(errno));
            }
            ++done;
            continue;
        }
        for (int i = 0; i < n; ++i) {
            if (mnl_cb_run(iovs_[static_cast<size_t>(i)].iov_base,
                           msgs_[static_cast<size_t>(i)].msg_len, 0, 0, &PacketReader::dispatch,
                           this) == MNL_CB_ERROR)
                message_error();
        }
        done += n;
        if (static_cast<size_t>(n) < msgs_.size()) break;  // the socket is empty
    }
    stream_.flush();  // the packets first, then (nfqueue) their verdicts
    after_reads();
}

int PacketReader::dispatch(const nlmsghdr* nlh, void* data) {
    return static_cast<PacketReader*>(data)->on_message(nlh);
}

}  // namespace pfp::worker
