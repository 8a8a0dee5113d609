#include "workers/connection.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/log.hpp"
#include "common/transparent_header.hpp"
#include "workers/route.hpp"
#include "workers/stream_relay.hpp"

namespace pfp::worker {

namespace {
constexpr uint32_t kSocketEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
// Bytes one direction may move per wake-up before yielding to other connections.
constexpr size_t kBudget = 4 * 1024 * 1024;
}  // namespace

void Side::on_event(uint32_t events) {
    conn->on_side_event(*this, events);
}

namespace {
bool is_tcp(int family) {
    return family == AF_INET || family == AF_INET6;
}
}  // namespace

Connection::Connection(StreamRelay& r, unique_fd client_fd, bool copy_mode, int client_family)
    : relay(r) {
    client.conn = this;
    client.fd = std::move(client_fd);
    client.tcp = is_tcp(client_family);
    upstream.conn = this;
    upstream.upstream = true;
    up.copy = copy_mode;
    // vsock has no sendpage: a splice into a vsock socket sends one page per packet, which
    // measured half as fast as one large send() from a buffer (bench/vsock.sh).
    down.copy = copy_mode || client_family == AF_VSOCK;
}

bool Connection::register_client() {
    if (relay.loop().add(client.fd.get(), kSocketEvents, &client)) return true;
    close("epoll_ctl failed", errno);
    return false;
}

bool Connection::register_sides() {
    if (relay.loop().add(client.fd.get(), kSocketEvents, &client) &&
        relay.loop().add(upstream.fd.get(), kSocketEvents, &upstream))
        return true;
    close("epoll_ctl failed", errno);
    return false;
}

void Connection::attach_upstream(unique_fd upstream_fd, int upstream_family) {
    upstream.fd = std::move(upstream_fd);
    upstream.tcp = is_tcp(upstream_family);
    if (upstream_family == AF_VSOCK) up.copy = true;  // see the constructor
    if (!relay.loop().add(upstream.fd.get(), kSocketEvents, &upstream))
        close("epoll_ctl failed", errno);
}

void Connection::detach_upstream() {
    if (upstream.fd) relay.loop().remove(upstream.fd.get());
    upstream.fd.reset();
    upstream.readable = upstream.writable = upstream.peer_closed = upstream.fin = false;
}

void Connection::on_side_event(Side& side, uint32_t events) {
    // A threaded connection left the epoll set, but an event fetched in the same batch as the
    // hand-off may still arrive: its threads own the sockets' data now.
    if (closed || threaded) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) side.readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP)) side.peer_closed = true;
    if ((events & (EPOLLRDHUP | EPOLLERR)) == EPOLLRDHUP) side.fin = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) side.writable = true;
    switch (phase) {
        case Phase::reading_header:
            if (!side.upstream && side.readable) read_header();
            return;
        case Phase::connecting:
            if (side.upstream && side.writable) finish_connect(events);
            return;
        case Phase::handshake:
            if (side.upstream && side.readable) read_fc_reply();
            return;
        case Phase::relaying:
            pump();
            return;
    }
}

bool Connection::send_all(int fd, std::string_view bytes) {
    // Headers are a few dozen bytes on a fresh socket: they fit its buffer in one send.
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == static_cast<ssize_t>(bytes.size());
}

void Connection::read_header() {
    uint8_t buf[kTransparentHeaderMaxSize];
    // Peek, so that nothing past the header is taken from the stream: it is payload.
    ssize_t n = ::recv(client.fd.get(), buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN) {
            client.readable = false;
        } else if (errno != EINTR) {
            close("reading the destination header", errno);
        }
        return;
    }
    TransparentHeaderDecoder decoder(relay.route().header);
    auto r = decoder.feed(buf, static_cast<size_t>(n));
    if (r.status == TransparentHeaderDecoder::Status::need_more) {
        // A peek never sees the FIN behind a partial header; EPOLLRDHUP does.
        if (n == 0 || client.peer_closed) {
            if (relay.route().log_connections) log::info(header_error_line());
            relay.refuse(*this, std::string(decoder.eof()) + " (" + std::to_string(n) +
                                    " bytes, then the peer closed)");
        } else {
            client.readable = false;  // the rest arrives with a new edge
        }
        return;
    }
    if (r.status == TransparentHeaderDecoder::Status::error) {
        if (relay.route().log_connections) log::info(header_error_line());
        relay.refuse(*this, std::string(decoder.error()));
        return;
    }
    ::recv(client.fd.get(), buf, r.consumed, MSG_DONTWAIT);  // the header itself, now consumed
    relay.header_read(*this);
    Endpoint dest;
    dest.scheme = Scheme::tcp;
    dest.addr = decoder.destination();
    relay.begin_connect(*this, std::move(dest));
}

void Connection::finish_connect(uint32_t events) {
    int err = 0;
    socklen_t len = sizeof err;
    // A failed connect raises EPOLLERR (and EPOLLHUP); writable without either is connected,
    // so the error is fetched only when there is one.
    if ((events & (EPOLLERR | EPOLLHUP)) &&
        ::getsockopt(upstream.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        if (relay.try_next_address(*this, err)) return;  // may have closed this connection
        relay.mutable_stats().connect_failures++;
        close("connect failed", err);
        return;
    }
    if (setup && setup->fc_handshake) {
        if (!send_all(upstream.fd.get(), fc_vsock_connect_line(setup->dest.port))) {
            close("fc-vsock CONNECT failed", errno);
            return;
        }
        phase = Phase::handshake;
        if (upstream.readable) read_fc_reply();
        return;
    }
    start_relaying();
}

void Connection::read_fc_reply() {
    char buf[64];
    ssize_t n = ::recv(upstream.fd.get(), buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN) {
            upstream.readable = false;
        } else if (errno != EINTR) {
            close("fc-vsock handshake failed", errno);
        }
        return;
    }
    size_t line = 0;
    switch (parse_fc_vsock_reply(std::string_view(buf, static_cast<size_t>(n)), line)) {
        case FcReply::need_more:
            if (n == 0) {
                close("fc-vsock handshake failed: connection closed before OK", 0);
            } else {
                upstream.readable = false;
            }
            return;
        case FcReply::bad:
            close("fc-vsock handshake failed: no \"OK <port>\" reply", EPROTO);
            return;
        case FcReply::ok:
            ::recv(upstream.fd.get(), buf, line, MSG_DONTWAIT);  // only the OK line
            start_relaying();
            return;
    }
}

void Connection::start_relaying() {
    if (setup && !setup->preamble.empty() && !send_all(upstream.fd.get(), setup->preamble)) {
        close("sending the header upstream failed", errno ? errno : EIO);
        return;
    }
    const int upstream_family = setup ? setup->dest.family() : AF_UNSPEC;
    setup.reset();
    phase = Phase::relaying;
    relay.connected(*this, upstream_family);
    pump();
}

// "relay": "threads" pays off for a conversation (a blocking read is its own wake-up), not for a
// connection that makes one exchange or moves bulk one way: those cost a thread pair's hand-offs
// and wake-ups for nothing. So a connection moves to threads when its client speaks again after
// an answer, with nothing in flight either way; the threads then read what the client sent.
bool Connection::conversation_turned() const {
    return client.readable && bytes_down > 0 && up.pending == 0 && down.pending == 0 &&
           !client.peer_closed && !upstream.peer_closed;
}

bool Connection::acquire(Direction& d, bool splice) {
    if (splice) {
        if (!d.pipe) d.pipe = relay.pipes().take();
        if (d.pipe) return true;
        // No fd left for a pipe (EMFILE): this direction copies from now on, which needs no fd.
        d.copy = true;
    }
    if (!d.buffer) d.buffer = relay.buffers().take();
    return true;
}

void Connection::release(Direction& d) {
    if (d.pending != 0) return;
    if (d.pipe) {
        relay.pipes().give(std::move(*d.pipe));
        d.pipe.reset();
    }
    if (d.buffer) relay.buffers().give(std::move(d.buffer));
}

namespace {
// The source's FIN is known to follow these bytes (a short read after EPOLLRDHUP): MSG_MORE
// holds them in the socket for the shutdown() or close() that comes next in this pump, which
// then sends the FIN in the same segment: one segment less per closing direction, for us to
// send and for the peer to receive.
int send_flags(const Direction& d, const Side& to) {
    return MSG_NOSIGNAL | MSG_DONTWAIT | (d.eof && to.tcp ? MSG_MORE : 0);
}
}  // namespace

// Returns 0, or the errno that ends the connection.
int Connection::pump_direction(Direction& d, Side& from, Side& to, uint64_t& counter, uint64_t& own,
                               size_t& budget) {
    for (;;) {
        if (d.pending > 0) {
            if (!to.writable) return 0;
            ssize_t n = d.in_pipe ? ::splice(d.pipe->read_end.get(), nullptr, to.fd.get(), nullptr,
                                             d.pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                  : ::send(to.fd.get(), d.buffer.get() + d.offset, d.pending,
                                           send_flags(d, to));
            if (n < 0) {
                if (errno == EAGAIN) {
                    to.writable = false;
                    return 0;
                }
                if (errno == EINTR) continue;
                return errno;
            }
            d.pending -= static_cast<size_t>(n);
            d.offset += static_cast<size_t>(n);
            counter += static_cast<uint64_t>(n);
            own += static_cast<uint64_t>(n);
            continue;
        }
        if (d.eof) {
            if (!d.shut_down) {
                // Half-close: pass the FIN on; the other direction keeps flowing. When that
                // one is finished too, the close() that follows sends the FIN itself.
                const Direction& other = &d == &up ? down : up;
                if (!other.done() && ::shutdown(to.fd.get(), SHUT_WR) < 0 && errno != ENOTCONN)
                    return errno;
                d.shut_down = true;
                if (log && relay.route().log_connections)
                    log::info(copy_done_line(relay.route().kind, *log, &d == &up));
            }
            release(d);
            return 0;
        }
        if (!from.readable || budget == 0) {
            release(d);
            return 0;
        }
        const bool splice = d.bulk && !d.copy;
        if (!acquire(d, splice)) return errno != 0 ? errno : ENOMEM;
        d.in_pipe = splice && d.pipe;
        ssize_t n;
        if (d.in_pipe) {
            n = ::splice(from.fd.get(), nullptr, d.pipe->write_end.get(), nullptr, d.pipe->capacity,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } else {
            n = ::recv(from.fd.get(), d.buffer.get(), BufferPool::kSize, MSG_DONTWAIT);
        }
        if (n == 0) {
            d.eof = true;
            continue;
        }
        if (n < 0) {
            if (errno == EAGAIN) {
                from.readable = false;
                release(d);
                return 0;
            }
            if (errno == EINTR) continue;
            if (errno == EINVAL && d.in_pipe) {  // this socket type cannot splice: copy instead
                release(d);
                d.copy = true;
                continue;
            }
            return errno;
        }
        const auto got = static_cast<size_t>(n);
        if (d.in_pipe) {
            // A splice stops at the pipe's slots (one per segment) as well as at an empty
            // socket, so a short splice says nothing about what is left: read on until EAGAIN.
            if (got < Direction::kSpliceBelow) d.bulk = false;
        } else if (got == BufferPool::kSize) {
            d.bulk = !d.copy;  // a full buffer: more is likely queued, splice it
        } else if (from.fin) {
            // The FIN was queued behind every byte the peer sent, so a short read took the
            // last of them: the next read could only return 0.
            d.eof = true;
        } else if (!from.peer_closed) {
            // A short read on a stream socket means its receive queue is empty (epoll(7)):
            // skip the read that would only return EAGAIN. Bytes arriving later raise a new
            // edge. A hang-up seen already has no edge left: read on to the 0 or the error.
            from.readable = false;
        }
        d.pending = got;
        d.offset = 0;
        budget -= std::min(budget, got);
    }
}

void Connection::pump() {
    if (closed || threaded || phase != Phase::relaying) return;
    // Nothing pending: pump_direction() already gave the buffers and pipes back to the pools.
    if (!stays_on_events && relay.has_threads() && conversation_turned()) {
        if (relay.hand_to_threads(*this)) return;
        stays_on_events = true;
    }
    auto& stats = relay.mutable_stats();
    size_t up_budget = kBudget, down_budget = kBudget;
    if (int err = pump_direction(up, client, upstream, stats.bytes_up, bytes_up, up_budget)) {
        close("client to upstream", err);
        return;
    }
    if (int err =
            pump_direction(down, upstream, client, stats.bytes_down, bytes_down, down_budget)) {
        close("upstream to client", err);
        return;
    }
    if (up.done() && down.done()) {
        close(nullptr);
        return;
    }
    relay.touch(*this);
    // Budget spent while a side is still readable: edge-triggered epoll will not report it
    // again, so the relay continues this connection after the current batch.
    if ((up_budget == 0 && client.readable) || (down_budget == 0 && upstream.readable))
        relay.requeue(*this);
}

void Connection::close(const char* reason, int err) {
    if (closed) return;
    closed = true;
    // A close() with unread data makes the kernel send RST, which is what the peer should see
    // when its counterpart failed. Closing removes the fds from epoll.
    client.fd.reset();
    upstream.fd.reset();
    if (up.pipe && up.pending) up.pipe.reset();  // stale bytes: never back to the pool
    if (down.pipe && down.pending) down.pipe.reset();
    up.pending = down.pending = 0;
    release(up);
    release(down);
    relay.connection_closed(*this, reason, err);
}

}  // namespace pfp::worker
