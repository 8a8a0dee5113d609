// Worker kind vsock-to-ip: vsock (or fc-vsock/unix) listener -> one fixed TCP upstream.
#include <sys/socket.h>

#include "workers/stream_worker.hpp"

namespace pfp::worker {

std::unique_ptr<WorkerBody> make_vsock_to_ip(const WorkerConfig& config, std::vector<unique_fd> fds,
                                             EventLoop& loop) {
    return make_stream_worker(config, std::move(fds), loop, {AF_VSOCK, AF_UNIX});
}

}  // namespace pfp::worker
