// Worker kind transparent-port-to-vsock: TCP listener fed by an iptables REDIRECT -> the vsock CID
// of the policy at the port the client originally asked for.
#include <sys/socket.h>

#include "workers/stream_worker.hpp"

namespace pfp::worker {

std::unique_ptr<WorkerBody> make_transparent_port_to_vsock(const WorkerConfig& config,
                                                           std::vector<unique_fd> fds,
                                                           EventLoop& loop) {
    return make_stream_worker(config, std::move(fds), loop, {AF_INET, AF_INET6});
}

}  // namespace pfp::worker
