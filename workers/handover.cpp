#include "workers/handover.hpp"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <stdexcept>

#include "common/error.hpp"
#include "common/ipc.hpp"
#include "common/socket_util.hpp"
#include "workers/sandbox.hpp"

namespace pfp::worker {

namespace {

std::string describe(size_t i, const HandoverFd& f) {
    return "fd #" + std::to_string(i) + " (" + std::string(role_name(f.role)) + " " + f.endpoint +
           ")";
}

std::string role_list(std::span<const FdRole> roles) {
    std::string out;
    for (FdRole r : roles) out += (out.empty() ? "" : ", ") + std::string(role_name(r));
    return out.empty() ? "none" : out;
}

}  // namespace

Received receive_handover(int control_fd) {
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
    return Received{Handover::from_json(msg->payload), std::move(msg->fds)};
}

void verify_fds(const Handover& h, const std::vector<unique_fd>& fds) {
    const KindRow& row = kind_row(h.kind);
    const std::string kind(row.name);
    // The table first: it must list the kind's roles in the kind's order.
    for (size_t i = 0; i < std::max(h.fds.size(), row.fds.size()); ++i) {
        if (i >= row.fds.size())
            throw handover_refused(describe(i, h.fds[i]) + " is extra: kind " + kind + " takes " +
                                   role_list(row.fds));
        if (i >= h.fds.size())
            throw handover_refused("fd #" + std::to_string(i) + " (" +
                                   std::string(role_name(row.fds[i])) + ") is missing: kind " +
                                   kind + " takes " + role_list(row.fds));
        if (h.fds[i].role != row.fds[i])
            throw handover_refused(describe(i, h.fds[i]) + " has the wrong role: kind " + kind +
                                   " takes a " + std::string(role_name(row.fds[i])) + " there");
    }
    // Then what arrived: exactly one fd per entry.
    if (fds.size() > h.fds.size())
        throw handover_refused("fd #" + std::to_string(h.fds.size()) +
                               " arrived but the handover lists no fd for it (kind " + kind +
                               " takes " + role_list(row.fds) + ")");
    if (fds.size() < h.fds.size())
        throw handover_refused(describe(fds.size(), h.fds[fds.size()]) + " did not arrive");
    for (size_t i = 0; i < fds.size(); ++i) {
        Endpoint e;
        try {
            e = parse_endpoint(h.fds[i].endpoint);
        } catch (const std::exception& ex) {
            throw handover_refused(describe(i, h.fds[i]) + ": " + ex.what());
        }
        const std::string wrong = socket_role_mismatch(fds[i].get(), h.fds[i].role, e);
        if (!wrong.empty()) throw handover_refused(describe(i, h.fds[i]) + ": " + wrong);
    }
}

void verify_capabilities(const Handover& h) {
    if (::geteuid() == 0) return;  // root holds every capability until lock-down drops them
    const KindRow& row = kind_row(h.kind);
    const uint64_t expected = sandbox::capability_mask(row.capabilities);
    const uint64_t held = sandbox::read_capabilities("CapPrm");
    if (const uint64_t extra = held & ~expected)
        throw handover_refused("the worker holds " + sandbox::capability_names(extra) +
                               ", which kind " + std::string(row.name) + " does not name");
    if (const uint64_t missing = expected & ~held)
        throw handover_refused("kind " + std::string(row.name) + " needs " +
                               sandbox::capability_names(missing) +
                               ", which the worker does not hold");
}

}  // namespace pfp::worker
