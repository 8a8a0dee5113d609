#include "supervisor/request_server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "common/error.hpp"

namespace pfp::supervisor {
namespace {

// After the reply, what a client still sends is read and dropped until it closes: closing a
// socket with unread input makes the kernel reset the connection (TCP RST, or ECONNRESET on a
// Unix socket), which can destroy the reply before the client has read it.
constexpr size_t kMaxDiscard = 64 * 1024;
// accept() out of fds or memory: try again after this long instead of spinning on a listener
// that stays readable.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);

}  // namespace

RequestServer::RequestServer(EventLoop& loop, unique_fd listener, Limits limits,
                             RequestProtocol& protocol)
    : loop_(loop), listener_(std::move(listener)), limits_(limits), protocol_(protocol) {
    listener_source_.server = this;
    if (!loop_.add(listener_.get(), EPOLLIN, &listener_source_))
        throw_errno("epoll_ctl(add listener)");
}

RequestServer::~RequestServer() {
    for (const auto& c : clients_) loop_.remove(c->fd.get());
    if (!paused_) loop_.remove(listener_.get());
}

void RequestServer::accept_clients() {
    for (;;) {
        const bool full = clients_.size() >= limits_.max_clients;
        if (full && !victim()) break;
        unique_fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause(Clock::now() + kAcceptBackoff);
            return;  // EAGAIN: nobody else waiting
        }
        if (full) {  // someone is waiting: make room
            ++evicted_;
            close(*victim());
        }
        auto c = std::make_unique<Client>();
        c->server = this;
        c->fd = std::move(fd);
        c->accepted = Clock::now();
        c->deadline = c->accepted + limits_.request_timeout;
        RequestProtocol::Admission admission = protocol_.admit(c->fd.get());
        c->peer = std::move(admission.peer);
        if (!loop_.add(c->fd.get(), EPOLLIN | EPOLLRDHUP, c.get())) continue;  // closes it
        Client& client = *clients_.emplace_back(std::move(c));
        if (admission.reply) reply(client, std::move(*admission.reply));
    }
    pause(std::nullopt);  // every slot is taking a reply: the next clients wait in the backlog
}

RequestServer::Client* RequestServer::victim() const {
    // Idle before partway through a request before done with its reply; the oldest of each. A
    // client being sent its reply is never the victim.
    auto rank = [](const Client& c) {
        if (c.phase == Phase::reading) {
            // A request already waiting in the socket (its event later in this batch) is not
            // idle.
            char b;
            const bool idle =
                c.in.empty() && ::recv(c.fd.get(), &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
            return idle ? 0 : 1;
        }
        return c.phase == Phase::lingering ? 2 : 3;
    };
    Client* found = nullptr;
    for (const auto& c : clients_) {
        if (rank(*c) == 3) continue;
        if (!found || rank(*c) < rank(*found) ||
            (rank(*c) == rank(*found) && c->accepted < found->accepted))
            found = c.get();
    }
    return found;
}

void RequestServer::on_client(Client& c, uint32_t) {
    switch (c.phase) {
        case Phase::reading:
            read_request(c);
            break;
        case Phase::writing:
            write_reply(c);
            break;
        case Phase::lingering:
            linger(c);
            break;
    }
}

void RequestServer::read_request(Client& c) {
    for (;;) {
        const size_t have = c.in.size();
        c.in.resize(limits_.max_request);  // have < max_request: the loop ends when it is reached
        const ssize_t n = ::recv(c.fd.get(), c.in.data() + have, c.in.size() - have, 0);
        const int err = errno;
        c.in.resize(have + static_cast<size_t>(std::max<ssize_t>(n, 0)));
        if (n < 0) {
            if (err == EINTR) continue;
            if (err != EAGAIN && err != EWOULDBLOCK) close(c);
            return;
        }
        if (n == 0) {  // the client ended its side before the terminator
            if (c.in.empty()) {
                close(c);
            } else {
                reply(c, protocol_.respond(c.peer, c.in, false));
            }
            return;
        }
        if (const size_t length = protocol_.request_length(c.in); length > 0) {
            reply(c, protocol_.respond(c.peer, std::string_view(c.in).substr(0, length), true));
            return;
        }
        if (c.in.size() >= limits_.max_request) {
            reply(c, protocol_.too_long());
            return;
        }
    }
}

void RequestServer::reply(Client& c, std::string text) {
    c.in.clear();
    c.in.shrink_to_fit();
    c.out = std::move(text);
    c.sent = 0;
    c.phase = Phase::writing;
    // A fresh deadline: the request was handled (a reload may take a moment); the client now
    // has the full timeout to read the reply.
    c.deadline = Clock::now() + limits_.timeout;
    write_reply(c);
}

void RequestServer::write_reply(Client& c) {
    while (c.sent < c.out.size()) {
        const ssize_t n =
            ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!loop_.modify(c.fd.get(), EPOLLOUT, &c)) close(c);
                return;
            }
            close(c);  // EPIPE, ECONNRESET: the client is gone
            return;
        }
        c.sent += static_cast<size_t>(n);
    }
    c.out.clear();
    c.out.shrink_to_fit();
    ::shutdown(c.fd.get(), SHUT_WR);
    c.phase = Phase::lingering;
    c.deadline = std::min(c.deadline, Clock::now() + limits_.request_timeout);
    if (!loop_.modify(c.fd.get(), EPOLLIN | EPOLLRDHUP, &c)) {
        close(c);
        return;
    }
    linger(c);
}

void RequestServer::linger(Client& c) {
    char sink[4096];
    for (;;) {
        const ssize_t n = ::recv(c.fd.get(), sink, sizeof sink, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) break;  // EOF or an error: done
        c.discarded += static_cast<size_t>(n);
        if (c.discarded > kMaxDiscard) break;
    }
    close(c);
}

void RequestServer::close(Client& c) {
    loop_.remove(c.fd.get());
    c.fd.reset();
    const auto it = std::find_if(clients_.begin(), clients_.end(),
                                 [&](const auto& p) { return p.get() == &c; });
    if (it == clients_.end()) return;
    // `c` may be the client whose event is being handled: free it after the batch.
    closed_.push_back(std::move(*it));
    clients_.erase(it);
    if (paused_ && !resume_at_) resume();
}

void RequestServer::pause(std::optional<Clock::time_point> until) {
    if (!paused_) loop_.remove(listener_.get());
    paused_ = true;
    if (until) resume_at_ = until;
}

void RequestServer::resume() {
    if (clients_.size() >= limits_.max_clients) return;
    if (!loop_.add(listener_.get(), EPOLLIN, &listener_source_)) {
        resume_at_ = Clock::now() + kAcceptBackoff;  // ENOMEM: try again later
        return;
    }
    paused_ = false;
    resume_at_.reset();
    // Clients may have queued while paused; level-triggered epoll reports them on the next wait.
}

std::optional<Clock::time_point> RequestServer::tick(Clock::time_point now) {
    closed_.clear();
    for (size_t i = 0; i < clients_.size();) {
        if (clients_[i]->deadline <= now) {
            close(*clients_[i]);  // erases clients_[i]
        } else {
            ++i;
        }
    }
    closed_.clear();
    if (paused_ && resume_at_ && *resume_at_ <= now) {
        resume_at_.reset();
        resume();
    }
    std::optional<Clock::time_point> next = resume_at_;
    for (const auto& c : clients_)
        if (!next || c->deadline < *next) next = c->deadline;
    return next;
}

}  // namespace pfp::supervisor
