#pragma once
// Host names in tcp: and udp: upstreams ("tcp:api.example.com:443"): the form only. The
// supervisor resolves them (supervisor/upstream_names.hpp); workers never see a name, only the
// addresses it resolved to.
#include <optional>
#include <string_view>

#include "common/endpoint.hpp"

namespace pfp {

// A DNS host name: labels of letters, digits and hyphens (not at a label's ends), 1-63
// characters each, 253 in all, an optional trailing dot; the last label not all digits (so a
// mistyped IPv4 address is not taken for a name).
bool valid_host_name(std::string_view name);

// "tcp:NAME:PORT" or "udp:NAME:PORT" with a valid host name and a port 1-65535: an endpoint with
// `host` and `port` set and no address; nullopt for anything else (numeric forms included).
std::optional<Endpoint> parse_host_endpoint(std::string_view text);

}  // namespace pfp
