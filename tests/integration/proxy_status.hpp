#pragma once
// What `pf-proxyctl status --json` says of a running pf-proxyd, read the way an operator reads
// it: for tests that check a proxy's state or wait for its workers' counters (reported once a
// second) at the far end of the control socket.
#include <nlohmann/json.hpp>
#include <string>

#include "harness.hpp"

namespace pfp::test {

// The answer, parsed; {"error": what pf-proxyctl printed} when it failed or printed no JSON.
nlohmann::json status_json(const Daemon& d);
// Proxy `name`'s entry in `status`; throws, naming it and showing `status`, when it has none.
nlohmann::json proxy_status(const nlohmann::json& status, const std::string& name);
// Proxy `name`'s counters now; {} while they cannot be read (what a poll waits through).
nlohmann::json proxy_counters(const Daemon& d, const std::string& name);

}  // namespace pfp::test
