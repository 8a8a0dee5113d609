#pragma once
// The worker kinds. Each has one implementation file in workers/ and one seccomp/capability
// entry in workers/sandbox_profiles.cpp.
#include <cstddef>
#include <optional>
#include <string_view>

namespace pfp {

// Every stream kind is the same relay (workers/stream_relay) with a different way of choosing
// and reaching its upstream; "vsock-like" below means vsock, fc-vsock or unix.
enum class WorkerKind {
    tcp_forward,                // TCP listener -> fixed TCP upstream (tcpfwd)
    ip_to_vsock,                // TCP listener -> fixed vsock-like upstream
    ip_to_vsock_transparent,    // TCP listener -> vsock-like upstream, original dst header first
    transparent_port_to_vsock,  // TCP listener -> vsock CID, port = original destination port
    vsock_to_ip,                // vsock-like listener -> fixed TCP upstream
    vsock_to_ip_transparent,    // vsock-like listener -> TCP destination read from the stream
    vsock_to_vsock,             // vsock-like listener -> fixed vsock-like upstream (vsockproxy)
};
inline constexpr size_t kWorkerKindCount = 7;

std::string_view kind_name(WorkerKind k);
std::optional<WorkerKind> kind_from_name(std::string_view name);

}  // namespace pfp
