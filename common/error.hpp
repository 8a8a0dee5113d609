#pragma once
// Setup-time errors carry their context in the message; the data path uses error codes instead.
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace pfp {

// A failed system call during setup: "what: strerror(errno)".
class system_error : public std::runtime_error {
  public:
    system_error(const std::string& what, int err)
        : std::runtime_error(what + ": " + std::strerror(err)), errno_(err) {}
    int code() const noexcept { return errno_; }

  private:
    int errno_;
};

[[noreturn]] inline void throw_errno(const std::string& what) {
    throw system_error(what, errno);
}

}  // namespace pfp
