// The stream family's body (declared in worker_body.hpp): a Route built from the handover and the
// StreamRelay that follows it.
#include "workers/redirected_destination.hpp"
#include "workers/route.hpp"
#include "workers/stream_relay.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {

namespace {

class StreamWorker final : public WorkerBody {
  public:
    StreamWorker(const Handover& h, const StreamOptions& o, Route route, unique_fd listener,
                 EventLoop& loop)
        : route_(std::move(route)),
          relay_(loop, std::move(listener), route_,
                 RelayOptions{.max_connections = o.max_connections,
                              .connect_timeout = o.connect_timeout,
                              .idle_timeout = o.idle_timeout,
                              .header_timeout = o.header_timeout,
                              .splice = o.splice,
                              .relay_threads = o.relay_threads,
                              .tag = h.tag()}) {
        loop.set_busy_poll(o.busy_poll);
    }

    void start() override { relay_.start(); }
    void stop_accepting() override { relay_.stop_accepting(); }
    size_t active() const override { return relay_.active(); }
    std::string encoded_stats() const override { return ipc::encode_stats(relay_.stats()); }
    std::optional<Clock::time_point> tick(Clock::time_point now) override {
        return relay_.tick(now);
    }
    bool update_upstream(std::vector<SockAddr> addresses) override {
        if (!relay_.has_host_upstream() || !same_port(addresses)) return false;
        relay_.set_upstream_addresses(std::move(addresses));
        return true;
    }

  private:
    // A new set keeps the upstream's port: the Landlock rule allows that port only.
    bool same_port(const std::vector<SockAddr>& set) const {
        for (const SockAddr& a : set)
            if (port_of(a) != route_.upstream.port) return false;
        return true;
    }

    Route route_;  // before relay_, which keeps a reference
    StreamRelay relay_;
};

}  // namespace

std::unique_ptr<WorkerBody> make_stream_worker(const Handover& h, const StreamOptions& options,
                                               unique_fd listener, EventLoop& loop) {
    Route route = Route::build(h.kind, h.fds.at(0).endpoint, options);
    return std::make_unique<StreamWorker>(h, options, std::move(route), std::move(listener), loop);
}

std::unique_ptr<WorkerBody> make_worker_body(const Handover& h, std::vector<unique_fd> fds,
                                             EventLoop& loop) {
    switch (kind_row(h.kind).family) {
        case KindFamily::stream:
            return make_stream_worker(h, std::get<StreamOptions>(h.options), std::move(fds.at(0)),
                                      loop);
        case KindFamily::datagram:
            return make_datagram_worker(h, std::get<DatagramOptions>(h.options),
                                        std::move(fds.at(0)), loop);
        case KindFamily::packet:
            if (kind_row(h.kind).fds.front() == FdRole::nfqueue)
                return make_nfqueue_sender(h, std::get<PacketOptions>(h.options), std::move(fds),
                                           loop);
            if (kind_row(h.kind).fds.front() == FdRole::nflog)
                return make_nflog_sender(h, std::get<PacketOptions>(h.options), std::move(fds),
                                         loop);
            return make_raw_injector(h, std::get<PacketOptions>(h.options), std::move(fds), loop);
        case KindFamily::tunnel:
            if (kind_row(h.kind).listen == ListenSide::tcp)
                return make_kcp_client(h, std::get<TunnelOptions>(h.options), std::move(fds.at(0)),
                                       loop);
            return make_kcp_server(h, std::get<TunnelOptions>(h.options), std::move(fds.at(0)),
                                   loop);
    }
    throw std::runtime_error("kind " + std::string(kind_name(h.kind)) + " has no worker body");
}

}  // namespace pfp::worker
