#include "workers/relay_pools.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace pfp::worker {

std::optional<Pipe> PipePool::take() {
    if (!idle_.empty()) {
        Pipe p = std::move(idle_.back());
        idle_.pop_back();
        return p;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return std::nullopt;
    Pipe p{unique_fd(fds[0]), unique_fd(fds[1]), 0};
    // Larger pipes mean fewer splice rounds per MiB. Past the per-user pipe quota the kernel
    // refuses (EPERM) and the default size is kept.
    int size = ::fcntl(p.write_end.get(), F_SETPIPE_SZ, static_cast<int>(wanted_size_));
    if (size < 0) size = ::fcntl(p.write_end.get(), F_GETPIPE_SZ);
    p.capacity = size > 0 ? static_cast<size_t>(size) : 4096;
    return p;
}

void PipePool::give(Pipe&& p) {
    if (idle_.size() < max_idle_) idle_.push_back(std::move(p));
}

std::unique_ptr<std::byte[]> BufferPool::take() {
    if (!idle_.empty()) {
        auto b = std::move(idle_.back());
        idle_.pop_back();
        return b;
    }
    return std::make_unique_for_overwrite<std::byte[]>(kSize);
}

void BufferPool::give(std::unique_ptr<std::byte[]>&& b) {
    if (idle_.size() < max_idle_) idle_.push_back(std::move(b));
}

}  // namespace pfp::worker
