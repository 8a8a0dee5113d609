#include "supervisor/compat/bind_probe.hpp"

#include <cap-ng.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/unique_fd.hpp"

namespace pfp::compat {
namespace {

// CAP_NET_BIND_SERVICE in the permitted set: the supervisor raises it for its bind.
bool can_raise_bind_service() {
    if (capng_get_caps_process() != 0) return false;
    return capng_have_capability(CAPNG_PERMITTED, CAP_NET_BIND_SERVICE) != 0;
}

// Creates and binds (then closes) a socket like the listener: the only place the probe opens a
// socket, so that it can be swapped for the supervisor's own listener creation.
std::optional<ProbeFailure> bind_like_listener(const Endpoint& e) {
    unique_fd fd(::socket(e.addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return ProbeFailure{BindStage::socket, errno};
    if (e.scheme == Scheme::tcp) {
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (::bind(fd.get(), e.addr.get(), e.addr.len) < 0) return ProbeFailure{BindStage::bind, errno};
    return std::nullopt;
}

}  // namespace

std::optional<ProbeFailure> probe_listener(const Endpoint& e) {
    if (e.scheme != Scheme::tcp && e.scheme != Scheme::vsock) return std::nullopt;
    auto failure = bind_like_listener(e);
    if (failure && failure->stage == BindStage::bind && failure->err == EACCES &&
        can_raise_bind_service()) {
        return std::nullopt;
    }
    return failure;
}

}  // namespace pfp::compat
