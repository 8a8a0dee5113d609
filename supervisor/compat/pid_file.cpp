#include "supervisor/compat/pid_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pfp::compat {
namespace {

std::string read_pid(int fd) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s.empty() ? "unknown" : s;
}

std::runtime_error failure(const std::string& path, const std::string& what, int err) {
    return std::runtime_error("pid file " + path + ": " + what + ": " + std::strerror(err));
}

}  // namespace

PidFile::PidFile(std::string path) : path_(std::move(path)) {
    // Two rounds at most: a stale file is removed once, then created afresh.
    for (int round = 0; round < 2; ++round) {
        fd_.reset(::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
        if (fd_) {
            if (::flock(fd_.get(), LOCK_EX | LOCK_NB) < 0) {
                const int err = errno;
                ::unlink(path_.c_str());
                throw failure(path_, "lock", err);
            }
            return;
        }
        if (errno != EEXIST) throw failure(path_, "create", errno);
        unique_fd old(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!old) {
            if (errno == ENOENT) continue;  // removed meanwhile
            throw failure(path_, "open the existing file", errno);
        }
        struct stat st {};
        if (::fstat(old.get(), &st) < 0 || !S_ISREG(st.st_mode))
            throw std::runtime_error("pid file " + path_ + " exists and is not a regular file");
        if (::flock(old.get(), LOCK_EX | LOCK_NB) < 0) {
            if (errno == EWOULDBLOCK)
                throw std::runtime_error("pid file " + path_ + " is in use by pid " +
                                         read_pid(old.get()) + " (another instance is running)");
            throw failure(path_, "lock", errno);
        }
        // Nobody holds it: the process that wrote it is gone. Replace it.
        if (::unlink(path_.c_str()) < 0 && errno != ENOENT)
            throw failure(path_, "remove the stale file", errno);
    }
    throw std::runtime_error("pid file " + path_ + ": another process keeps re-creating it");
}

PidFile::~PidFile() {
    if (fd_) ::unlink(path_.c_str());
}

void PidFile::write_pid() {
    const std::string text = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_.get(), 0) < 0 ||
        ::pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
        throw failure(path_, "write", errno);
}

}  // namespace pfp::compat
