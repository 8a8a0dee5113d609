#include "policy/kind_rules.hpp"

#include <algorithm>
#include <array>
#include <span>
#include <vector>

#include "policy/names.hpp"
#include "policy/wording.hpp"

namespace pfp::policy::detail {
namespace {

// The kind table (common/worker_kind.cpp) says which listener side, upstream target and
// send_original_destination make each kind, and which kind-specific keys it takes; this file only
// maps a policy entry onto those columns and words the messages.
using Side = ListenSide;
using Target = UpstreamTarget;
using KindRule = KindRow;

constexpr std::array<Scheme, 1> kTcpSchemes{Scheme::tcp};
constexpr std::array<Scheme, 1> kUdpSchemes{Scheme::udp};
constexpr std::array<Scheme, 3> kVsockLikeSchemes{Scheme::vsock, Scheme::unix_stream,
                                                  Scheme::fc_vsock};
// Endpoints whose port may be original-port (unix: has no port).
constexpr std::array<Scheme, 2> kOriginalPortSchemes{Scheme::vsock, Scheme::fc_vsock};
constexpr std::array<Scheme, 1> kRawSchemes{Scheme::raw};
constexpr std::array<Scheme, 1> kNfqueueSchemes{Scheme::nfqueue};

std::span<const Scheme> side_schemes(Side s) {
    if (s == Side::tcp) return kTcpSchemes;
    if (s == Side::udp) return kUdpSchemes;
    if (s == Side::nfqueue) return kNfqueueSchemes;
    return kVsockLikeSchemes;
}

std::optional<Side> side_of(Scheme s) {
    if (s == Scheme::tcp) return Side::tcp;
    if (s == Scheme::udp) return Side::udp;
    if (s == Scheme::nfqueue) return Side::nfqueue;
    if (std::find(kVsockLikeSchemes.begin(), kVsockLikeSchemes.end(), s) !=
        kVsockLikeSchemes.end()) {
        return Side::vsock_like;
    }
    return std::nullopt;
}

// The endpoint schemes that reach a target (none for the words).
std::span<const Scheme> target_schemes(Target t) {
    switch (t) {
        case Target::tcp:
            return kTcpSchemes;
        case Target::vsock_like:
            return kVsockLikeSchemes;
        case Target::original_port:
            return kOriginalPortSchemes;
        case Target::udp:
            return kUdpSchemes;
        case Target::raw:
            return kRawSchemes;
        case Target::destination_header:
        case Target::original_destination:
        case Target::base_address:
            break;
    }
    return {};
}

std::optional<Target> target_of(const Endpoint& e) {
    if (e.scheme == Scheme::tcp) return Target::tcp;
    if (e.scheme == Scheme::udp) return Target::udp;
    if (e.scheme == Scheme::raw) return Target::raw;
    if (side_of(e.scheme) != Side::vsock_like) return std::nullopt;
    return e.original_port ? Target::original_port : Target::vsock_like;
}

// The upstream a target stands for, in messages.
std::string target_text(Target t) {
    switch (t) {
        case Target::tcp:
        case Target::vsock_like:
        case Target::udp:
        case Target::raw:
            return schemes_in_prose(target_schemes(t)) + " upstream";
        case Target::original_port:
            return "an original-port upstream";
        case Target::destination_header:
            return "\"" + std::string(upstream_word(UpstreamMode::destination_header)) + "\"";
        case Target::original_destination:
            return "\"" + std::string(upstream_word(UpstreamMode::original_destination)) + "\"";
        case Target::base_address:
            return "a base_address upstream";
    }
    return "this upstream";
}

// Why a target needs the listener it needs; appended to the message that says so.
std::string_view target_reason(Target t) {
    if (t == Target::original_port) {
        return " (the port comes from SO_ORIGINAL_DST, which only a redirected TCP connection has)";
    }
    if (t == Target::original_destination || t == Target::base_address) {
        return " (the destination comes from SO_ORIGINAL_DST, which only a redirected TCP "
               "connection has)";
    }
    return "";
}

void add_unique(std::vector<Scheme>& v, std::span<const Scheme> schemes) {
    for (const Scheme s : schemes) {
        if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
    }
}

// The rules that agree with every choice given (nullopt: unknown, matches anything).
std::vector<const KindRule*> rules_for(const std::optional<Side>& listen,
                                       const std::optional<Target>& upstream,
                                       const std::optional<bool>& send_original_destination) {
    std::vector<const KindRule*> out;
    for (const auto& rule : kind_table()) {
        if (listen && rule.listen != *listen) continue;
        if (upstream && !takes_upstream(rule, *upstream)) continue;
        if (send_original_destination &&
            rule.send_original_destination != *send_original_destination) {
            continue;
        }
        out.push_back(&rule);
    }
    return out;
}

const KindRule* rule_of(WorkerKind kind) {
    return &kind_row(kind);
}

bool takes(const KindRule& rule, KindKey key) {
    switch (key) {
        case KindKey::allow:
            return rule.takes_allow;
        case KindKey::statistics:
            return rule.takes_statistics;
    }
    return false;
}

// "a tcp listener with a udp: upstream (kcp-client) or ...": the entries that make tunnels.
std::string tunnel_entries() {
    std::string out;
    for (const auto& rule : kind_table()) {
        if (!rule.tunnel) continue;
        if (!out.empty()) out += " or ";
        out += schemes_in_prose(side_schemes(rule.listen)) + " listener with " +
               target_text(rule.upstream) + " (" + std::string(rule.name) + ")";
    }
    return out;
}

}  // namespace

// Every message is about what is known; an unknown part (already reported) rules nothing out.
KindChoice derive_kind(const KindInput& in) {
    std::optional<Scheme> upstream_scheme;  // an endpoint upstream's scheme
    std::optional<Target> upstream;         // nullopt: missing, did not parse or not supported
    if (in.upstream_mode) {
        switch (*in.upstream_mode) {
            case UpstreamMode::fixed:
                upstream_scheme = in.upstream.scheme;
                upstream = target_of(in.upstream);
                break;
            case UpstreamMode::original_destination:
                upstream = Target::original_destination;
                break;
            case UpstreamMode::destination_header:
                upstream = Target::destination_header;
                break;
            case UpstreamMode::base_address:  // parse.cpp lets only a tcp: endpoint through
                upstream = Target::base_address;
                break;
        }
    }
    KindChoice out;
    const std::optional<Side> side = in.listen ? side_of(*in.listen) : std::nullopt;
    if (in.listen && !side) {
        std::vector<Scheme> listens;
        for (const auto& rule : kind_table()) add_unique(listens, side_schemes(rule.listen));
        out.listen_error =
            std::string(article(*in.listen)) + " " + std::string(scheme_name(*in.listen)) +
            " endpoint is not supported yet (supported: " + scheme_list(listens) + ")";
    }
    std::optional<Target> target = upstream;
    if (upstream_scheme && !target) {
        std::vector<Scheme> upstreams;
        for (const KindRule* rule : rules_for(side, std::nullopt, std::nullopt)) {
            add_unique(upstreams, target_schemes(rule->upstream));
        }
        out.upstream_error =
            std::string(article(*upstream_scheme)) + " " +
            std::string(scheme_name(*upstream_scheme)) +
            " endpoint is not supported yet (supported: " + scheme_list(upstreams) + ")";
    } else if (target) {
        const auto by_target = rules_for(std::nullopt, target, std::nullopt);
        if (by_target.empty()) {
            out.upstream_error = target_text(*target) + " is not supported by any worker kind yet";
            target.reset();
        } else if (side && rules_for(side, target, std::nullopt).empty()) {
            std::vector<Scheme> listens;
            for (const KindRule* rule : by_target) add_unique(listens, side_schemes(rule->listen));
            out.upstream_error = target_text(*target) + " needs " + schemes_in_prose(listens) +
                                 " listener, not " + std::string(scheme_name(*in.listen)) +
                                 std::string(target_reason(*target));
            target.reset();
        }
    }
    if (in.send_original_destination == true && rules_for(side, target, true).empty()) {
        if (target == Target::original_port) {
            out.send_original_destination_error =
                "send_original_destination cannot be combined with an original-port upstream";
        } else {
            std::string where;
            for (const KindRule* rule : rules_for(std::nullopt, std::nullopt, true)) {
                if (!where.empty()) where += " or ";
                where += schemes_in_prose(side_schemes(rule->listen)) + " listener with " +
                         target_text(rule->upstream);
            }
            out.send_original_destination_error =
                "send_original_destination applies only to " + where;
        }
    }
    // A stream carried over datagrams (or the reverse) is a tunnel, whose protocol the entry
    // names; `tunnel` on any other entry is a mistake.
    if (side && target && in.tunnel && out.listen_error.empty() && out.upstream_error.empty()) {
        const auto rules = rules_for(side, target, std::nullopt);
        const bool tunnel_kind = !rules.empty() && rules.front()->tunnel;
        if (tunnel_kind && !*in.tunnel) {
            out.upstream_error = schemes_in_prose(side_schemes(*side)) + " listener with " +
                                 target_text(*target) +
                                 " carries each stream over datagrams: write \"tunnel\": \"kcp\" "
                                 "(kind " +
                                 std::string(kind_name(rules.front()->kind)) + ")";
            target.reset();
        } else if (!tunnel_kind && *in.tunnel) {
            out.tunnel_error = "tunnel applies only to " + tunnel_entries();
        }
    }
    if (side && target && in.send_original_destination && in.tunnel && out.listen_error.empty() &&
        out.upstream_error.empty() && out.send_original_destination_error.empty() &&
        out.tunnel_error.empty()) {
        const auto rules = rules_for(side, target, in.send_original_destination);
        if (!rules.empty()) {
            out.kind = rules.front()->kind;
        } else {  // a listener and upstream that make a kind only with send_original_destination
            out.upstream_error = "no worker kind connects " +
                                 schemes_in_prose(side_schemes(*side)) + " listener to " +
                                 target_text(*target);
        }
    }
    return out;
}

bool kind_takes(WorkerKind kind, KindKey key) {
    const KindRule* rule = rule_of(kind);
    return rule && takes(*rule, key);
}

std::string kinds_taking(KindKey key) {
    std::string out;
    for (const auto& rule : kind_table()) {
        if (!takes(rule, key)) continue;
        if (!out.empty()) out += ", ";
        out += kind_name(rule.kind);
    }
    return out;
}

}  // namespace pfp::policy::detail
