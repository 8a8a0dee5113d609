// Socket pieces the benchmark programs share (each is one source file compiled on its own, so
// these are inline): the loopback address, and the blocking relay with two threads per
// connection that the benchmarks run as a reference (the simplest correct relay).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace bench {

inline sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

inline bool send_all(int fd, const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// One direction of the blocking relay: copies until EOF, then passes the FIN on. An error ends
// it without a FIN; the other direction then sees the reset.
inline void copy_until_eof(int from, int to, size_t buffer) {
    std::vector<char> buf(buffer);
    ssize_t n;
    while ((n = ::recv(from, buf.data(), buf.size(), 0)) > 0)
        if (!send_all(to, buf.data(), static_cast<size_t>(n))) return;
    ::shutdown(to, SHUT_WR);
}

// Serves accepted connections from `listener` for ever, each on a thread of its own that
// connects with `connect_upstream()` (an fd, or < 0) and copies one direction while a second
// thread copies the other; both sockets are closed when both directions ended.
template <class Connect>
[[noreturn]] void serve_blocking(int listener, Connect connect_upstream, size_t buffer) {
    for (;;) {
        const int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        std::thread([c, connect_upstream, buffer] {
            const int u = connect_upstream();
            if (u >= 0) {
                std::thread back(copy_until_eof, u, c, buffer);
                copy_until_eof(c, u, buffer);
                back.join();
                ::close(u);
            }
            ::close(c);
        }).detach();
    }
}

}  // namespace bench
