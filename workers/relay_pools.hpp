#pragma once
// Pipes (splice mode) and buffers (copy mode) are lent to a connection's direction only while it
// has bytes in flight, so an idle connection holds no pipe and no buffer (2 fds, not 6).
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp::worker {

struct Pipe {
    unique_fd read_end;
    unique_fd write_end;
    size_t capacity = 0;
};

class PipePool {
  public:
    explicit PipePool(size_t wanted_size, size_t max_idle = 64)
        : wanted_size_(wanted_size), max_idle_(max_idle) {}
    std::optional<Pipe> take();  // nullopt with errno set when no pipe can be made
    void give(Pipe&& p);         // only empty pipes come back

  private:
    size_t wanted_size_;
    size_t max_idle_;
    std::vector<Pipe> idle_;
};

class BufferPool {
  public:
    static constexpr size_t kSize = 64 * 1024;
    explicit BufferPool(size_t max_idle = 64) : max_idle_(max_idle) {}
    std::unique_ptr<std::byte[]> take();
    void give(std::unique_ptr<std::byte[]>&& b);

  private:
    size_t max_idle_;
    std::vector<std::unique_ptr<std::byte[]>> idle_;
};

}  // namespace pfp::worker
