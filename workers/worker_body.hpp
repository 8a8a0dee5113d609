#pragma once
// What every worker family provides to the generic worker main: built from the handover before
// lock-down (so all sockets, pipes and epoll registrations that need setup exist), run after.
#include <memory>
#include <optional>
#include <vector>

#include "common/endpoint.hpp"
#include "common/event_loop.hpp"
#include "common/handover.hpp"
#include "common/ipc.hpp"
#include "common/unique_fd.hpp"

namespace pfp::worker {

class WorkerBody {
  public:
    virtual ~WorkerBody() = default;
    virtual void start() = 0;           // begin serving
    virtual void stop_accepting() = 0;  // drain: no new clients
    virtual size_t active() const = 0;  // open connections
    // The family's counters, encoded for a STATS message (ipc.hpp).
    virtual std::string encoded_stats() const = 0;
    virtual std::optional<Clock::time_point> tick(Clock::time_point now) = 0;
    // A host-name upstream's new address set (an ADDRESSES message): new connections and flows
    // use it, open ones keep theirs. False: this body has no host-name upstream.
    virtual bool update_upstream(std::vector<SockAddr> /*addresses*/) { return false; }
};

// Builds the body of the handover's kind family from fds already checked by verify_fds(). Throws
// std::runtime_error naming what was wrong.
std::unique_ptr<WorkerBody> make_worker_body(const Handover& h, std::vector<unique_fd> fds,
                                             EventLoop& loop);

// One factory per family (a kind with behaviour of its own adds one file and one case).
std::unique_ptr<WorkerBody> make_stream_worker(const Handover& h, const StreamOptions& options,
                                               unique_fd listener, EventLoop& loop);
std::unique_ptr<WorkerBody> make_datagram_worker(const Handover& h, const DatagramOptions& options,
                                                 unique_fd sock, EventLoop& loop);
// nfqueue-to-stream: fds is the nfqueue (nfqueue_sender.cpp).
std::unique_ptr<WorkerBody> make_nfqueue_sender(const Handover& h, const PacketOptions& options,
                                                std::vector<unique_fd> fds, EventLoop& loop);
// stream-to-raw: fds are the listener, the IPv4 and the IPv6 raw injector (raw_injector.cpp).
std::unique_ptr<WorkerBody> make_raw_injector(const Handover& h, const PacketOptions& options,
                                              std::vector<unique_fd> fds, EventLoop& loop);

// kcp-client: the TCP listener (kcp_client.cpp); kcp-server: the bound UDP socket (kcp_server.cpp).
std::unique_ptr<WorkerBody> make_kcp_client(const Handover& h, const TunnelOptions& options,
                                            unique_fd listener, EventLoop& loop);
std::unique_ptr<WorkerBody> make_kcp_server(const Handover& h, const TunnelOptions& options,
                                            unique_fd sock, EventLoop& loop);

}  // namespace pfp::worker
