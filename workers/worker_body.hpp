#pragma once
// What every worker kind provides to the generic worker main: built from the handover before
// lock-down (so all sockets, pipes and epoll registrations that need setup exist), run after.
#include <memory>
#include <optional>
#include <vector>

#include "common/event_loop.hpp"
#include "common/ipc.hpp"
#include "common/unique_fd.hpp"
#include "common/worker_config.hpp"

namespace pfp::worker {

class WorkerBody {
  public:
    virtual ~WorkerBody() = default;
    virtual void start() = 0;           // begin serving
    virtual void stop_accepting() = 0;  // drain: no new clients
    virtual size_t active() const = 0;  // open connections
    virtual const ipc::Stats& stats() const = 0;
    virtual std::optional<Clock::time_point> tick(Clock::time_point now) = 0;
};

// Verifies the handed-over fds for the config's kind and builds its body. Throws
// std::runtime_error naming the fd and what was expected.
std::unique_ptr<WorkerBody> make_worker_body(const WorkerConfig& config, std::vector<unique_fd> fds,
                                             EventLoop& loop);

// One factory per kind, each in its own file under workers/kinds/.
using KindFactory = std::unique_ptr<WorkerBody>(const WorkerConfig& config,
                                                std::vector<unique_fd> fds, EventLoop& loop);
KindFactory make_tcp_forward;
KindFactory make_ip_to_vsock;
KindFactory make_ip_to_vsock_transparent;
KindFactory make_transparent_port_to_vsock;
KindFactory make_vsock_to_ip;
KindFactory make_vsock_to_ip_transparent;
KindFactory make_vsock_to_vsock;

}  // namespace pfp::worker
