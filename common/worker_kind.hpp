#pragma once
// The worker kinds. Each has one implementation file in workers/ and one seccomp/capability
// entry in workers/sandbox_profiles.cpp.
#include <optional>
#include <string_view>

namespace pfp {

enum class WorkerKind {
    tcp_forward,  // stream relay: TCP listener -> fixed TCP upstream (tcpfwd)
};

std::string_view kind_name(WorkerKind k);
std::optional<WorkerKind> kind_from_name(std::string_view name);

}  // namespace pfp
