// Worker kind vsock-to-vsock (vsockproxy): vsock listener, peers filtered by allowed_cids -> a
// fixed vsock upstream, with optional per-connection statistics.
#include <sys/socket.h>

#include "workers/stream_worker.hpp"

namespace pfp::worker {

std::unique_ptr<WorkerBody> make_vsock_to_vsock(const WorkerConfig& config,
                                                std::vector<unique_fd> fds, EventLoop& loop) {
    return make_stream_worker(config, std::move(fds), loop, {AF_VSOCK, AF_UNIX});
}

}  // namespace pfp::worker
