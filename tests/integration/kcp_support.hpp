#pragma once
// Shared by the KCP tunnel tests: a policy with a kcp-client and a kcp-server proxy in one
// pf-proxyd (client -> server -> upstream, all on loopback), a counting TCP echo upstream, the
// tunnel counters from `pf-proxyctl status --json`, and the test key.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "proxy_status.hpp"
#include "tests/support/lossy_udp_relay.hpp"

namespace pfp::test {

inline constexpr const char* kKcpKeyHex =
    "6b6370207465737420707265207368617265642020206b657920666f72207066";

struct KcpPorts {
    uint16_t client = free_port();    // kcp-client's TCP listener
    uint16_t server = 0;              // kcp-server's UDP socket
    uint16_t upstream = free_port();  // the TCP echo server
    uint16_t path = 0;                // where kcp-client sends (the server, or a relay before it)
};

// `key_file`: "" for plain KCP. `client_extra`/`server_extra` go into each entry. The socket
// buffers are the kinds' default (4 MiB), which the tests rely on for their transfers.
inline std::string kcp_policy(const KcpPorts& p, const std::string& key_file,
                              const std::string& client_extra = "",
                              const std::string& server_extra = "") {
    const std::string psk = key_file.empty() ? "" : ", \"psk_file\": \"" + key_file + "\"";
    return "{\"user\": \"nobody\", \"drain_timeout\": \"2s\", \"proxies\": ["
           "{\"name\": \"kc\", \"tunnel\": \"kcp\", \"listen\": \"tcp:127.0.0.1:" +
           std::to_string(p.client) +
           "\", \"upstream\": \"udp:127.0.0.1:" + std::to_string(p.path ? p.path : p.server) +
           "\"" + psk + client_extra +
           "}, {\"name\": \"ks\", \"tunnel\": \"kcp\", \"listen\": \"udp:127.0.0.1:" +
           std::to_string(p.server) +
           "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(p.upstream) + "\"" + psk +
           server_extra + "}]}";
}

// A relay (tests/support/lossy_udp_relay.hpp) in front of kcp-server's port that records what
// the client sends; lossless unless the caller sets rates.
inline lossy::Options relay_to(uint16_t server_port) {
    lossy::Options o;
    o.target = "127.0.0.1:" + std::to_string(server_port);
    o.record = true;
    return o;
}

// The key file pf-proxyd reads at start: 0600, as it requires.
inline std::string write_key(const TempDir& dir, const std::string& hex = kKcpKeyHex) {
    const std::string path = dir.write("kcp.key", hex + "\n");
    ::chmod(path.c_str(), 0600);
    return path;
}

// A TCP upstream that runs `handle` on each connection in its own thread and counts accepts.
class CountingServer {
  public:
    CountingServer(uint16_t port, std::function<void(int)> handle)
        : listener_(listen_tcp(port)), handle_(std::move(handle)) {
        thread_ = std::thread([this] {
            while (!stop_) {
                pollfd p{listener_.get(), POLLIN, 0};
                if (::poll(&p, 1, 50) <= 0) continue;
                const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) continue;
                ++accepted_;
                workers_.emplace_back([this, fd] {
                    unique_fd c(fd);
                    set_timeouts(c.get(), 60s);
                    handle_(c.get());
                });
            }
        });
    }
    ~CountingServer() {
        stop_ = true;
        thread_.join();
        for (auto& t : workers_) t.join();
    }
    int accepted() const { return accepted_; }

  private:
    unique_fd listener_;
    std::function<void(int)> handle_;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::thread thread_;
    std::vector<std::thread> workers_;
};

// Echoes until the client's FIN, then passes it on.
inline void echo_until_eof(int fd) {
    char buf[65536];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (!write_all(fd, buf, static_cast<size_t>(n))) return;
    }
    ::shutdown(fd, SHUT_WR);
}

// counters.tunnel of proxy `name` ("{}" when unavailable).
inline nlohmann::json tunnel_counters(const Daemon& d, const std::string& name) {
    const nlohmann::json c = proxy_counters(d, name);
    return c.contains("tunnel") ? c.at("tunnel") : nlohmann::json::object();
}

// Waits (workers report once a second) until the counters satisfy `pred`.
template <class Pred>
nlohmann::json wait_tunnel_counters(const Daemon& d, const std::string& name, Pred pred,
                                    std::chrono::milliseconds timeout = 20s) {
    nlohmann::json c;
    wait_until(
        [&] {
            c = tunnel_counters(d, name);
            return !c.empty() && pred(c);
        },
        timeout);
    return c;
}

struct SocketBuffers {
    int receive = 0;
    int send = 0;
};
// SO_RCVBUF/SO_SNDBUF of every UDP socket process `pid` holds.
inline std::vector<SocketBuffers> udp_socket_buffers(pid_t pid) {
    std::vector<SocketBuffers> out;
    for (const unique_fd& fd : socket_copies(pid)) {
        int type = 0;
        socklen_t len = sizeof type;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_DGRAM)
            continue;
        SocketBuffers b;
        len = sizeof b.receive;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &b.receive, &len);
        len = sizeof b.send;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &b.send, &len);
        out.push_back(b);
    }
    return out;
}

}  // namespace pfp::test
