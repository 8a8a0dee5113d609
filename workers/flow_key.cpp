#include "workers/flow_key.hpp"

#include <cstring>
#include <string_view>

#include "common/endpoint.hpp"

namespace pfp::worker {

std::optional<FlowKey> flow_key(const sockaddr* sa, socklen_t len) {
    if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return std::nullopt;
    sa_family_t family;
    std::memcpy(&family, sa, sizeof family);
    FlowKey k;
    if (family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        sockaddr_in in;
        std::memcpy(&in, sa, sizeof in);
        if (in.sin_port == 0) return std::nullopt;
        k.addr.v4.sin_family = AF_INET;
        k.addr.v4.sin_port = in.sin_port;
        k.addr.v4.sin_addr = in.sin_addr;
        k.len = sizeof(sockaddr_in);
        return k;
    }
    if (family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        sockaddr_in6 in6;
        std::memcpy(&in6, sa, sizeof in6);
        if (in6.sin6_port == 0) return std::nullopt;
        k.addr.v6.sin6_family = AF_INET6;
        k.addr.v6.sin6_port = in6.sin6_port;
        k.addr.v6.sin6_addr = in6.sin6_addr;
        k.addr.v6.sin6_scope_id = in6.sin6_scope_id;  // link-local peers differ by interface
        k.len = sizeof(sockaddr_in6);
        return k;
    }
    return std::nullopt;
}

bool FlowKey::operator==(const FlowKey& o) const {
    return len == o.len && std::memcmp(&addr, &o.addr, len) == 0;
}

size_t FlowKeyHash::operator()(const FlowKey& k) const noexcept {
    return std::hash<std::string_view>{}(
        std::string_view(reinterpret_cast<const char*>(&k.addr), k.len));
}

std::string flow_key_text(const FlowKey& k) {
    return format_sockaddr(k.get(), k.len);
}

}  // namespace pfp::worker
