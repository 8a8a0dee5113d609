#pragma once
// One relayed connection: the accepted client, its upstream, and a direction each way.
#include <boost/intrusive/list.hpp>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>

#include "common/event_loop.hpp"
#include "common/unique_fd.hpp"
#include "workers/relay_pools.hpp"

namespace pfp::worker {

class StreamRelay;
class Connection;

// One of the connection's two sockets as seen by epoll.
struct Side : EventSource {
    Connection* conn = nullptr;
    bool upstream = false;
    unique_fd fd;
    bool readable = false;  // edge-triggered readiness, cleared when a call returns EAGAIN
    bool writable = false;
    void on_event(uint32_t events) override;
};

// Bytes moving from one side to the other.
struct Direction {
    std::optional<Pipe> pipe;             // splice mode, while bytes are in flight
    std::unique_ptr<std::byte[]> buffer;  // copy mode, while bytes are in flight
    size_t offset = 0;                    // copy mode: first unsent byte
    size_t pending = 0;                   // bytes read but not yet written
    bool copy = false;
    bool eof = false;        // the source sent FIN
    bool shut_down = false;  // FIN passed on with shutdown(SHUT_WR)
    bool done() const { return eof && shut_down && pending == 0; }
};

using ListHook = boost::intrusive::list_member_hook<>;

class Connection {
  public:
    Connection(StreamRelay& relay, unique_fd client, bool copy_mode);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void on_side_event(Side& side, uint32_t events);
    bool register_client();                    // false: epoll_ctl failed, connection closed
    void attach_upstream(unique_fd upstream);  // connect in progress: wait for it
    // Moves bytes both ways until nothing more can move or the budget is spent.
    void pump();
    void close(const char* reason, int err = 0);

    StreamRelay& relay;
    Side client;
    Side upstream;
    Direction up;    // client -> upstream
    Direction down;  // upstream -> client
    bool connecting = true;
    bool closed = false;
    bool queued = false;       // in the relay's ready queue (budget ran out with work left)
    bool awaiting_fd = false;  // no fd was left for the upstream socket: retried later
    Clock::time_point since;   // connect start, then last activity
    std::list<Connection>::iterator self;
    ListHook state_hook;  // connecting / relaying / closed
    ListHook ready_hook;  // ready queue, or (while awaiting_fd) the fd wait list

  private:
    int pump_direction(Direction& d, Side& from, Side& to, uint64_t& counter, size_t& budget);
    void release(Direction& d);
    bool acquire(Direction& d);
    void finish_connect();
};

using StateList = boost::intrusive::list<
    Connection, boost::intrusive::member_hook<Connection, ListHook, &Connection::state_hook>>;
using ReadyList = boost::intrusive::list<
    Connection, boost::intrusive::member_hook<Connection, ListHook, &Connection::ready_hook>>;

}  // namespace pfp::worker
