// Worker kind ip-to-vsock-transparent: TCP listener fed by an iptables REDIRECT -> a fixed vsock
// upstream, the client's original destination sent first as the transparent header.
#include <sys/socket.h>

#include "workers/stream_worker.hpp"

namespace pfp::worker {

std::unique_ptr<WorkerBody> make_ip_to_vsock_transparent(const WorkerConfig& config,
                                                         std::vector<unique_fd> fds,
                                                         EventLoop& loop) {
    return make_stream_worker(config, std::move(fds), loop, {AF_INET, AF_INET6});
}

}  // namespace pfp::worker
