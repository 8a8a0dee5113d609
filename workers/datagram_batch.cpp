#include "workers/datagram_batch.hpp"

#include <linux/udp.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pfp::worker {

RecvBatch::RecvBatch(size_t count, size_t size, size_t stride)
    : buffers_(count * stride), iov_(count), msgs_(count), names_(count), size_(size) {
    if (count == 0 || stride < size) throw std::invalid_argument("RecvBatch: bad geometry");
    for (size_t i = 0; i < count; ++i) {
        iov_[i] = {buffers_.data() + i * stride, size};
        msgs_[i] = {};
        msgs_[i].msg_hdr.msg_iov = &iov_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
    }
}

int RecvBatch::receive(int fd, bool names, size_t max) {
    if (max > msgs_.size()) max = msgs_.size();
    for (size_t i = 0; i < max; ++i) {
        msghdr& h = msgs_[i].msg_hdr;
        // A caller may have staged a slot's iovec elsewhere and shortened it: restore it.
        iov_[i].iov_len = size_;
        h.msg_name = names ? &names_[i] : nullptr;
        h.msg_namelen = names ? sizeof names_[i] : 0;
        h.msg_flags = 0;
        msgs_[i].msg_len = 0;
    }
    if (max > 1)
        return ::recvmmsg(fd, msgs_.data(), static_cast<unsigned>(max), MSG_DONTWAIT, nullptr);
    const ssize_t r = ::recvmsg(fd, &msgs_[0].msg_hdr, MSG_DONTWAIT);
    if (r < 0) return -1;
    msgs_[0].msg_len = static_cast<unsigned>(r);
    return 1;
}

SegmentResult send_segmented(int fd, const iovec* iov, size_t n, const void* name,
                             socklen_t name_len) {
    const size_t size = iov[0].iov_len;
    if (n < 2 || n > kMaxSegments || size == 0 || size > kMaxSegmentSize)
        return SegmentResult::not_a_run;
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        const size_t len = iov[i].iov_len;
        if (len == 0 || len > size || (len < size && i + 1 != n)) return SegmentResult::not_a_run;
        total += len;
    }
    if (total > kMaxSegmentedPayload) return SegmentResult::not_a_run;
    msghdr h{};
    h.msg_name = const_cast<void*>(name);
    h.msg_namelen = name_len;
    h.msg_iov = const_cast<iovec*>(iov);
    h.msg_iovlen = n;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint16_t))] = {};
    h.msg_control = control;
    h.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = IPPROTO_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    const auto segment = static_cast<uint16_t>(size);
    std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
    if (::sendmsg(fd, &h, MSG_DONTWAIT) >= 0) return SegmentResult::sent;
    // EIO: the device has no checksum offload; EINVAL, EOPNOTSUPP: no segmentation here.
    if (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOPROTOOPT)
        return SegmentResult::unsupported;
    return SegmentResult::failed;
}

OutputBatch::OutputBatch(size_t max_size, uint64_t& sent, uint64_t& failed)
    : max_size_(max_size), sent_(sent), failed_(failed), buffers_(kCapacity * max_size) {
    for (size_t i = 0; i < kCapacity; ++i) {
        iov_[i] = {buffers_.data() + i * max_size, 0};
        msgs_[i].msg_hdr.msg_iov = &iov_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
    }
}

void OutputBatch::add(int fd, const sockaddr* to, socklen_t to_len,
                      std::span<const uint8_t> datagram) {
    if (datagram.size() > max_size_ || (to && to_len > sizeof to_)) {
        ++failed_;
        return;
    }
    const socklen_t len = to ? to_len : 0;
    if (n_ > 0 && (fd != fd_ || len != to_len_ || (to && std::memcmp(to, &to_, len) != 0))) flush();
    if (n_ == kCapacity) flush();
    if (n_ == 0) {
        fd_ = fd;
        to_len_ = len;
        if (to) std::memcpy(&to_, to, len);
    }
    std::memcpy(iov_[n_].iov_base, datagram.data(), datagram.size());
    iov_[n_].iov_len = datagram.size();
    ++n_;
}

void OutputBatch::flush() {
    if (n_ == 0) return;
    const void* name = to_len_ ? &to_ : nullptr;
    // Runs of equal-sized datagrams (the last of a run may be shorter: a window of full segments
    // and its tail) go as segmented sends; whatever lies between runs, one by one with sendmmsg.
    size_t loose = 0;  // the first datagram not yet sent
    size_t i = 0;
    while (segment_ && i < n_) {
        const size_t size = iov_[i].iov_len;
        size_t j = i + 1;
        while (j < n_ && j - i < kMaxSegments && iov_[j].iov_len == size) ++j;
        if (j < n_ && j - i < kMaxSegments && iov_[j].iov_len < size) ++j;  // a shorter tail
        if (j - i < kMinRun) {
            i = j;
            continue;
        }
        send_one_by_one(loose, i);
        switch (send_segmented(fd_, &iov_[i], j - i, name, to_len_)) {
            case SegmentResult::sent:
                sent_ += j - i;
                loose = j;
                break;
            case SegmentResult::unsupported:
                segment_ = false;
                loose = i;
                break;
            case SegmentResult::not_a_run:  // past the payload limit: one by one
            case SegmentResult::failed:
                send_one_by_one(i, j);
                loose = j;
                break;
        }
        i = j;
    }
    send_one_by_one(loose, n_);
    n_ = 0;
}

// sendmmsg of [from, to); a datagram the kernel refuses is counted and skipped (KCP sends it again
// if it mattered).
void OutputBatch::send_one_by_one(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
        msgs_[i].msg_hdr.msg_name = to_len_ ? &to_ : nullptr;
        msgs_[i].msg_hdr.msg_namelen = to_len_;
    }
    size_t done = from;
    while (done < to) {
        const int r = ::sendmmsg(fd_, &msgs_[done], static_cast<unsigned>(to - done), MSG_DONTWAIT);
        if (r > 0) {
            sent_ += static_cast<uint64_t>(r);
            done += static_cast<size_t>(r);
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        ++failed_;  // this one is dropped (a full buffer, an ICMP error of an earlier one)
        ++done;
    }
}

}  // namespace pfp::worker
