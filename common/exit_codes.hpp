#pragma once
// Worker exit statuses the supervisor classifies (OpenSSH/minijail style). Config and sandbox
// failures will not fix themselves, so the supervisor does not restart on them.
namespace pfp::exit_code {

constexpr int ok = 0;         // drained and stopped as asked
constexpr int failure = 1;    // runtime failure; restart
constexpr int handover = 76;  // bad or missing handover (EX_PROTOCOL); restart
constexpr int sandbox = 77;   // could not lock down (EX_NOPERM); do not restart
constexpr int config = 78;    // config unusable (EX_CONFIG); do not restart

}  // namespace pfp::exit_code
