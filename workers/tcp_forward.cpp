// Worker kind tcp-forward (tcpfwd): TCP listener -> one fixed TCP upstream.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <stdexcept>

#include "common/endpoint.hpp"
#include "common/socket_util.hpp"
#include "workers/stream_relay.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {

namespace {

class TcpConnector final : public Connector {
  public:
    explicit TcpConnector(const WorkerConfig& c)
        : config_(c), upstream_(parse_endpoint(c.upstream)) {
        if (upstream_.scheme != Scheme::tcp)
            throw std::runtime_error("tcp-forward: upstream " + c.upstream + " is not tcp");
    }

    void prepare_client(int fd) override { tune(fd); }

    int start_connect(int, unique_fd& out) override {
        unique_fd s(::socket(upstream_.addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                             IPPROTO_TCP));
        if (!s) return errno;
        tune(s.get());
        if (::connect(s.get(), upstream_.addr.get(), upstream_.addr.len) < 0 &&
            errno != EINPROGRESS)
            return errno;
        out = std::move(s);
        return 0;
    }

    std::string describe() const override { return config_.upstream; }

  private:
    // Failures here only cost tuning, never the connection.
    void tune(int fd) const {
        int one = 1;
        if (config_.tcp_nodelay) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (config_.keepalive) {
            int idle = static_cast<int>(std::max<long>(1, config_.keepalive_idle.count() / 1000));
            int intvl =
                static_cast<int>(std::max<long>(1, config_.keepalive_interval.count() / 1000));
            int cnt = config_.keepalive_count;
            ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
            ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
            ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
            ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
        }
    }

    const WorkerConfig& config_;
    Endpoint upstream_;
};

class TcpForward final : public WorkerBody {
  public:
    TcpForward(const WorkerConfig& c, unique_fd listener, EventLoop& loop)
        : config_(c),
          connector_(config_),
          relay_(loop, std::move(listener), connector_,
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
    WorkerConfig config_;
    TcpConnector connector_;
    StreamRelay relay_;
};

}  // namespace

std::unique_ptr<WorkerBody> make_tcp_forward(const WorkerConfig& config, std::vector<unique_fd> fds,
                                             EventLoop& loop) {
    if (fds.size() != 1)
        throw std::runtime_error("tcp-forward expects 1 fd (the listener), got " +
                                 std::to_string(fds.size()));
    Endpoint listen = parse_endpoint(config.listen);
    require_stream_listener(fds[0].get(), listen.family(), "listener fd for " + config.listen);
    return std::make_unique<TcpForward>(config, std::move(fds[0]), loop);
}

}  // namespace pfp::worker
