// kcp-client (declared in worker_body.hpp): each accepted TCP connection becomes one KCP
// conversation (docs/kcp-tunnel.md) over a UDP socket of its own, connected to the kcp-server.
// The first bytes the client has sent by then ride in the HELLO; the HELLO is resent by the core's
// schedule until a WELCOME authenticates; then StreamPump relays both ways with half-close. Every
// connection's deadlines share one timer wheel; nothing polls.
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <memory>
#include <optional>
#include <vector>

#include "common/allow_list.hpp"
#include "common/kcp/client_tunnel.hpp"
#include "common/kcp/timer_wheel.hpp"
#include "common/log.hpp"
#include "workers/kcp_io.hpp"
#include "workers/redirected_destination.hpp"
#include "workers/route.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {
namespace {

constexpr size_t kDatagramBuffer = 2048;  // > the largest tunnel MTU (1500)
constexpr int kDatagramsPerEvent = 64;    // then the loop's other sources get their turn
constexpr auto kStatsEvery = std::chrono::seconds(1);

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
    uint32_t tcp_events = 0;
    bool registered_tcp = false;
    bool established = false;
    bool dirty = false;
    Clock::time_point next_stats{};
    uint64_t stats_bytes = 0;  // bytes moved when the last stats line was written
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
          upstream_(parse_endpoint(o.upstream)),
          host_upstream_(!o.upstream_host.empty()),
          tag_(h.tag()),
          max_(static_cast<size_t>(o.max_connections)),
          wheel_(max_, clock_.ms(Clock::now())) {
        if (!o.allowed_sources.empty()) sources_ = CidrSet::parse(o.allowed_sources);
        addresses_ = upstream_address_set(o.upstream_host, o.upstream_addresses, upstream_);
        if (addresses_.empty()) addresses_.push_back(upstream_.addr);
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
        if (!host_upstream_ || addresses.empty()) return false;
        for (const SockAddr& a : addresses)
            if (port_of(a) != upstream_.port) return false;
        addresses_ = std::move(addresses);
        return true;
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
        const auto next = wheel_.next_expiry();
        if (!next) return std::nullopt;
        return clock_.at(*next, now);
    }

    // Event handlers (ClientConn's sides call them).
    void tcp_ready(ClientConn& c, uint32_t events) {
        if (events & EPOLLERR) {  // reset: abort the conversation
            if (!c.established) {
                close(c);
                return;
            }
            c.tunnel->session()->close();
        }
        if (events & (EPOLLHUP | EPOLLERR)) {
            // Reported whatever the interest: leave the socket out of the loop, or it would spin;
            // the pump still reads its last bytes when the conversation's datagrams call it.
            loop_.remove(c.pump.fd());
            c.registered_tcp = false;
            c.tcp_events = 0;
        }
        if (c.established) relay(c);
    }
    void udp_ready(ClientConn& c) {
        const uint32_t ms = clock_.ms(loop_.now());
        std::array<uint8_t, kDatagramBuffer> buf;
        for (int i = 0; i < kDatagramsPerEvent; ++i) {
            const ssize_t n = ::recv(c.udp.get(), buf.data(), buf.size(), MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == ECONNREFUSED) continue;  // ICMP for an earlier datagram: KCP retries
                break;
            }
            ++stats_.datagrams_in;
            c.tunnel->on_datagram(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), ms);
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
    void send(ClientConn& c, std::span<const uint8_t> d) {
        const ssize_t n = ::send(c.udp.get(), d.data(), d.size(), MSG_DONTWAIT);
        if (n == static_cast<ssize_t>(d.size()))
            ++stats_.datagrams_out;
        else
            ++stats_.send_errors;
    }
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
            if (sources_ && !sources_->contains(peer)) {
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
        for (const SockAddr& a : addresses_) {
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
            !loop_.add(c->pump.fd(), 0, &c->tcp_side)) {
            loop_.remove(c->udp.get());
            ++stats_.accept_errors;
            return;
        }
        c->registered_tcp = true;
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
        const uint32_t want = c.pump.wanted_events(s);
        if (c.registered_tcp && want != c.tcp_events) {
            loop_.modify(c.pump.fd(), want, &c.tcp_side);
            c.tcp_events = want;
        }
        mark_dirty(c);
    }

    void flush(ClientConn& c, Clock::time_point now, uint32_t ms) {
        c.tunnel->flush(ms, c.sink);
        if (c.tunnel->state() == kcp::ClientTunnel::State::gave_up) {
            ++stats_.handshake_failures;
            log::warning(tag_, ": ", c.peer, ": no answer from the KCP server ",
                         format_sockaddr(addresses_.front()), " (gave up after ",
                         c.tunnel->hellos_sent(), " HELLOs)");
            close(c);
            return;
        }
        kcp::TunnelSession* s = c.tunnel->session();
        if (s != nullptr) {
            // At most one line per connection per kStatsEvery, and only when bytes moved.
            const uint64_t moved = c.pump.bytes_to_tcp + c.pump.bytes_to_tunnel;
            if (options_.statistics && now >= c.next_stats && moved != c.stats_bytes) {
                log::info(tag_, ": ", stats_line(*s, c.pump));
                c.stats_bytes = moved;
                c.next_stats = now + kStatsEvery;
            }
            if (s->state() != kcp::TunnelSession::State::open || c.pump.done(*s)) {
                if (options_.log_connections)
                    log::info(
                        tag_, ": ", c.peer, " conv ", s->kcp().conv(),
                        s->state() == kcp::TunnelSession::State::open ? " finished" : " ended");
                close(c);
                return;
            }
        }
        wheel_.schedule(c.id, c.tunnel->next_deadline());
    }

    void close(ClientConn& c) {
        const uint32_t id = c.id;
        if (c.tunnel) {
            stats_.dropped_handshake += c.tunnel->refused_welcomes();
            if (auto* s = c.tunnel->session()) add_session_counters(*s, stats_, true);
        }
        loop_.remove(c.udp.get());
        if (c.registered_tcp) loop_.remove(c.pump.fd());
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
    Endpoint upstream_;
    bool host_upstream_;
    std::vector<SockAddr> addresses_;
    std::string tag_;
    std::optional<CidrSet> sources_;
    size_t max_;
    TunnelClock clock_;
    kcp::TimerWheel wheel_;
    kcp::SystemRandom random_;
    std::vector<std::unique_ptr<ClientConn>> slots_;  // index = timer id
    std::vector<uint32_t> free_;
    std::vector<uint32_t> dirty_;
    std::vector<uint32_t> due_;
    AcceptSide accept_side_;
    ipc::TunnelStats stats_;
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
