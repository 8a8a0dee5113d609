// libFuzzer entry point for what a worker sends the supervisor: worker messages are hostile
// (docs/security.md, "Threat model"). Each input travels as one real SOCK_SEQPACKET datagram and
// goes through the supervisor's receive path and permit table. Only protocol_error is expected.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/fd_passing.hpp"
#include "common/ipc.hpp"
#include "supervisor/dispatch.hpp"

namespace {

struct Channel {
    int fds[2] = {-1, -1};
    Channel() {
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) __builtin_trap();
        int big = 1 << 20;
        ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Channel ch;
    if (size == 0 || size > 64 * 1024) return 0;  // an empty datagram reads as EOF
    pfp::send_with_fds(ch.fds[0], std::as_bytes(std::span(data, size)), {});
    try {
        auto m = pfp::ipc::receive(ch.fds[1], pfp::ipc::kMaxFromWorker);
        if (!m) __builtin_trap();  // we sent a non-empty datagram
        using S = pfp::supervisor::WorkerProcess::State;
        for (S s : {S::starting, S::running, S::draining}) {
            auto v = pfp::supervisor::permit(s, *m);
            if (v.allowed && m->type == pfp::ipc::Type::stats)
                (void)pfp::ipc::decode_stream_stats(m->payload);
        }
    } catch (const pfp::ipc::protocol_error&) {
    }
    return 0;
}
