#pragma once
// Support for the transparent-proxy tests: two namespaces joined by a veth (Topology), a threaded
// server that records its peers, a client run inside a namespace, and the policy entries of the
// ip-to-vsock-transparent / vsock-to-ip-transparent pair.
//
// Every pf-proxyd here runs with "user": "nobody"; its workers' own outbound connections are
// excluded from the OUTPUT redirects with `-m owner ! --uid-owner 65534`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "netns.hpp"

namespace pfp::test::transparent {

inline constexpr uint16_t kEgressPort = 15001;  // fresh namespaces: every port is free
inline constexpr uint16_t kEgressPort2 = 15002;
inline constexpr auto kIo = std::chrono::seconds(8);  // every socket operation in these tests

inline const std::vector<std::string> kNotNobody = {"-m", "owner", "!", "--uid-owner", "65534"};

inline std::vector<std::string> concat(std::vector<std::string> a,
                                       const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

inline std::string hex(const std::string& s) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        if (!out.empty()) out += ' ';
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

inline std::string bytes(std::initializer_list<unsigned> b) {
    std::string s;
    for (unsigned x : b) s += static_cast<char>(x);
    return s;
}

inline std::string peer_ip(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    else if (ss.ss_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf,
                    sizeof buf);
    return buf;
}

inline uint16_t peer_port(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
    return 0;
}

// "ip port" of a connected socket's own end.
inline std::string local_address(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    return peer_ip(ss) + " " + std::to_string(peer_port(ss));
}

// Accepts on a ready listener (TCP or Unix, any namespace) and runs `handle(fd, peer ip)` on each
// connection in its own thread; when the handler returns, the connection is shut down. The
// destructor shuts every connection down too, so a handler blocked in recv() ends at once when a
// test fails. The fds themselves are closed only by the destructor (no fd reuse races).
//
// The constructor returns once the accept thread runs (running_thread).
// A thread that is running `f` when this returns: tests fork namespace children right after
// starting one, and a thread still starting at a fork can leave an ASan allocator lock taken in
// the child forever (netns.hpp).
inline std::thread running_thread(std::function<void()> f) {
    // Shared: count_down() may still touch the latch after wait() has returned.
    auto running = std::make_shared<std::latch>(1);
    std::thread t([running, f = std::move(f)] {
        running->count_down();
        f();
    });
    running->wait();
    return t;
}

class Server {
  public:
    using Handler = std::function<void(int fd, const std::string& peer)>;
    Server(unique_fd listener, Handler handle)
        : listener_(std::move(listener)), handle_(std::move(handle)) {
        thread_ = running_thread([this] { accept_loop(); });
    }
    ~Server() {
        stop_ = true;
        thread_.join();
        {
            std::lock_guard lock(mu_);
            for (auto& c : conns_) ::shutdown(c.get(), SHUT_RDWR);
        }
        for (auto& t : workers_) t.join();
    }
    int accepted() const { return accepted_; }
    // Joins the thread of every connection accepted so far (each ends once its client has gone).
    // Call before forking the next namespace child in a loop: a handler thread still exiting at
    // that fork holds ASan's allocator locks, which the child could then wait on forever.
    void wait_idle() {
        std::vector<std::thread> done;
        {
            std::lock_guard lock(mu_);
            done.swap(workers_);
        }
        for (auto& t : done) t.join();
    }
    // "ip port" of every accepted connection's peer, in order.
    std::vector<std::string> peers() {
        std::lock_guard lock(mu_);
        return peers_;
    }

  private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{listener_.get(), POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            int fd =
                ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
            if (fd < 0) continue;
            ++accepted_;
            set_timeouts(fd, kIo);
            std::lock_guard lock(mu_);
            conns_.emplace_back(fd);  // closed by the destructor, after the handlers ended
            peers_.push_back(peer_ip(ss) + " " + std::to_string(peer_port(ss)));
            workers_.emplace_back([this, fd, peer = peer_ip(ss)] {
                handle_(fd, peer);
                ::shutdown(fd, SHUT_RDWR);  // the handler is done: the peer sees the end
            });
        }
    }

    unique_fd listener_;
    Handler handle_;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::mutex mu_;
    std::vector<unique_fd> conns_;
    std::vector<std::string> peers_;
    std::thread thread_;
    std::vector<std::thread> workers_;  // under mu_
};

inline std::string describe(const Transfer& t) {
    std::ostringstream s;
    s << "ok=" << t.ok << " received=" << t.received << " sent_hash=" << t.sent_hash
      << " received_hash=" << t.received_hash;
    return s.str();
}

// A client of a transparent path: connects to ip:port from the namespace it runs in (inside
// run_in_child), sends `request`, shuts down writing and reads until the end. Returns
// "connect failed: ..." or "<how it ended> <what it received>".
inline std::string request_here(const std::string& ip, uint16_t port, const std::string& request,
                                bool shut_write = true, std::string* local = nullptr) {
    unique_fd c;
    if (int err = connect_tcp_here(ip, port, c, kIo))
        return std::string("connect failed: ") + std::strerror(err);
    if (local) *local = local_address(c.get());
    if (!request.empty() && !write_all(c.get(), request.data(), request.size()))
        return std::string("send failed: ") + std::strerror(errno);
    if (shut_write) ::shutdown(c.get(), SHUT_WR);
    std::string got;
    std::string end = read_until_end(c.get(), got);
    return end + " " + got;
}

// Two namespaces joined by a veth: N holds the client and pf-proxyd, S the real servers.
//   N: vn 10.200.0.1/16, fd00:200::1/64     S: vs 10.200.1.1/16, fd00:200::2/64
struct Topology {
    NetNs n{"n"};
    NetNs s{"s"};
    Veth veth{n, "vn", s, "vs"};
    Topology() {
        n.ip({"addr", "add", "10.200.0.1/16", "dev", "vn"});
        n.ip({"addr", "add", "fd00:200::1/64", "dev", "vn", "nodad"});
        s.ip({"addr", "add", "10.200.1.1/16", "dev", "vs"});
        s.ip({"addr", "add", "fd00:200::2/64", "dev", "vs", "nodad"});
    }
};

inline std::string quoted(const std::string& s) {
    return "\"" + s + "\"";
}

// The pair: egress (ip-to-vsock-transparent) on `egress_listen` -> unix hop -> egress-host
// (vsock-to-ip-transparent) -> the destination the header names, if `allow` admits it.
inline std::string pair_entries(const std::string& suffix, const std::string& egress_listen,
                                const std::string& hop, const std::string& allow,
                                const std::string& egress_extra = "") {
    return "{\"name\": \"egress" + suffix + "\", \"listen\": " + quoted(egress_listen) +
           ", \"upstream\": " + quoted("unix:" + hop) + ", \"send_original_destination\": true" +
           egress_extra + "}, {\"name\": \"egress-host" + suffix +
           "\", \"listen\": " + quoted("unix:" + hop) +
           ", \"upstream\": \"destination-header\", \"allow\": [" + allow + "]}";
}

inline std::string policy_of(const std::string& entries) {
    return "{\"user\": \"nobody\", \"drain_timeout\": \"1s\", \"proxies\": [" + entries + "]}";
}

}  // namespace pfp::test::transparent
