#include "workers/handover.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <stdexcept>

#include "common/error.hpp"
#include "common/ipc.hpp"
#include "common/socket_util.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {

Handover receive_handover(int control_fd) {
    SocketInfo info;
    try {
        info = inspect_socket(control_fd);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("control channel (fd 3) missing: ") + e.what());
    }
    if (info.domain != AF_UNIX || info.type != SOCK_SEQPACKET)
        throw std::runtime_error("control channel (fd 3) is not a SOCK_SEQPACKET Unix socket");
    timeval tv{10, 0};  // a supervisor that never sends the handover must not pin us forever
    if (::setsockopt(control_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        throw_errno("setsockopt(SO_RCVTIMEO) on the control channel");
    auto msg = ipc::receive(control_fd, ipc::kMaxToWorker);
    if (!msg) throw std::runtime_error("control channel closed before the handover");
    if (msg->type != ipc::Type::handover)
        throw std::runtime_error(std::string("expected HANDOVER, got ") +
                                 ipc::type_name(msg->type));
    tv = timeval{0, 0};
    ::setsockopt(control_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return Handover{WorkerConfig::from_json(msg->payload), std::move(msg->fds)};
}

std::unique_ptr<WorkerBody> make_worker_body(const WorkerConfig& config, std::vector<unique_fd> fds,
                                             EventLoop& loop) {
    switch (config.kind) {
        case WorkerKind::tcp_forward:
            return make_tcp_forward(config, std::move(fds), loop);
        case WorkerKind::ip_to_vsock:
            return make_ip_to_vsock(config, std::move(fds), loop);
        case WorkerKind::ip_to_vsock_transparent:
            return make_ip_to_vsock_transparent(config, std::move(fds), loop);
        case WorkerKind::transparent_port_to_vsock:
            return make_transparent_port_to_vsock(config, std::move(fds), loop);
        case WorkerKind::vsock_to_ip:
            return make_vsock_to_ip(config, std::move(fds), loop);
        case WorkerKind::vsock_to_ip_transparent:
            return make_vsock_to_ip_transparent(config, std::move(fds), loop);
        case WorkerKind::vsock_to_vsock:
            return make_vsock_to_vsock(config, std::move(fds), loop);
    }
    throw std::runtime_error("unknown worker kind");
}

}  // namespace pfp::worker
