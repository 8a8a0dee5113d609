#pragma once
// The body shared by every stream kind: a Route built from the handover and the StreamRelay
// that follows it. Each kind's file only says which listeners it accepts.
#include <initializer_list>
#include <memory>
#include <string_view>
#include <vector>

#include "workers/worker_body.hpp"

namespace pfp::worker {

// Checks the single handed-over fd is a listening stream socket of the policy's family and that
// the family is one of `listener_families`. Throws std::runtime_error naming what was wrong.
std::unique_ptr<WorkerBody> make_stream_worker(const WorkerConfig& config,
                                               std::vector<unique_fd> fds, EventLoop& loop,
                                               std::initializer_list<int> listener_families);

}  // namespace pfp::worker
