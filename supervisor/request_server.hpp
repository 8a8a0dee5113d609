#pragma once
// What the control socket and the metrics endpoint share: a one-request-per-connection server on
// the supervisor's single-threaded epoll loop that a client can never make block. Everything is
// bounded: the number of clients, the request size, the time each client may take to send its
// request (short) and then to read the reply. Replies are written non-blocking; a client that
// does not read its reply within the deadline is dropped. When all slots are taken, a new client
// evicts the oldest one that has not finished its request (idle ones first), so a scrape or a
// pf-proxyctl always gets a slot however many idle connections someone holds; only when every
// slot is receiving a reply does the listener pause and new clients wait in its backlog.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/event_loop.hpp"
#include "common/unique_fd.hpp"

namespace pfp::supervisor {

// The part that differs between the two servers. Called on the loop; must not block.
class RequestProtocol {
  public:
    struct Admission {
        std::string peer;                  // who the client is, for the protocol's log lines
        std::optional<std::string> reply;  // set: refuse with this reply, read nothing
    };
    virtual ~RequestProtocol() = default;
    virtual Admission admit(int fd) = 0;
    // The length of the complete request at the start of `received`, terminator included; 0 if
    // more is needed.
    virtual size_t request_length(std::string_view received) const = 0;
    // The reply to `request`; `complete` is false when the client ended its side before the
    // terminator.
    virtual std::string respond(const std::string& peer, std::string_view request,
                                bool complete) = 0;
    // The reply when the request grows past the limit without ending.
    virtual std::string too_long() const = 0;
};

class RequestServer {
  public:
    struct Limits {
        size_t max_clients = 16;
        size_t max_request = 4096;  // bytes, terminator included
        // To send the request, and to close after the reply: a client sends at once.
        Clock::duration request_timeout = std::chrono::seconds(2);
        Clock::duration timeout = std::chrono::seconds(5);  // to read the reply
    };

    // `listener`: a non-blocking listening stream socket. Throws system_error if it cannot be
    // added to the loop. `protocol` must outlive the server.
    RequestServer(EventLoop& loop, unique_fd listener, Limits limits, RequestProtocol& protocol);
    ~RequestServer();  // closes every client; the listener goes with it
    RequestServer(const RequestServer&) = delete;
    RequestServer& operator=(const RequestServer&) = delete;

    // Call on every loop iteration (from the loop's tick): drops clients past their deadline,
    // resumes a paused listener, frees closed clients. Returns the next deadline, if any.
    std::optional<Clock::time_point> tick(Clock::time_point now);

    size_t clients() const { return clients_.size(); }
    uint64_t evicted() const { return evicted_; }

  private:
    enum class Phase { reading, writing, lingering };
    struct Client : EventSource {
        RequestServer* server = nullptr;
        unique_fd fd;
        std::string peer;
        Phase phase = Phase::reading;
        Clock::time_point accepted{};
        Clock::time_point deadline{};
        std::string in;
        std::string out;
        size_t sent = 0;
        size_t discarded = 0;
        void on_event(uint32_t events) override { server->on_client(*this, events); }
    };
    struct Listener : EventSource {
        RequestServer* server = nullptr;
        void on_event(uint32_t) override { server->accept_clients(); }
    };

    void accept_clients();
    void on_client(Client& c, uint32_t events);
    void read_request(Client& c);
    void reply(Client& c, std::string text);
    void write_reply(Client& c);
    void linger(Client& c);
    void close(Client& c);
    Client* victim() const;  // the client a newcomer replaces when all slots are taken
    void pause(std::optional<Clock::time_point> until);
    void resume();

    EventLoop& loop_;
    unique_fd listener_;
    Limits limits_;
    RequestProtocol& protocol_;
    Listener listener_source_;
    bool paused_ = false;
    std::optional<Clock::time_point> resume_at_;  // after accept() ran out of fds or memory
    std::vector<std::unique_ptr<Client>> clients_;
    std::vector<std::unique_ptr<Client>> closed_;  // freed in tick(), after the epoll batch
    uint64_t evicted_ = 0;
};

}  // namespace pfp::supervisor
