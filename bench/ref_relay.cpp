// ref_relay: the smallest TCP relays that are still correct, as floors for bench/run.sh's
// --reference paths. No sandbox, no policy, no limits, no timers, no statistics: what is left is
// the socket work any relay must do, so a relay's distance from these is its own overhead.
//
//   ref_relay --listen PORT --upstream PORT [--threads] [--max-seconds N]
//
// events (default): one thread, edge-triggered epoll, recv/send through a 16 KiB buffer per
//   direction. The same calls per short connection as pf-proxyd's event engine: accept4, socket,
//   connect, TCP_NODELAY, two epoll_ctl, recv/send (a short recv means drained), shutdown, two
//   close.
// --threads: two threads per connection copying with blocking recv/send: a blocking recv is its
//   own wake-up, so one request in flight costs two calls per direction instead of three.
//
// Loopback only (127.0.0.1). Ends after --max-seconds (default 3600) or on SIGTERM.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_net.hpp"

namespace {

using bench::loopback;

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "ref_relay: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

int listen_on(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // accepted sockets inherit it
    const sockaddr_in a = loopback(port);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) die("bind");
    if (::listen(fd, 4096) < 0) die("listen");
    return fd;
}

// A connecting upstream socket (flags: 0 or SOCK_NONBLOCK), or -1.
int connect_upstream(int port, int flags) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0) return -1;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const sockaddr_in a = loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0 &&
        errno != EINPROGRESS) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// ---------------------------------------------------------------- two blocking threads

[[noreturn]] void run_threads(int listener, int upstream_port) {
    bench::serve_blocking(
        listener, [upstream_port] { return connect_upstream(upstream_port, 0); }, 16 << 10);
}

// ---------------------------------------------------------------- one epoll thread

struct Conn;

// One direction: bytes read from `from` and not yet written to `to`.
struct Way {
    int from = -1, to = -1;
    char buf[16 << 10];
    size_t off = 0, len = 0;
    bool done = false;  // `from` ended and the end was passed on
};

struct Conn {
    int client = -1, upstream = -1;
    Way up, down;  // client -> upstream, upstream -> client
};

// How pump() may read: after a short read, stop (the socket is drained, epoll(7)), or read on
// until EAGAIN or the end, or take the short read as the end: after EPOLLRDHUP (without an error)
// the source's FIN is queued behind its last byte, so a short read has reached it.
enum class Read { stop_when_short, until_eagain, short_is_end };

void end_way(Way& w, const Way& other) {
    w.done = true;
    if (!other.done) ::shutdown(w.to, SHUT_WR);  // else the close that follows sends the FIN
}

// Moves what it can from w.from to w.to; false on an error (the connection is then closed).
bool pump(Way& w, const Way& other, Read how) {
    bool more = true;  // the source may hold more bytes
    for (;;) {
        while (w.off < w.len) {
            const ssize_t n = ::send(w.to, w.buf + w.off, w.len - w.off, MSG_NOSIGNAL);
            if (n < 0) return errno == EAGAIN;  // EPOLLOUT (edge-triggered) resumes it
            w.off += static_cast<size_t>(n);
        }
        if (w.done) return true;
        if (!more) {
            if (how == Read::short_is_end) end_way(w, other);
            return true;
        }
        const ssize_t n = ::recv(w.from, w.buf, sizeof w.buf, 0);
        if (n < 0) return errno == EAGAIN;
        if (n == 0) {
            end_way(w, other);
            return true;
        }
        w.off = 0;
        w.len = static_cast<size_t>(n);
        more = how == Read::until_eagain || w.len == sizeof w.buf;
    }
}

[[noreturn]] void run_events(int listener, int upstream_port) {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    ::fcntl(listener, F_SETFL, O_NONBLOCK);
    epoll_event lev{EPOLLIN, {.ptr = nullptr}};
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev) < 0) die("epoll_ctl");
    // Keyed by the connection's address; an event names its connection and which socket fired.
    // A connection closed during a batch is freed after it, so a later event of the same batch
    // cannot land on a new connection at the same address.
    std::unordered_map<Conn*, std::unique_ptr<Conn>> conns;
    std::vector<Conn*> closed;
    auto close_conn = [&](Conn* c) {
        ::close(c->client);
        ::close(c->upstream);
        c->client = -1;
        closed.push_back(c);
    };
    epoll_event ev[128];
    for (;;) {
        const int n = ::epoll_wait(ep, ev, 128, -1);
        for (int i = 0; i < n; ++i) {
            if (ev[i].data.ptr == nullptr) {
                for (;;) {
                    const int cfd =
                        ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
                    if (cfd < 0) break;
                    const int ufd = connect_upstream(upstream_port, SOCK_NONBLOCK);
                    if (ufd < 0) {
                        ::close(cfd);
                        continue;
                    }
                    auto c = std::make_unique<Conn>();
                    c->client = cfd;
                    c->upstream = ufd;
                    c->up.from = c->down.to = cfd;
                    c->up.to = c->down.from = ufd;
                    // The low bit of the pointer tells the two sockets apart (Conn is aligned).
                    epoll_event e{EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, {.ptr = c.get()}};
                    ::epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e);
                    e.data.u64 |= 1;
                    ::epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &e);
                    conns.emplace(c.get(), std::move(c));
                }
                continue;
            }
            Conn* c = reinterpret_cast<Conn*>(ev[i].data.u64 & ~uint64_t{1});
            if (c->client < 0) continue;  // closed earlier in this batch
            if (ev[i].events & EPOLLERR) {
                close_conn(c);
                continue;
            }
            const bool upstream = ev[i].data.u64 & 1;
            Way& in = upstream ? c->down : c->up;   // reads the socket that fired
            Way& out = upstream ? c->up : c->down;  // writes to it
            bool ok = true;
            const uint32_t e = ev[i].events;
            // Writable with bytes waiting: send them, then read on until EAGAIN (the reads that
            // were held back may have left the source's end queued with no edge to come).
            if ((e & EPOLLOUT) && out.off < out.len) ok = pump(out, in, Read::until_eagain);
            if (ok && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !in.done)
                ok = pump(in, out,
                          (e & EPOLLHUP)     ? Read::until_eagain
                          : (e & EPOLLRDHUP) ? Read::short_is_end
                                             : Read::stop_when_short);
            if (!ok || (c->up.done && c->down.done && c->up.off == c->up.len &&
                        c->down.off == c->down.len))
                close_conn(c);
        }
        for (Conn* c : closed) conns.erase(c);
        closed.clear();
    }
}

}  // namespace

int main(int argc, char** argv) {
    int listen_port = 0, upstream_port = 0, max_seconds = 3600;
    bool threads = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads")
            threads = true;
        else if (a == "--listen" && i + 1 < argc)
            listen_port = std::atoi(argv[++i]);
        else if (a == "--upstream" && i + 1 < argc)
            upstream_port = std::atoi(argv[++i]);
        else if (a == "--max-seconds" && i + 1 < argc)
            max_seconds = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "ref_relay: unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    if (listen_port <= 0 || upstream_port <= 0) {
        std::fprintf(
            stderr,
            "usage: ref_relay --listen PORT --upstream PORT [--threads] [--max-seconds N]\n");
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    ::alarm(static_cast<unsigned>(max_seconds));  // bounded even if the benchmark dies
    const int listener = listen_on(listen_port);
    if (threads) run_threads(listener, upstream_port);
    run_events(listener, upstream_port);
}
