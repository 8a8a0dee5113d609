#pragma once
// Worker exit statuses the supervisor classifies (sysexits.h numbers, as OpenSSH and minijail
// use them). A configuration or sandbox failure will not fix itself, so the supervisor does not
// restart on it; a resource that was short at setup (fds, memory) may be there next time, so that
// worker is restarted with backoff like a crash.
namespace pfp::exit_code {

constexpr int ok = 0;         // drained and stopped as asked
constexpr int failure = 1;    // runtime failure; restart
constexpr int resource = 75;  // a resource was short at setup (EX_TEMPFAIL); restart with backoff
constexpr int handover = 76;  // bad or missing handover (EX_PROTOCOL); restart
constexpr int sandbox = 77;   // could not lock down (EX_NOPERM); do not restart
constexpr int config = 78;    // config unusable (EX_CONFIG); do not restart

}  // namespace pfp::exit_code
