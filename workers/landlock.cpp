#include "workers/landlock.hpp"

#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "common/endpoint.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"
#include "workers/filesystem_view.hpp"

namespace pfp::sandbox {

namespace {

// The kernel ABI, spelled out: Debian 12's headers stop at ABI 3 (no network rules, no scopes).
// Bit values and struct layouts are fixed by the kernel's UAPI.
struct RulesetAttr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;  // ABI 4
    uint64_t scoped;              // ABI 6
};
struct NetPortAttr {
    uint64_t allowed_access;
    uint64_t port;
};
constexpr int kRuleNetPort = 2;                     // LANDLOCK_RULE_NET_PORT
constexpr uint64_t kNetBindTcp = 1ULL << 0;         // LANDLOCK_ACCESS_NET_BIND_TCP
constexpr uint64_t kNetConnectTcp = 1ULL << 1;      // LANDLOCK_ACCESS_NET_CONNECT_TCP
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0;  // LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
constexpr uint64_t kScopeSignal = 1ULL << 1;        // LANDLOCK_SCOPE_SIGNAL

// Every filesystem right the ABI knows: 13 in ABI 1, REFER in 2, TRUNCATE in 3, IOCTL_DEV in 5.
uint64_t fs_rights(int abi) {
    uint64_t rights = (1ULL << 13) - 1;
    if (abi >= 2) rights |= 1ULL << 13;
    if (abi >= 3) rights |= 1ULL << 14;
    if (abi >= 5) rights |= 1ULL << 15;
    return rights;
}

std::string ports_text(const std::vector<PortRange>& ranges) {
    if (ranges.empty()) return "none";
    std::string s;
    for (const PortRange& r : ranges) s += (s.empty() ? "" : ",") + r.to_string();
    return s;
}

}  // namespace

LandlockRules landlock_rules(const Handover& h) {
    LandlockRules rules;
    rules.tcp_connect = std::vector<PortRange>{};
    if (const auto up = own_upstream(h);
        up && up->scheme == Scheme::unix_stream && !up->path.empty() && up->path.front() == '@')
        rules.scope_abstract_unix = false;
    // The nfqueue reader's one stream: its tcp: upstream's port, if it has one.
    if (const auto* packet = std::get_if<PacketOptions>(&h.options)) {
        if (packet->upstream.starts_with("tcp:")) {
            const Endpoint e = parse_endpoint(packet->upstream);
            const auto port = static_cast<uint16_t>(e.port);
            rules.tcp_connect->push_back({port, port});
        }
        return rules;
    }
    // kcp-server: its TCP upstream's port (a host name's addresses share it); kcp-client makes
    // no TCP connection at all.
    if (const auto* tunnel = std::get_if<TunnelOptions>(&h.options)) {
        if (tunnel->upstream.starts_with("tcp:")) {
            const auto port = static_cast<uint16_t>(parse_endpoint(tunnel->upstream).port);
            rules.tcp_connect->push_back({port, port});
        }
        return rules;
    }
    const auto* stream = std::get_if<StreamOptions>(&h.options);
    if (stream == nullptr) return rules;  // no stream upstream: no TCP connect at all
    if (stream->upstream_mode == UpstreamMode::fixed) {
        if (!stream->upstream.empty()) {
            const Endpoint e = parse_endpoint(stream->upstream);
            const auto port = static_cast<uint16_t>(e.port);
            if (e.scheme == Scheme::tcp) rules.tcp_connect->push_back({port, port});
        }
        return rules;
    }
    // Chosen per connection: bounded by the allow list's ports, if it bounds them.
    std::set<std::pair<uint16_t, uint16_t>> ranges;
    size_t ports = 0;
    for (const std::string& text : stream->allow) {
        const AllowEntry entry = parse_allow_entry(text);
        ranges.insert({entry.ports.low, entry.ports.high});
        ports += size_t{entry.ports.high} - entry.ports.low + 1;
    }
    if (stream->allow.empty() || ports > kMaxPortRules) {
        rules.tcp_connect.reset();
        return rules;
    }
    for (const auto& [low, high] : ranges) rules.tcp_connect->push_back({low, high});
    return rules;
}

int landlock_abi() {
    const long abi =
        ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi < 0 ? 0 : static_cast<int>(abi);
}

std::string apply_landlock(const LandlockRules& rules, int abi) {
    if (abi <= 0) return "unavailable";
    RulesetAttr attr{};
    std::string applied;
    if (rules.restrict_files) {
        attr.handled_access_fs = fs_rights(abi);
        applied = "no files";
    }
    if (abi >= 4) {
        attr.handled_access_net = kNetBindTcp | (rules.tcp_connect ? kNetConnectTcp : 0);
        applied += std::string(applied.empty() ? "" : ", ") + "no TCP bind, TCP connect to " +
                   (rules.tcp_connect ? ports_text(*rules.tcp_connect) : "any port");
    }
    if (abi >= 6) {
        attr.scoped = (rules.scope_abstract_unix ? kScopeAbstractUnix : 0) | kScopeSignal;
        applied += rules.scope_abstract_unix
                       ? ", abstract Unix sockets and signals scoped"
                       : ", signals scoped (its upstream is an abstract socket)";
    }
    if (attr.handled_access_fs == 0 && attr.handled_access_net == 0 && attr.scoped == 0)
        return "nothing to restrict (ABI " + std::to_string(abi) + ")";
    // Older kernels take the struct up to the fields they know, and refuse non-zero bytes past it.
    const size_t size = abi >= 6 ? sizeof attr : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
    unique_fd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0)));
    if (!ruleset) throw_errno("landlock_create_ruleset");
    if (rules.tcp_connect && abi >= 4) {
        for (const PortRange& r : *rules.tcp_connect) {
            for (uint32_t port = r.low; port <= r.high; ++port) {
                NetPortAttr rule{kNetConnectTcp, port};
                if (::syscall(SYS_landlock_add_rule, ruleset.get(), kRuleNetPort, &rule, 0) != 0)
                    throw_errno("landlock_add_rule(TCP port " + std::to_string(port) + ")");
            }
        }
    }
    if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) != 0)
        throw_errno("landlock_restrict_self");
    return "ABI " + std::to_string(abi) + ": " + applied;
}

}  // namespace pfp::sandbox
