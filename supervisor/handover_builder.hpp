#pragma once
// A proxy's policy entry as its worker receives it: the HANDOVER header, the fd table its kind's
// row asks for, and the options of the kind's family.
#include <chrono>

#include "common/handover.hpp"
#include "policy/model.hpp"

namespace pfp::supervisor {

// `listen`: the listener's real address (a passed socket's own); `index` and `generation` say
// which worker this is.
Handover build_handover(const policy::Proxy& p, const Endpoint& listen, int index, int generation,
                        std::chrono::milliseconds drain_timeout);

// A host-name upstream's current address set into the handover: `upstream` becomes the first
// address, `upstream_host` the name, `upstream_addresses` the set.
void set_resolved_upstream(Handover& h, const Endpoint& upstream, const std::vector<SockAddr>& set);

// The host's own IP addresses now (getifaddrs), as text.
std::vector<std::string> host_addresses();

// One worker's share of the proxy's max_connections.
int connections_per_worker(const policy::Proxy& p);

// The stream family's options of a policy entry; a worker gets its share of max_connections.
StreamOptions stream_options(const policy::Proxy& p);

// The datagram family's options; a worker gets its share of max_flows.
DatagramOptions datagram_options(const policy::Proxy& p);
// The packet family's options of a policy entry.
PacketOptions packet_options(const policy::Proxy& p);
// The tunnel family's options (the PSK included); a kcp-client gets its share of max_connections.
TunnelOptions tunnel_options(const policy::Proxy& p);

}  // namespace pfp::supervisor
