#pragma once
// The order a client tries a host name's addresses in (RFC 8305 section 4): the resolver's
// preferred order, with the families interleaved — first the family of the first address, then
// the other, alternating — so one unreachable family costs one attempt, not all of its
// addresses. Used by the supervisor on the sets it resolves; workers try them in this order.
#include <vector>

#include "common/endpoint.hpp"

namespace pfp {

std::vector<SockAddr> interleave_families(const std::vector<SockAddr>& preferred);

}  // namespace pfp
