#pragma once
// Datagram + file descriptors over a SOCK_SEQPACKET socket (SCM_RIGHTS). Received fds arrive
// close-on-exec; a truncated datagram or control message is an error and closes whatever arrived.
#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp {

constexpr size_t kMaxPassedFds = 16;

class fd_passing_error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Sends one datagram carrying `fds`. Throws system_error (EAGAIN included) or fd_passing_error.
void send_with_fds(int sock, std::span<const std::byte> data, std::span<const int> fds);

struct Received {
    size_t size = 0;  // bytes of the datagram; 0 with eof=true means the peer closed
    bool eof = false;
    std::vector<unique_fd> fds;
};

// Receives one datagram into `buf`. Rejects MSG_TRUNC (datagram larger than buf), MSG_CTRUNC
// (fds lost) and more than `max_fds` descriptors. Throws system_error on a failed recvmsg
// (EAGAIN included) and fd_passing_error on a rejected message. With max_fds 0 (a side that never
// takes fds from its peer) every fd that arrives anyway is defused before it is closed: a socket
// the peer set to linger would otherwise block close() for its linger time.
Received recv_with_fds(int sock, std::span<std::byte> buf, size_t max_fds = kMaxPassedFds);

// Tells the kernel to refuse SCM_RIGHTS sent to `sock` (SO_PASSRIGHTS 0, Linux 6.16): the
// sender's sendmsg fails with EPERM and no fd ever reaches us. False where the kernel lacks it;
// recv_with_fds(..., 0) is the fallback.
bool refuse_passed_fds(int sock);

}  // namespace pfp
