#pragma once
// The KCP tunnels' pre-shared keys (docs/security.md, "The KCP tunnel's PSK"): read by the
// supervisor when it loads a policy (at start and on each reload), from `psk_file` (a file only
// its owner may read) or `psk_env` (pf-proxyd's environment). The key then travels to the worker
// only inside the handover message; it is never logged or shown.
#include <functional>
#include <string>

#include "policy/model.hpp"

namespace pfp::policy {

// 64 hex digits (surrounding whitespace ignored) as 32 bytes; nullopt-like empty string if the
// text is not that.
std::string decode_psk(std::string_view text);

using GetEnv = std::function<const char*(const char*)>;

// Fills Proxy::psk of every entry that names psk_file or psk_env. Throws policy_error with one
// diagnostic per key that cannot be read or decoded.
void load_psks(Policy& policy, const GetEnv& getenv);

}  // namespace pfp::policy
