#include "common/worker_kind.hpp"

#include <array>

namespace pfp {
namespace {

struct KindEntry {
    WorkerKind kind;
    std::string_view name;
};

// One line per kind; both directions of the mapping read this table.
constexpr std::array kKinds{
    KindEntry{WorkerKind::tcp_forward, "tcp-forward"},
    KindEntry{WorkerKind::ip_to_vsock, "ip-to-vsock"},
    KindEntry{WorkerKind::ip_to_vsock_transparent, "ip-to-vsock-transparent"},
    KindEntry{WorkerKind::transparent_port_to_vsock, "transparent-port-to-vsock"},
    KindEntry{WorkerKind::vsock_to_ip, "vsock-to-ip"},
    KindEntry{WorkerKind::vsock_to_ip_transparent, "vsock-to-ip-transparent"},
    KindEntry{WorkerKind::vsock_to_vsock, "vsock-to-vsock"},
};

}  // namespace

std::string_view kind_name(WorkerKind k) {
    for (const auto& entry : kKinds) {
        if (entry.kind == k) return entry.name;
    }
    return "unknown";
}

std::optional<WorkerKind> kind_from_name(std::string_view name) {
    for (const auto& entry : kKinds) {
        if (entry.name == name) return entry.kind;
    }
    return std::nullopt;
}

}  // namespace pfp
