#include "workers/stream_worker.hpp"

#include <algorithm>
#include <stdexcept>

#include "common/socket_util.hpp"
#include "workers/route.hpp"
#include "workers/stream_relay.hpp"

namespace pfp::worker {

namespace {

class StreamWorker final : public WorkerBody {
  public:
    StreamWorker(const WorkerConfig& c, Route route, unique_fd listener, EventLoop& loop)
        : route_(std::move(route)),
          relay_(loop, std::move(listener), route_,
                 RelayOptions{c.max_connections, c.connect_timeout, c.idle_timeout, c.splice,
                              c.proxy + "/" + std::to_string(c.index)}) {}

    void start() override { relay_.start(); }
    void stop_accepting() override { relay_.stop_accepting(); }
    size_t active() const override { return relay_.active(); }
    const ipc::Stats& stats() const override { return relay_.stats(); }
    std::optional<Clock::time_point> tick(Clock::time_point now) override {
        return relay_.tick(now);
    }

  private:
    Route route_;  // before relay_, which keeps a reference
    StreamRelay relay_;
};

}  // namespace

std::unique_ptr<WorkerBody> make_stream_worker(const WorkerConfig& config,
                                               std::vector<unique_fd> fds, EventLoop& loop,
                                               std::initializer_list<int> listener_families) {
    const std::string kind(kind_name(config.kind));
    if (fds.size() != 1)
        throw std::runtime_error(kind + " expects 1 fd (the listener), got " +
                                 std::to_string(fds.size()));
    Route route = Route::from_config(config);
    const int family = route.listen.family();
    if (std::find(listener_families.begin(), listener_families.end(), family) ==
        listener_families.end())
        throw std::runtime_error(kind + " cannot listen on " + config.listen);
    require_stream_listener(fds[0].get(), family, "listener fd for " + config.listen);
    return std::make_unique<StreamWorker>(config, std::move(route), std::move(fds[0]), loop);
}

}  // namespace pfp::worker
