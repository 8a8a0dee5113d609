// Worker kind tcp-forward (tcpfwd): TCP listener -> one fixed TCP upstream.
#include <sys/socket.h>

#include "workers/stream_worker.hpp"

namespace pfp::worker {

std::unique_ptr<WorkerBody> make_tcp_forward(const WorkerConfig& config, std::vector<unique_fd> fds,
                                             EventLoop& loop) {
    return make_stream_worker(config, std::move(fds), loop, {AF_INET, AF_INET6});
}

}  // namespace pfp::worker
