// kcp-client (declared in worker_body.hpp): each accepted TCP connection becomes one KCP
// conversation (docs/kcp-tunnel.md) over a UDP socket of its own, connected to the kcp-server.
// The first bytes the client has sent by then ride in the HELLO; the HELLO is resent by the core's
// schedule until a WELCOME authenticates; then StreamPump relays both ways with half-close. Every
// connection's deadlines share one timer wheel; nothing polls.
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <deque>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "common/allow_list.hpp"
#include "common/kcp/client_tunnel.hpp"
#include "common/kcp/timer_wheel.hpp"
#include "common/log.hpp"
#include "workers/datagram_batch.hpp"
#include "workers/kcp_io.hpp"
#include "workers/redirected_destination.hpp"
#include "workers/route.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {
namespace {

constexpr size_t kDatagramBuffer = 2048;  // > the largest tunnel MTU (1500)
constexpr size_t kBatch = 32;             // datagrams per recvmmsg
constexpr int kRounds = 2;                // batches per event, then the other sources get a turn

class KcpClient;

struct ClientConn {
    struct TcpSide : EventSource {
        ClientConn* conn = nullptr;
        void on_event(uint32_t events) override;
    };
    struct UdpSide : EventSource {
        ClientConn* conn = nullptr;
        void on_event(uint32_t events) override;
    };
    struct Sink final : kcp::DatagramSink {
        ClientConn* conn = nullptr;
        void send_datagram(std::span<const uint8_t> d) override;
    };

    KcpClient* self = nullptr;
    uint32_t id = 0;
    unique_fd udp;
    StreamPump pump;
    std::optional<kcp::ClientTunnel> tunnel;
    std::string peer;
    bool established = false;
    bool dirty = false;
    bool lingering = false;
    uint64_t serial = 0;  // tells a slot's connections apart in the linger queue
    StatsPacer stats_pacer;
    TcpSide tcp_side;
    UdpSide udp_side;
    Sink sink;
};

class KcpClient final : public WorkerBody {
  public:
    KcpClient(const Handover& h, const TunnelOptions& o, unique_fd listener, EventLoop& loop)
        : loop_(loop),
          listener_(std::move(listener)),
          options_(o),
          security_(tunnel_security(o)),
          config_(tunnel_config(o)),
          route_(o),
          tag_(h.tag()),
          max_(static_cast<size_t>(o.max_connections)),
          wheel_(max_, clock_.ms(Clock::now())),
          in_(kBatch, kDatagramBuffer, kDatagramBuffer),
          out_(kDatagramBuffer, stats_.datagrams_out, stats_.send_errors) {
        slots_.resize(max_);
        for (size_t i = max_; i > 0; --i) free_.push_back(static_cast<uint32_t>(i - 1));
        accept_side_.self = this;
        if (!loop_.add(listener_.get(), EPOLLIN, &accept_side_))
            throw std::runtime_error("epoll_ctl(listener) failed");
    }

    void start() override {}
    void stop_accepting() override {
        if (draining_) return;
        draining_ = true;
        if (!paused_) loop_.remove(listener_.get());
    }
    size_t active() const override { return max_ - free_.size(); }
    bool update_upstream(std::vector<SockAddr> addresses) override {
        return route_.update(std::move(addresses));
    }
    std::string encoded_stats() const override {
        ipc::TunnelStats s = stats_;
        s.sessions_active = active();
        for (const auto& c : slots_)
            if (c && c->tunnel) {
                s.dropped_handshake += c->tunnel->refused_welcomes();
                if (auto* session = c->tunnel->session()) add_session_counters(*session, s, true);
            }
        return ipc::encode_stats(s);
    }
    std::optional<Clock::time_point> tick(Clock::time_point now) override {
        const uint32_t ms = clock_.ms(now);
        for (const uint32_t id : dirty_) {
            if (ClientConn* c = slots_[id].get()) {
                c->dirty = false;
                flush(*c, now, ms);
            }
        }
        dirty_.clear();
        due_.clear();
        wheel_.expire(ms, due_);
        for (const uint32_t id : due_)
            if (ClientConn* c = slots_[id].get()) flush(*c, now, ms);
        while (!linger_.empty() && std::get<0>(linger_.front()) <= now) {
            const auto [at, id, serial] = linger_.front();
            linger_.pop_front();
            if (ClientConn* c = slots_[id].get(); c && c->serial == serial) close(*c);
        }
        out_.flush();  // everything this pass produced, before the loop waits
        std::optional<Clock::time_point> next;
        if (const auto w = wheel_.next_expiry()) next = clock_.at(*w, now);
        if (!linger_.empty() && (!next || std::get<0>(linger_.front()) < *next))
            next = std::get<0>(linger_.front());
        return next;
    }

    // Event handlers (ClientConn's sides call them).
    void tcp_ready(ClientConn& c, uint32_t events) {
        c.pump.note_events(events);
        if (events & EPOLLERR) {  // reset: abort the conversation
            if (!c.established) {
                close(c);
                return;
            }
            c.tunnel->session()->close();
        }
        if (events & (EPOLLHUP | EPOLLERR)) {
            // The pump still reads its last bytes when the conversation's datagrams call it.
            c.pump.unwatch(loop_);
        }
        if (c.established) relay(c);
    }
    void udp_ready(ClientConn& c) {
        const uint32_t ms = clock_.ms(loop_.now());
        for (int round = 0; round < kRounds; ++round) {
            const int n = in_.receive(c.udp.get(), false, kBatch);
            if (n < 0) {
                // ICMP for an earlier datagram (KCP retries), or a signal: read on.
                if (errno == EINTR || errno == ECONNREFUSED) continue;
                break;
            }
            for (int i = 0; i < n; ++i) {
                ++stats_.datagrams_in;
                const auto slot = static_cast<size_t>(i);
                if (in_.truncated(slot)) continue;  // longer than any tunnel datagram
                c.tunnel->on_datagram(in_.data(slot), ms);
            }
            if (static_cast<size_t>(n) < kBatch) break;
        }
        if (!c.established && c.tunnel->state() == kcp::ClientTunnel::State::established) {
            c.established = true;
            ++stats_.sessions;
            if (options_.log_connections)
                log::info(tag_, ": ", c.peer, " tunnelled as conv ",
                          c.tunnel->session()->kcp().conv());
        }
        if (c.established)
            relay(c);
        else
            mark_dirty(c);
    }
    // Queued: sent with the rest of this event-loop pass's datagrams at the end of tick().
    void send(ClientConn& c, std::span<const uint8_t> d) { out_.add(c.udp.get(), nullptr, 0, d); }
    void accept_ready() {
        while (!draining_ && !free_.empty()) {
            SockAddr peer;
            peer.len = sizeof peer.storage;
            unique_fd fd(
                ::accept4(listener_.get(), peer.get(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!fd) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) ++stats_.accept_errors;
                return;
            }
            if (!route_.admits(peer.get(), peer.len)) {
                ++stats_.denied;
                continue;
            }
            open_conn(std::move(fd), peer);
        }
        if (free_.empty() && !paused_ && !draining_) {
            paused_ = true;  // full: the listen backlog holds the next clients
            loop_.remove(listener_.get());
        }
    }

  private:
    struct AcceptSide : EventSource {
        KcpClient* self = nullptr;
        void on_event(uint32_t) override { self->accept_ready(); }
    };

    void open_conn(unique_fd tcp, const SockAddr& peer) {
        const uint32_t now = clock_.ms(loop_.now());
        // Whatever the client has sent already rides in the HELLO.
        std::vector<uint8_t> early(static_cast<size_t>(options_.mtu));
        bool ended = false;
        const ssize_t got = ::recv(tcp.get(), early.data(), early.size(), MSG_DONTWAIT);
        early.resize(got > 0 ? static_cast<size_t>(got) : 0);
        if (got == 0) ended = true;
        unique_fd udp;
        for (const SockAddr& a : route_.addresses) {
            udp.reset(::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (!udp) continue;
            if (options_.socket_buffer > 0) {
                ::setsockopt(udp.get(), SOL_SOCKET, SO_RCVBUF, &options_.socket_buffer,
                             sizeof options_.socket_buffer);
                ::setsockopt(udp.get(), SOL_SOCKET, SO_SNDBUF, &options_.socket_buffer,
                             sizeof options_.socket_buffer);
            }
            if (::connect(udp.get(), a.get(), a.len) == 0) break;
            udp.reset();
        }
        if (!udp) {
            ++stats_.accept_errors;
            return;
        }
        const uint32_t id = free_.back();
        auto c = std::make_unique<ClientConn>();
        c->self = this;
        c->id = id;
        c->serial = ++serial_;
        c->udp = std::move(udp);
        c->pump = StreamPump(std::move(tcp));
        c->peer = format_sockaddr(peer);
        c->tcp_side.conn = c->udp_side.conn = c->sink.conn = c.get();
        try {
            c->tunnel.emplace(security_, options_.psk, config_, static_cast<size_t>(options_.mtu),
                              random_, unix_seconds(), early, now);
        } catch (const std::exception& e) {
            log::warning(tag_, ": ", c->peer, ": ", e.what());
            ++stats_.accept_errors;
            return;
        }
        const size_t taken = c->tunnel->early_taken();
        if (taken < early.size())
            c->pump.queue_to_tunnel(std::span<const uint8_t>(early).subspan(taken));
        if (ended) c->pump.tcp_ended();
        if (!loop_.add(c->udp.get(), EPOLLIN, &c->udp_side) ||
            !c->pump.watch(loop_, 0, &c->tcp_side)) {
            loop_.remove(c->udp.get());
            ++stats_.accept_errors;
            return;
        }
        send(*c, c->tunnel->hello());
        free_.pop_back();
        wheel_.schedule(id, c->tunnel->next_deadline());
        if (options_.log_connections) log::info(tag_, ": ", c->peer, " accepted");
        slots_[id] = std::move(c);
    }

    void mark_dirty(ClientConn& c) {
        if (c.dirty) return;
        c.dirty = true;
        dirty_.push_back(c.id);
    }

    void relay(ClientConn& c) {
        kcp::TunnelSession& s = *c.tunnel->session();
        if (c.pump.pump(s, stats_.bytes_up, stats_.bytes_down) == StreamPump::Result::tcp_failed) {
            s.close();  // the peer hears CLOSE with the next flush
        }
        c.pump.follow(loop_, s);
        mark_dirty(c);
    }

    void flush(ClientConn& c, Clock::time_point now, uint32_t ms) {
        c.tunnel->flush(ms, c.sink);
        if (c.tunnel->state() == kcp::ClientTunnel::State::gave_up) {
            ++stats_.handshake_failures;
            log::warning(tag_, ": ", c.peer, ": no answer from the KCP server ",
                         format_sockaddr(route_.addresses.front()), " (gave up after ",
                         c.tunnel->hellos_sent(), " HELLOs)");
            close(c);
            return;
        }
        kcp::TunnelSession* s = c.tunnel->session();
        if (s != nullptr) {
            if (options_.statistics && c.stats_pacer.due(now, c.pump))
                log::info(tag_, ": ", stats_line(*s, c.pump));
            if (s->state() != kcp::TunnelSession::State::open) {
                if (options_.log_connections)
                    log::info(tag_, ": ", c.peer, " conv ", s->kcp().conv(), " ended");
                close(c);
                return;
            }
            if (!c.lingering && c.pump.done(*s)) {
                if (options_.log_connections)
                    log::info(tag_, ": ", c.peer, " conv ", s->kcp().conv(), " finished");
                c.pump.unwatch(loop_);
                c.pump.close_tcp();
                c.lingering = true;
                linger_.emplace_back(now + kTunnelLinger, c.id, c.serial);
            }
        }
        wheel_.schedule(c.id, c.tunnel->next_deadline());
    }

    void close(ClientConn& c) {
        const uint32_t id = c.id;
        out_.flush();  // its last datagrams (a CLOSE) go before its socket does
        if (c.tunnel) {
            stats_.dropped_handshake += c.tunnel->refused_welcomes();
            if (auto* s = c.tunnel->session()) add_session_counters(*s, stats_, true);
        }
        loop_.remove(c.udp.get());
        c.pump.unwatch(loop_);
        wheel_.cancel(id);
        slots_[id].reset();  // closes both sockets; a dirty entry left behind finds nothing
        free_.push_back(id);
        if (paused_ && !draining_) {
            paused_ = false;
            loop_.add(listener_.get(), EPOLLIN, &accept_side_);
        }
    }

    EventLoop& loop_;
    unique_fd listener_;
    TunnelOptions options_;
    kcp::Security security_;
    kcp::TunnelConfig config_;
    TunnelRoute route_;
    std::string tag_;
    size_t max_;
    TunnelClock clock_;
    kcp::TimerWheel wheel_;
    kcp::SystemRandom random_;
    std::vector<std::unique_ptr<ClientConn>> slots_;  // index = timer id
    std::vector<uint32_t> free_;
    std::vector<uint32_t> dirty_;
    std::vector<uint32_t> due_;
    // Finished conversations' ends: one linger time for all, so a FIFO keeps them in order.
    std::deque<std::tuple<Clock::time_point, uint32_t, uint64_t>> linger_;
    uint64_t serial_ = 0;
    AcceptSide accept_side_;
    ipc::TunnelStats stats_;
    RecvBatch in_;
    OutputBatch out_;  // counts into stats_, writes to slots_' sockets: declared after both
    bool draining_ = false;
    bool paused_ = false;
};

void ClientConn::TcpSide::on_event(uint32_t events) {
    conn->self->tcp_ready(*conn, events);
}
void ClientConn::UdpSide::on_event(uint32_t) {
    conn->self->udp_ready(*conn);
}
void ClientConn::Sink::send_datagram(std::span<const uint8_t> d) {
    conn->self->send(*conn, d);
}

}  // namespace

std::unique_ptr<WorkerBody> make_kcp_client(const Handover& h, const TunnelOptions& options,
                                            unique_fd listener, EventLoop& loop) {
    return std::make_unique<KcpClient>(h, options, std::move(listener), loop);
}

}  // namespace pfp::worker
