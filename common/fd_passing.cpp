#include "common/fd_passing.hpp"

#include <sys/socket.h>

#include <cstring>
#include <string>

#include "common/error.hpp"

namespace pfp {

namespace {
constexpr size_t kCmsgSpace = CMSG_SPACE(sizeof(int) * kMaxPassedFds);
constexpr int kSoPassRights = 83;  // SO_PASSRIGHTS (asm-generic/socket.h, Linux 6.16)

// An unwanted fd is closed without waiting for anything its sender arranged: SO_LINGER {1, 0}
// makes close() of a socket return at once (a reset instead of a lingering FIN).
void defuse(std::vector<unique_fd>& fds) {
    const linger now{1, 0};
    for (auto& fd : fds) ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &now, sizeof now);
    fds.clear();
}
}  // namespace

bool refuse_passed_fds(int sock) {
    const int zero = 0;
    return ::setsockopt(sock, SOL_SOCKET, kSoPassRights, &zero, sizeof zero) == 0;
}

void send_with_fds(int sock, std::span<const std::byte> data, std::span<const int> fds) {
    if (fds.size() > kMaxPassedFds)
        throw fd_passing_error("cannot pass " + std::to_string(fds.size()) + " fds (limit " +
                               std::to_string(kMaxPassedFds) + ")");
    iovec iov{const_cast<std::byte*>(data.data()), data.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[kCmsgSpace];
    if (!fds.empty()) {
        std::memset(control, 0, sizeof control);
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do {
        n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("sendmsg");
    if (static_cast<size_t>(n) != data.size()) throw fd_passing_error("short sendmsg");
}

Received recv_with_fds(int sock, std::span<std::byte> buf, size_t max_fds) {
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    // Room for more fds than allowed, so an excess is seen and closed rather than truncated.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxPassedFds + 1))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("recvmsg");

    Received r;
    struct DefuseUnwanted {  // on every path out, also the throwing ones
        std::vector<unique_fd>& fds;
        bool unwanted;
        ~DefuseUnwanted() {
            if (unwanted) defuse(fds);
        }
    } guard{r.fds, max_fds == 0};
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            r.fds.emplace_back(fd);  // owned from here on, so every early throw closes them
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) throw fd_passing_error("control message truncated (fds lost)");
    if (msg.msg_flags & MSG_TRUNC)
        throw fd_passing_error("datagram larger than " + std::to_string(buf.size()) + " bytes");
    if (r.fds.size() > max_fds)
        throw fd_passing_error("received " + std::to_string(r.fds.size()) + " fds, at most " +
                               std::to_string(max_fds) + " allowed");
    r.size = static_cast<size_t>(n);
    r.eof = (n == 0 && r.fds.empty());
    return r;
}

}  // namespace pfp
