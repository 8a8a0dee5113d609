#include "supervisor/compat/bind_probe.hpp"

#include <cap-ng.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/unique_fd.hpp"
#include "supervisor/socket_factory.hpp"

namespace pfp::compat {
namespace {

// CAP_NET_BIND_SERVICE in the permitted set: the supervisor raises it for its bind.
bool can_raise_bind_service() {
    if (capng_get_caps_process() != 0) return false;
    return capng_have_capability(CAPNG_PERMITTED, CAP_NET_BIND_SERVICE) != 0;
}

// Creates and binds (then closes) a socket like the listener: the only place the probe opens a
// socket, so that it can be swapped for the supervisor's own listener creation.
// The supervisor's socket factory makes (and at once closes) the same listener, without raising a
// capability: the failure, if any, is the one the supervisor's own bind would meet.
std::optional<ProbeFailure> bind_like_listener(const Endpoint& e) {
    try {
        supervisor::SocketRequest req;
        req.role = e.scheme == Scheme::udp ? FdRole::datagram_socket : FdRole::stream_listener;
        req.endpoint = e;
        req.backlog = 1;
        supervisor::open_socket(req, nullptr);
    } catch (const supervisor::socket_error& err) {
        return ProbeFailure{
            err.step == supervisor::SocketStep::socket ? BindStage::socket : BindStage::bind,
            err.err};
    }
    return std::nullopt;
}

}  // namespace

std::optional<ProbeFailure> probe_listener(const Endpoint& e) {
    if (e.scheme != Scheme::tcp && e.scheme != Scheme::vsock && e.scheme != Scheme::udp)
        return std::nullopt;
    auto failure = bind_like_listener(e);
    if (failure && failure->stage == BindStage::bind && failure->err == EACCES &&
        can_raise_bind_service()) {
        return std::nullopt;
    }
    return failure;
}

}  // namespace pfp::compat
