#pragma once
// One relayed connection: the accepted client, its upstream, and a direction each way.
#include <boost/intrusive/list.hpp>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "common/endpoint.hpp"
#include "common/event_loop.hpp"
#include "common/unique_fd.hpp"
#include "workers/connection_log.hpp"
#include "workers/relay_pools.hpp"

namespace pfp::worker {

class StreamRelay;
class Connection;
struct ThreadPair;

// One of the connection's two sockets as seen by epoll.
struct Side : EventSource {
    Connection* conn = nullptr;
    bool upstream = false;
    unique_fd fd;
    bool readable = false;  // edge-triggered readiness, cleared when a call returns EAGAIN
    bool writable = false;
    bool peer_closed = false;  // EPOLLRDHUP or EPOLLHUP seen: the peer is gone or sent its FIN
    bool fin = false;          // EPOLLRDHUP without EPOLLERR: a FIN, behind all the peer's data
    bool tcp = false;          // a TCP socket (IPv4 or IPv6): MSG_MORE corks, see pump_direction
    void on_event(uint32_t events) override;
};

// Bytes moving from one side to the other. A direction reads with recv() into a buffer until a
// read fills the whole buffer (bulk), then splices through a pipe until a splice moves less than
// kSpliceBelow; small exchanges thus cost a recv and a send, bulk moves without copies.
struct Direction {
    std::optional<Pipe> pipe;             // while spliced bytes are in flight
    std::unique_ptr<std::byte[]> buffer;  // while copied bytes are in flight
    size_t offset = 0;                    // copied bytes: first unsent byte
    size_t pending = 0;                   // bytes read but not yet written
    bool copy = false;       // never splice (policy "splice": false, vsock, or no pipe)
    bool bulk = false;       // reads splice (only when !copy)
    bool in_pipe = false;    // the pending bytes are in the pipe, not the buffer
    bool eof = false;        // the source sent FIN
    bool shut_down = false;  // FIN passed on with shutdown(SHUT_WR)
    bool done() const { return eof && shut_down && pending == 0; }
    // A splice that moves less than this goes back to copying (hysteresis against the
    // buffer's full 64 KiB that switches to splicing).
    static constexpr size_t kSpliceBelow = 16 * 1024;
};

using ListHook = boost::intrusive::list_member_hook<>;

enum class Phase {
    reading_header,  // waiting for the client's transparent header
    connecting,      // upstream connect in progress (or waiting for an fd)
    handshake,       // fc-vsock: CONNECT sent, waiting for "OK <n>"
    relaying,
};

// What a connection needs only until it relays: freed then, so idle connections stay small.
struct Setup {
    SockAddr peer;         // the client's address
    Endpoint dest;         // where the upstream connect goes
    std::string preamble;  // bytes for the upstream before any payload (headers)
    bool fc_handshake = false;
    // A host-name upstream: the address set when the connection began, and the next to try
    // when a connect fails.
    std::shared_ptr<const std::vector<SockAddr>> candidates;
    size_t next_candidate = 0;
};

class Connection {
  public:
    // copy_mode: the policy's "splice": false. Directions that write into a vsock socket copy
    // in any case. client_family: the listener's address family.
    Connection(StreamRelay& relay, unique_fd client, bool copy_mode, int client_family);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void on_side_event(Side& side, uint32_t events);
    bool register_client();  // false: epoll_ctl failed, connection closed
    // Both sockets back into the epoll set (a hand-off to threads that failed); false: closed.
    bool register_sides();
    // Connect in progress: wait for it. A vsock upstream is written with copies.
    void attach_upstream(unique_fd upstream, int upstream_family);
    // A failed connect's socket goes before the next address is tried.
    void detach_upstream();
    bool connecting() const { return phase != Phase::relaying; }
    // Moves bytes both ways until nothing more can move or the budget is spent.
    void pump();
    void close(const char* reason, int err = 0);

    StreamRelay& relay;
    Side client;
    Side upstream;
    Direction up;    // client -> upstream
    Direction down;  // upstream -> client
    Phase phase = Phase::connecting;
    bool closed = false;
    bool queued = false;       // in the relay's ready queue (budget ran out with work left)
    bool awaiting_fd = false;  // no fd was left for the upstream socket: retried later
    // Served by a thread pair (thread_relay.hpp) since its client spoke after an answer: off the
    // epoll set, in the relay's threaded list; `pair` is the running pair (null once its threads
    // are joined). `stays_on_events`: the hand-off was refused once (bound, no thread).
    bool threaded = false;
    bool stays_on_events = false;
    ThreadPair* pair = nullptr;
    Clock::time_point since;  // connect start, then last activity
    std::list<Connection>::iterator self;
    std::unique_ptr<Setup> setup;
    std::unique_ptr<ConnectionLog> log;  // only with log_connections or statistics
    uint64_t bytes_up = 0, bytes_down = 0;
    uint64_t reported_up = 0, reported_down = 0;
    ListHook state_hook;  // connecting / relaying / closed
    ListHook ready_hook;  // ready queue, or (while awaiting_fd) the fd wait list
    // Waiting for its upstream keepalive options (Route::keepalive_delay), due at keepalive_at.
    ListHook keepalive_hook;
    Clock::time_point keepalive_at;

  private:
    int pump_direction(Direction& d, Side& from, Side& to, uint64_t& counter, uint64_t& own,
                       size_t& budget);
    void release(Direction& d);
    bool acquire(Direction& d, bool splice);
    void finish_connect(uint32_t events);
    void read_header();
    void read_fc_reply();
    bool send_all(int fd, std::string_view bytes);
    void start_relaying();
    bool conversation_turned() const;
};

using StateList = boost::intrusive::list<
    Connection, boost::intrusive::member_hook<Connection, ListHook, &Connection::state_hook>>;
using ReadyList = boost::intrusive::list<
    Connection, boost::intrusive::member_hook<Connection, ListHook, &Connection::ready_hook>>;
using KeepaliveList = boost::intrusive::list<
    Connection, boost::intrusive::member_hook<Connection, ListHook, &Connection::keepalive_hook>>;

}  // namespace pfp::worker
