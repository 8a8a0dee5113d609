#pragma once
// The portfwd tools' -p PIDFILE: created exclusively and locked (flock) for as long as the
// process runs, so a second instance is refused while the first lives; a file left by a process
// that is gone (nobody holds its lock) is stale and replaced. Removed on destruction, that is on a
// clean exit (SIGINT, SIGTERM, SIGHUP, SIGQUIT all stop the daemon cleanly).
#include <string>

#include "common/unique_fd.hpp"

namespace pfp::compat {

class PidFile {
  public:
    // Creates and locks `path` (replacing a stale file). Throws std::runtime_error with a one-line
    // message ("pid file /run/x.pid is in use by pid 123") when another process holds it or it
    // cannot be made.
    explicit PidFile(std::string path);
    ~PidFile();
    PidFile(const PidFile&) = delete;
    PidFile& operator=(const PidFile&) = delete;

    // Writes the current process's pid (after daemonizing, so it is the daemon's).
    void write_pid();

  private:
    std::string path_;
    unique_fd fd_;
};

}  // namespace pfp::compat
