// kcp-server (declared in worker_body.hpp): KCP conversations (docs/kcp-tunnel.md) arrive on the
// handed-over UDP socket, read in batches (recvmmsg); kcp::ServerSessions checks, rate-limits and
// dispatches each datagram. Each opened conversation gets one non-blocking TCP connection to the
// upstream; the HELLO's early bytes go first, then StreamPump relays both ways with half-close.
// ServerSessions' timer wheel drives every conversation; connect timeouts are a FIFO (one
// timeout for all, so deadlines come in order).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "common/allow_list.hpp"
#include "common/kcp/server_sessions.hpp"
#include "common/log.hpp"
#include "workers/datagram_batch.hpp"
#include "workers/kcp_io.hpp"
#include "workers/redirected_destination.hpp"
#include "workers/route.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {
namespace {

constexpr size_t kBatch = 32;
constexpr size_t kDatagramBuffer = 2048;  // > the largest tunnel MTU; longer ones are cut, dropped
constexpr int kRounds = 4;                // batches per readiness event
constexpr auto kHandshakeSweep = std::chrono::seconds(1);

class KcpServer;

struct ServerConn {
    struct TcpSide : EventSource {
        ServerConn* conn = nullptr;
        void on_event(uint32_t events) override;
    };
    KcpServer* self = nullptr;
    kcp::ServerSessions::Id id = 0;
    uint32_t conv = 0;
    SockAddr source;
    StreamPump pump;
    size_t next_address = 0;  // the next upstream address to try
    bool connecting = true;
    bool dirty = false;
    bool touched = false;  // datagrams delivered in the current batch: relay once after it
    bool lingering = false;
    kcp::TunnelSession* session = nullptr;  // ServerSessions keeps it in place until remove()
    Clock::time_point connect_deadline{};
    StatsPacer stats_pacer;
    TcpSide tcp_side;
};

class KcpServer final : public WorkerBody, public kcp::ServerOutput {
  public:
    KcpServer(const Handover& h, const TunnelOptions& o, unique_fd sock, EventLoop& loop)
        : loop_(loop),
          sock_(std::move(sock)),
          options_(o),
          route_(o),
          tag_(h.tag()),
          sessions_(
              kcp::ServerHandshakeConfig{.security = tunnel_security(o), .psk = o.psk},
              tunnel_config(o),
              kcp::ServerLimits{.max_sessions = static_cast<size_t>(o.max_sessions),
                                .max_per_source = static_cast<size_t>(o.max_per_source),
                                .hellos_per_second = static_cast<uint32_t>(o.hellos_per_second),
                                .hello_burst = static_cast<uint32_t>(o.hello_burst)},
              clock_.ms(Clock::now())),
          in_(kBatch, kDatagramBuffer, kDatagramBuffer),
          out_(kDatagramBuffer, stats_.datagrams_out, stats_.send_errors) {
        conns_.resize(static_cast<size_t>(o.max_sessions));
        udp_side_.self = this;
        if (!loop_.add(sock_.get(), EPOLLIN, &udp_side_))
            throw std::runtime_error("epoll_ctl(datagram socket) failed");
    }

    void start() override {}
    // Draining: open conversations go on; new ones are closed as they open.
    void stop_accepting() override { draining_ = true; }
    size_t active() const override { return sessions_.sessions(); }
    bool update_upstream(std::vector<SockAddr> addresses) override {
        return route_.update(std::move(addresses));
    }
    std::string encoded_stats() const override {
        ipc::TunnelStats s = stats_;
        s.sessions_active = sessions_.sessions();
        const auto drop = [this](kcp::DropReason r) { return sessions_.dropped(r); };
        s.dropped_malformed = drop(kcp::DropReason::malformed) + truncated_;
        s.dropped_rate_limited = drop(kcp::DropReason::rate_limited);
        s.dropped_handshake = drop(kcp::DropReason::handshake);
        s.dropped_full = drop(kcp::DropReason::full);
        s.dropped_stale_duplicate = drop(kcp::DropReason::stale_duplicate);
        s.dropped_unknown = drop(kcp::DropReason::unknown);
        s.dropped_refused = drop(kcp::DropReason::refused);
        for (const auto& c : conns_)
            if (c) add_session_counters(*c->session, s, false);
        return ipc::encode_stats(s);
    }

    std::optional<Clock::time_point> tick(Clock::time_point now) override {
        const uint32_t ms = clock_.ms(now);
        for (const auto id : dirty_) {
            if (ServerConn* c = conns_[id].get()) {
                c->dirty = false;
                flush(*c, now, ms);
            }
        }
        dirty_.clear();
        ended_.clear();
        sessions_.tick(ms, *this, ended_);
        for (const auto id : ended_) {
            if (ServerConn* c = conns_[id].get())
                end(*c, ended_why(id));
            else
                sessions_.remove(id);  // refused while draining: its CLOSE went out
        }
        while (!linger_queue_.empty()) {
            const auto& [deadline, id, conv] = linger_queue_.front();
            if (deadline > now) break;
            ServerConn* c = conns_[id].get();
            if (c && c->conv == conv) end(*c, nullptr);
            linger_queue_.pop_front();
        }
        while (!connect_queue_.empty()) {
            const auto& [deadline, id, conv] = connect_queue_.front();
            if (deadline > now) break;
            ServerConn* c = conns_[id].get();
            if (c && c->conv == conv && c->connecting) connect_failed(*c, ETIMEDOUT);
            connect_queue_.pop_front();
        }
        if (now >= next_sweep_) {
            sessions_.expire_handshakes(unix_seconds(), ms);
            next_sweep_ = now + kHandshakeSweep;
        }
        std::optional<Clock::time_point> next = next_sweep_;
        const auto consider = [&next](Clock::time_point t) {
            if (!next || t < *next) next = t;
        };
        if (const auto d = sessions_.next_deadline()) consider(clock_.at(*d, now));
        if (!connect_queue_.empty()) consider(std::get<0>(connect_queue_.front()));
        if (!linger_queue_.empty()) consider(std::get<0>(linger_queue_.front()));
        if (!dirty_.empty()) consider(now);
        out_.flush();  // everything this pass produced, before the loop waits
        return next;
    }

    void send_to(std::span<const uint8_t> source, std::span<const uint8_t> datagram) override {
        // Queued: sent with the rest of this event-loop pass's datagrams at the end of tick().
        sockaddr_storage to{};
        const size_t len = std::min(source.size(), sizeof to);
        std::memcpy(&to, source.data(), len);
        out_.add(sock_.get(), reinterpret_cast<const sockaddr*>(&to), static_cast<socklen_t>(len),
                 datagram);
    }

    void udp_ready() {
        for (int round = 0; round < kRounds; ++round) {
            const int n = in_.receive(sock_.get(), true, kBatch);
            if (n <= 0) return;
            const auto now = loop_.now();
            const uint32_t ms = clock_.ms(now);
            const uint64_t unix_now = unix_seconds();
            for (int i = 0; i < n; ++i) {
                ++stats_.datagrams_in;
                const auto slot = static_cast<size_t>(i);
                if (in_.truncated(slot)) {
                    ++truncated_;
                    continue;
                }
                const sockaddr_storage& name = in_.name(slot);
                const socklen_t name_len = in_.name_len(slot);
                if (!route_.admits(reinterpret_cast<const sockaddr*>(&name), name_len)) {
                    ++stats_.denied;
                    continue;
                }
                const std::span<const uint8_t> source(reinterpret_cast<const uint8_t*>(&name),
                                                      name_len);
                const auto d =
                    sessions_.on_datagram(in_.data(slot), source, ms, unix_now, random_, *this);
                using Kind = kcp::ServerSessions::Dispatch::Kind;
                if (d.kind == Kind::opened) {
                    opened(d.id, name, name_len, d.early_data, now);
                } else if (d.kind == Kind::delivered) {
                    if (ServerConn* c = conns_[d.id].get()) delivered(*c);
                }
            }
            // One pump per conversation per batch, not per datagram: its TCP side gets the
            // batch's bytes in one send.
            for (const auto id : touched_) {
                if (ServerConn* c = conns_[id].get()) {
                    c->touched = false;
                    if (kcp::TunnelSession* s = sessions_.session(id)) relay(*c, *s);
                }
            }
            touched_.clear();
            if (static_cast<size_t>(n) < kBatch) return;
        }
    }

    void tcp_ready(ServerConn& c, uint32_t events) {
        kcp::TunnelSession* s = sessions_.session(c.id);
        if (s == nullptr) return;
        c.pump.note_events(events);
        if (c.connecting) {
            int err = 0;
            socklen_t len = sizeof err;
            if (::getsockopt(c.pump.fd(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
            if (err == 0 && (events & EPOLLOUT)) {
                c.connecting = false;
                if (options_.log_connections)
                    log::info(tag_, ": conv ", c.conv, " connected to the upstream");
            } else if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
                connect_failed(c, err != 0 ? err : ECONNREFUSED);
                return;
            } else {
                return;
            }
        } else if (events & (EPOLLERR | EPOLLHUP)) {
            if (events & EPOLLERR) s->close();
            c.pump.unwatch(loop_);
        }
        relay(c, *s);
    }

  private:
    struct UdpSide : EventSource {
        KcpServer* self = nullptr;
        void on_event(uint32_t) override { self->udp_ready(); }
    };

    void opened(kcp::ServerSessions::Id id, const sockaddr_storage& name, socklen_t len,
                std::span<const uint8_t> early, Clock::time_point now) {
        kcp::TunnelSession* s = sessions_.session(id);
        if (draining_ || s == nullptr) {
            if (s) s->close();
            sessions_.reschedule(id);  // the CLOSE goes out with its flush; tick() ends it
            return;
        }
        ++stats_.sessions;
        auto c = std::make_unique<ServerConn>();
        c->self = this;
        c->id = id;
        c->conv = s->kcp().conv();
        c->session = s;
        std::memcpy(&c->source.storage, &name, len);
        c->source.len = len;
        c->tcp_side.conn = c.get();
        c->pump.queue_to_tcp(early);  // before anything the conversation delivers
        ServerConn& conn = *c;
        conns_[id] = std::move(c);
        if (options_.log_connections)
            log::info(tag_, ": conv ", conn.conv, " from ", format_sockaddr(conn.source),
                      " opened");
        connect_next(conn, now);
    }

    // A non-blocking connect to the next upstream address; false when none is left.
    void connect_next(ServerConn& c, Clock::time_point now) {
        while (c.next_address < route_.addresses.size()) {
            const SockAddr& a = route_.addresses[c.next_address++];
            unique_fd fd(::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (!fd) continue;
            const int one = 1;
            ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (::connect(fd.get(), a.get(), a.len) < 0 && errno != EINPROGRESS) continue;
            c.pump.set_tcp(std::move(fd));
            if (!c.pump.watch(loop_, EPOLLOUT, &c.tcp_side)) continue;
            c.connecting = true;
            c.connect_deadline = now + options_.connect_timeout;
            connect_queue_.emplace_back(c.connect_deadline, c.id, c.conv);
            return;
        }
        connect_failed(c, ECONNREFUSED);
    }

    void connect_failed(ServerConn& c, int err) {
        ++stats_.connect_failures;
        log::warning(tag_, ": conv ", c.conv, ": failed to connect to TCP endpoint ",
                     options_.upstream, ": ", std::strerror(err));
        if (kcp::TunnelSession* s = sessions_.session(c.id)) s->close();  // the peer hears CLOSE
        c.pump.unwatch(loop_);
        c.pump.close_tcp();
        c.connecting = false;
        mark_dirty(c);
    }

    void delivered(ServerConn& c) {
        kcp::TunnelSession* s = sessions_.session(c.id);
        if (s == nullptr) return;
        if (!c.connecting && !c.lingering) {
            if (!c.touched) {  // relayed after the batch
                c.touched = true;
                touched_.push_back(c.id);
            }
            return;
        }
        mark_dirty(c);  // acks to send
    }

    void relay(ServerConn& c, kcp::TunnelSession& s) {
        if (c.pump.fd() >= 0 &&
            c.pump.pump(s, stats_.bytes_down, stats_.bytes_up) == StreamPump::Result::tcp_failed)
            s.close();
        c.pump.follow(loop_, s);
        mark_dirty(c);
    }

    void mark_dirty(ServerConn& c) {
        if (c.dirty) return;
        c.dirty = true;
        dirty_.push_back(c.id);
    }

    struct ConnSink final : kcp::DatagramSink {
        KcpServer* self = nullptr;
        const SockAddr* to = nullptr;
        void send_datagram(std::span<const uint8_t> d) override {
            self->send_to(
                std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(to->get()), to->len), d);
        }
    };

    void flush(ServerConn& c, Clock::time_point now, uint32_t ms) {
        kcp::TunnelSession* s = sessions_.session(c.id);
        if (s == nullptr) return;
        ConnSink sink;
        sink.self = this;
        sink.to = &c.source;
        s->flush(ms, sink);
        settle(c, now);
    }

    // After the session moved: statistics, the end of the conversation, its next deadline.
    void settle(ServerConn& c, Clock::time_point now) {
        kcp::TunnelSession* s = sessions_.session(c.id);
        if (s == nullptr) return;
        if (options_.statistics && c.stats_pacer.due(now, c.pump))
            log::info(tag_, ": ", stats_line(*s, c.pump));
        if (s->state() != kcp::TunnelSession::State::open) {
            end(c, "closed");
            return;
        }
        if (!c.lingering && c.pump.done(*s)) {
            c.pump.unwatch(loop_);
            c.pump.close_tcp();
            c.lingering = true;
            linger_queue_.emplace_back(now + kTunnelLinger, c.id, c.conv);
            if (options_.log_connections) log::info(tag_, ": conv ", c.conv, " finished");
        }
        sessions_.reschedule(c.id);
    }

    // For the log: a silent peer is worth telling apart (the host may be gone).
    const char* ended_why(kcp::ServerSessions::Id id) {
        const kcp::TunnelSession* s = sessions_.session(id);
        if (s == nullptr || s->state() != kcp::TunnelSession::State::expired) return "ended";
        return s->fin_sent() || s->fin_received() ? "expired (peer silent while closing)"
                                                  : "expired (peer silent)";
    }

    void end(ServerConn& c, const char* why) {
        const auto id = c.id;
        if (const auto* s = sessions_.session(id)) add_session_counters(*s, stats_, false);
        if (why && options_.log_connections) log::info(tag_, ": conv ", c.conv, " ", why);
        c.pump.unwatch(loop_);
        sessions_.remove(id);
        conns_[id].reset();
    }

    EventLoop& loop_;
    unique_fd sock_;
    TunnelOptions options_;
    TunnelRoute route_;
    std::string tag_;
    TunnelClock clock_;
    kcp::ServerSessions sessions_;
    kcp::SystemRandom random_;
    std::vector<std::unique_ptr<ServerConn>> conns_;  // index = session id
    std::vector<kcp::ServerSessions::Id> dirty_, ended_, touched_;
    // Connect timeouts and lingering ends: one duration each, so a FIFO keeps them in order.
    using Deadline = std::tuple<Clock::time_point, kcp::ServerSessions::Id, uint32_t>;
    std::deque<Deadline> connect_queue_, linger_queue_;
    Clock::time_point next_sweep_{};
    UdpSide udp_side_;
    ipc::TunnelStats stats_;
    RecvBatch in_;
    OutputBatch out_;         // counts into stats_, writes to sock_: declared after both
    uint64_t truncated_ = 0;  // longer than any tunnel datagram: never a valid one
    bool draining_ = false;
};

void ServerConn::TcpSide::on_event(uint32_t events) {
    conn->self->tcp_ready(*conn, events);
}

}  // namespace

std::unique_ptr<WorkerBody> make_kcp_server(const Handover& h, const TunnelOptions& options,
                                            unique_fd sock, EventLoop& loop) {
    return std::make_unique<KcpServer>(h, options, std::move(sock), loop);
}

}  // namespace pfp::worker
