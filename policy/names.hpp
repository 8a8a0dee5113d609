#pragma once
// The words a policy uses for the values of enums, each beside the value it stands for, as arrays
// of words for the checker's messages; the upstream modes and header formats are spelled once,
// in the tables the handover and the workers use too.
#include <array>
#include <cstddef>
#include <string_view>

#include "common/endpoint.hpp"
#include "policy/model.hpp"

namespace pfp::policy::detail {

// The words `upstream` takes besides an endpoint, and what each means: the shared table's
// (common/worker_kind.hpp) entries after "fixed".
constexpr std::array<std::string_view, 2> kUpstreamWords{kUpstreamModeNames[1].name,
                                                         kUpstreamModeNames[2].name};
constexpr std::array<UpstreamMode, 2> kUpstreamModes{kUpstreamModeNames[1].value,
                                                     kUpstreamModeNames[2].value};

// The word for an upstream mode ("" for fixed: an endpoint, not a word).
constexpr std::string_view upstream_word(UpstreamMode mode) {
    for (size_t i = 0; i < kUpstreamModes.size(); ++i) {
        if (kUpstreamModes[i] == mode) return kUpstreamWords[i];
    }
    return "";
}

// `header`: the transparent header's format.
constexpr std::array<std::string_view, 2> kHeaderNames{kTransparentHeaderFormatNames[0].name,
                                                       kTransparentHeaderFormatNames[1].name};
constexpr std::array<HeaderFormat, 2> kHeaderFormats{kTransparentHeaderFormatNames[0].value,
                                                     kTransparentHeaderFormatNames[1].value};

// listen_family of a "systemd:NAME" listener, and the scheme it stands for.
constexpr std::array<std::string_view, 4> kListenFamilyNames{"tcp", "udp", "unix", "vsock"};
constexpr std::array<Scheme, 4> kListenFamilies{Scheme::tcp, Scheme::udp, Scheme::unix_stream,
                                                Scheme::vsock};

// `tunnel`: the protocol that carries streams over datagrams (docs/kcp-tunnel.md).
constexpr std::array<std::string_view, 1> kTunnelNames{"kcp"};

}  // namespace pfp::policy::detail
