#include "udp_support.hpp"

#include <arpa/inet.h>
#include <poll.h>

#include <cstring>
#include <stdexcept>
#include <vector>

namespace pfp::test {

namespace {

socklen_t fill_loopback(int family, uint16_t port, sockaddr_storage& ss) {
    std::memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof(sockaddr_in);
    }
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_loopback;
    return sizeof(sockaddr_in6);
}

std::string text_of(const sockaddr_storage& ss) {
    char host[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
    }
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
}

}  // namespace

std::string loopback_text(int family) {
    return family == AF_INET ? "127.0.0.1" : "[::1]";
}

unique_fd bind_udp(int family, uint16_t port) {
    unique_fd s(::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) throw std::runtime_error("socket(SOCK_DGRAM)");
    sockaddr_storage ss;
    const socklen_t len = fill_loopback(family, port, ss);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0)
        throw std::runtime_error(std::string("bind udp: ") + std::strerror(errno));
    int size = 4 << 20;  // bursts of large datagrams
    ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    ::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    return s;
}

unique_fd bind_udp_at(const std::string& ipv4, uint16_t port) {
    unique_fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) throw std::runtime_error("socket(SOCK_DGRAM)");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (::inet_pton(AF_INET, ipv4.c_str(), &a.sin_addr) != 1 ||
        ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        throw std::runtime_error("bind udp " + ipv4 + ":" + std::to_string(port) + ": " +
                                 std::strerror(errno));
    return s;
}

uint16_t local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return ss.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                                   : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

uint16_t free_udp_port(int family) {
    unique_fd s = bind_udp(family, 0);
    return local_port(s.get());
}

bool send_udp(int fd, int family, uint16_t port, const std::string& payload) {
    sockaddr_storage ss;
    const socklen_t len = fill_loopback(family, port, ss);
    return ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) ==
           static_cast<ssize_t>(payload.size());
}

std::optional<std::string> recv_udp(int fd, std::chrono::milliseconds timeout, bool* truncated) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::string buf(70000, '\0');
    iovec iov{buf.data(), buf.size()};
    msghdr h{};
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(fd, &h, MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    if (truncated) *truncated = (h.msg_flags & MSG_TRUNC) != 0;
    buf.resize(static_cast<size_t>(n));
    return buf;
}

UdpEchoServer::UdpEchoServer(int family, uint16_t port, bool silent)
    : UdpEchoServer(bind_udp(family, port), silent) {}

UdpEchoServer::UdpEchoServer(const std::string& ipv4, uint16_t port)
    : UdpEchoServer(bind_udp_at(ipv4, port), false) {}

UdpEchoServer::UdpEchoServer(unique_fd sock, bool silent)
    : sock_(std::move(sock)), silent_(silent) {
    thread_ = std::thread([this] {
        std::vector<char> buf(70000);
        while (!stop_) {
            pollfd p{sock_.get(), POLLIN, 0};
            if (::poll(&p, 1, 50) != 1) continue;
            sockaddr_storage from{};
            socklen_t len = sizeof from;
            const ssize_t n = ::recvfrom(sock_.get(), buf.data(), buf.size(), 0,
                                         reinterpret_cast<sockaddr*>(&from), &len);
            if (n < 0) continue;
            const std::string peer = text_of(from);
            {
                std::lock_guard lock(mu_);
                if (peers_.insert(peer).second) peer_addrs_.push_back(from);
                const std::string head(buf.data(), static_cast<size_t>(std::min<ssize_t>(n, 32)));
                last_by_prefix_.emplace_back(head, peer);
            }
            ++received_;
            if (!silent_)
                ::sendto(sock_.get(), buf.data(), static_cast<size_t>(n), 0,
                         reinterpret_cast<sockaddr*>(&from), len);
        }
    });
}

UdpEchoServer::~UdpEchoServer() {
    stop_ = true;
    thread_.join();
}

std::set<std::string> UdpEchoServer::peers() const {
    std::lock_guard lock(mu_);
    return peers_;
}

std::string UdpEchoServer::peer_of(const std::string& prefix) const {
    std::lock_guard lock(mu_);
    for (auto it = last_by_prefix_.rbegin(); it != last_by_prefix_.rend(); ++it)
        if (it->first.starts_with(prefix)) return it->second;
    return "";
}

void UdpEchoServer::push_to_peers(const std::string& payload) {
    std::lock_guard lock(mu_);
    for (const auto& a : peer_addrs_)
        ::sendto(sock_.get(), payload.data(), payload.size(), 0,
                 reinterpret_cast<const sockaddr*>(&a),
                 a.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
}

}  // namespace pfp::test
