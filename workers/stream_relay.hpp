#pragma once
// The stream relay shared by every stream worker kind: accepts on a handed-over listener,
// connects each client to the upstream its Route picks (fixed, original port, or a header read
// from the client), and moves bytes both ways.
//
// Data path: edge-triggered epoll registered once per socket (no epoll_ctl per event); each
// direction copies small reads through a buffer and splices bulk through a pipe (connection.hpp),
// both taken from a pool only while the direction has data in flight, and reads until the socket
// is drained (EAGAIN, or a short recv). Backpressure: a direction reads only when its pipe (or
// copy buffer) is empty. Half-close: EOF on one side -> shutdown(SHUT_WR) on the
// other, while the other direction keeps flowing. Errors on the data path are error codes that
// end one connection, never the process.
#include <chrono>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "common/ipc.hpp"
#include "common/unique_fd.hpp"
#include "workers/connection.hpp"
#include "workers/relay_pools.hpp"
#include "workers/route.hpp"
#include "workers/thread_relay.hpp"

namespace pfp::worker {

struct RelayOptions {
    int max_connections = 10'000;
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds idle_timeout{0};  // 0: never
    // A destination header must be complete this long after accept (its own timer: a peer that
    // sends nothing must not hold a slot for a whole connect timeout).
    std::chrono::milliseconds header_timeout{5'000};
    bool splice = true;
    // Conversations handed to thread pairs at once (thread_relay.hpp); 0: no thread relay.
    int relay_threads = 0;
    std::string tag;  // "proxy/index" for log lines
};

class StreamRelay : private EventSource {
  public:
    // `route` must outlive the relay.
    StreamRelay(EventLoop& loop, unique_fd listener, const Route& route, RelayOptions opts);
    ~StreamRelay();
    StreamRelay(const StreamRelay&) = delete;
    StreamRelay& operator=(const StreamRelay&) = delete;

    void start();           // begin accepting; throws on failure
    void stop_accepting();  // drain: close our copy of the listener
    size_t active() const { return active_; }
    const ipc::StreamStats& stats() const { return stats_; }

    // Expires timeouts, frees closed connections, resumes a paused accept; returns next deadline.
    std::optional<Clock::time_point> tick(Clock::time_point now);

    // Used by Connection.
    EventLoop& loop() { return loop_; }
    PipePool& pipes() { return *pipes_; }
    BufferPool& buffers() { return *buffers_; }
    const RelayOptions& options() const { return opts_; }
    const Route& route() const { return route_; }
    // The thread engine: whether thread_direction_done logs (so each direction's end is reported).
    bool logs_each_direction(const Connection& c) const;
    // Setup steps, used by Connection: a refused client is logged and closed; begin_connect
    // works out headers and the destination and starts the upstream connect (false: out of fds,
    // the connection waits for one).
    // The destination header is complete: the connection's connect clock starts now.
    void header_read(Connection& c);
    void refuse(Connection& c, const std::string& why);
    bool begin_connect(Connection& c, Endpoint dest);
    // A connect to one of a host name's addresses failed with `err`: starts the next one (true),
    // or there is none left (false). May close `c` (out of addresses on the way).
    bool try_next_address(Connection& c, int err);
    // A host-name upstream's new address set: connections accepted from now on use it.
    void set_upstream_addresses(std::vector<SockAddr> addresses);
    bool has_host_upstream() const { return addresses_ != nullptr; }
    // How long one connect attempt may take: connect_timeout, split between a host name's
    // addresses.
    std::chrono::milliseconds attempt_timeout() const;
    ipc::StreamStats& mutable_stats() { return stats_; }
    void connection_closed(Connection& c, const char* reason, int err);
    void touch(Connection& c);  // activity: move to the back of the idle list
    void connected(Connection& c, int upstream_family);
    void requeue(Connection& c);  // budget spent with work left: continue after this batch
    // The thread relay: hands a relaying connection with nothing in flight to a thread pair
    // (true), or leaves it to this loop (no thread relay, bound reached, no thread).
    bool has_threads() const { return threads_ != nullptr; }
    bool hand_to_threads(Connection& c);
    // A thread pair's direction ended (`clean`: EOF passed on), and then both.
    void thread_direction_done(Connection& c, bool up, bool clean);
    void thread_connection_done(Connection& c, int err);

  private:
    void on_event(uint32_t events) override;  // the listener
    void accept_ready();
    void pause_accepting(Clock::duration for_how_long);
    void resume_accepting();
    // Starts `c`'s upstream connect; false when fds ran out and `c` waits in awaiting_fd_.
    bool connect_upstream(Connection& c);
    void retry_awaiting();

    EventLoop& loop_;
    unique_fd listener_;
    const Route& route_;
    RelayOptions opts_;
    std::unique_ptr<PipePool> pipes_;
    std::unique_ptr<BufferPool> buffers_;
    std::list<Connection> all_;  // owns every connection
    StateList header_;           // reading the destination header, ordered by accept time
    StateList connecting_;       // ordered by start time: the front times out first
    StateList relaying_;         // ordered by last activity: the front idles longest
    StateList threaded_;         // served by thread pairs (their idle timeout is theirs)
    StateList closed_;           // freed in tick(), after the epoll batch that closed them
    ReadyList ready_;
    ReadyList awaiting_fd_;        // accepted, but no fd was left for their upstream socket
    KeepaliveList keepalive_due_;  // relaying, upstream keepalive not set yet; by due time
    std::shared_ptr<const std::vector<SockAddr>> addresses_;  // a host-name upstream's set
    size_t active_ = 0;
    bool accepting_ = false;
    bool paused_ = false;
    std::optional<Clock::time_point> resume_at_;
    bool log_allowed(Clock::time_point& last, uint64_t& suppressed);
    static std::string suppressed_note(uint64_t n);
    void report_statistics(Clock::time_point now);
    void report_one(Connection& c, double seconds);
    Clock::time_point last_deny_log_{};
    uint64_t deny_logs_suppressed_ = 0;
    Clock::time_point next_statistics_{};
    Clock::time_point last_accept_log_{};
    uint64_t accept_logs_suppressed_ = 0;
    Clock::time_point last_connect_log_{};
    uint64_t connect_logs_suppressed_ = 0;
    ipc::StreamStats stats_;
    std::unique_ptr<ThreadRelay> threads_;  // last: its destructor joins threads using the above
};

}  // namespace pfp::worker
