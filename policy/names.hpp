#pragma once
// The words a policy uses for the values of enums, each beside the value it stands for. The one
// place that spells them, so that the supervisor and workers can later share these tables.
#include <array>
#include <cstddef>
#include <string_view>

#include "common/endpoint.hpp"
#include "policy/model.hpp"

namespace pfp::policy::detail {

// The words `upstream` takes besides an endpoint, and what each means.
constexpr std::array<std::string_view, 2> kUpstreamWords{"original-destination",
                                                         "destination-header"};
constexpr std::array<UpstreamMode, 2> kUpstreamModes{UpstreamMode::original_destination,
                                                     UpstreamMode::destination_header};

// The word for an upstream mode ("" for fixed: an endpoint, not a word).
constexpr std::string_view upstream_word(UpstreamMode mode) {
    for (size_t i = 0; i < kUpstreamModes.size(); ++i) {
        if (kUpstreamModes[i] == mode) return kUpstreamWords[i];
    }
    return "";
}

// `header`: the transparent header's format.
constexpr std::array<std::string_view, 2> kHeaderNames{"standard", "oyster-v4"};
constexpr std::array<HeaderFormat, 2> kHeaderFormats{HeaderFormat::standard,
                                                     HeaderFormat::oyster_v4};

// listen_family of a "systemd:NAME" listener, and the scheme it stands for.
constexpr std::array<std::string_view, 4> kListenFamilyNames{"tcp", "udp", "unix", "vsock"};
constexpr std::array<Scheme, 4> kListenFamilies{Scheme::tcp, Scheme::udp, Scheme::unix_stream,
                                                Scheme::vsock};

}  // namespace pfp::policy::detail
