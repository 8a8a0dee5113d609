#include "lossy_udp_relay.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

namespace pfp::test {

namespace {

sockaddr_in loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

}  // namespace

LossyUdpRelay::LossyUdpRelay(uint16_t server_port, LossProfile profile, uint16_t port)
    : server_port_(server_port), profile_(profile), rng_(profile.seed) {
    front_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = loopback(port);
    if (!front_ || ::bind(front_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        throw std::runtime_error("lossy relay: bind failed");
    socklen_t len = sizeof a;
    ::getsockname(front_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    const int big = 4 << 20;
    ::setsockopt(front_.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    thread_ = std::thread([this] { run(); });
}

LossyUdpRelay::~LossyUdpRelay() {
    stop_ = true;
    thread_.join();
}

std::vector<std::string> LossyUdpRelay::client_datagrams() const {
    std::lock_guard lock(mutex_);
    return recorded_;
}

bool LossyUdpRelay::inject(const std::string& datagram) {
    std::lock_guard lock(mutex_);
    if (clients_.empty()) return false;
    return ::send(clients_.front().upstream.get(), datagram.data(), datagram.size(), 0) ==
           static_cast<ssize_t>(datagram.size());
}

// splitmix64: the same seed gives the same losses, run after run.
bool LossyUdpRelay::chance(double p) {
    if (p <= 0) return false;
    uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) / static_cast<double>(1ULL << 53) < p;
}

// One datagram one way: dropped, or sent (perhaps twice), or held back behind the next one.
void LossyUdpRelay::pass(int fd, const std::string& d, std::optional<std::string>& held,
                         const void* to, unsigned to_len) {
    const auto out = [&](const std::string& x) {
        if (to)
            ::sendto(fd, x.data(), x.size(), MSG_DONTWAIT, static_cast<const sockaddr*>(to),
                     to_len);
        else
            ::send(fd, x.data(), x.size(), MSG_DONTWAIT);
        ++relayed_;
    };
    if (chance(profile_.drop)) {
        ++dropped_;
        return;
    }
    if (!held && chance(profile_.reorder)) {
        held = d;
        return;
    }
    out(d);
    if (chance(profile_.duplicate)) out(d);
    if (held) {
        out(*held);
        held.reset();
    }
}

void LossyUdpRelay::run() {
    std::vector<char> buf(65536);
    while (!stop_) {
        std::vector<pollfd> fds{{front_.get(), POLLIN, 0}};
        {
            std::lock_guard lock(mutex_);
            for (const Client& c : clients_) fds.push_back({c.upstream.get(), POLLIN, 0});
        }
        if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
        if (fds[0].revents & POLLIN) {
            sockaddr_storage from{};
            socklen_t len = sizeof from;
            const ssize_t n = ::recvfrom(front_.get(), buf.data(), buf.size(), MSG_DONTWAIT,
                                         reinterpret_cast<sockaddr*>(&from), &len);
            if (n >= 0) {
                const std::string d(buf.data(), static_cast<size_t>(n));
                const std::string who(reinterpret_cast<const char*>(&from), len);
                std::lock_guard lock(mutex_);
                recorded_.push_back(d);
                Client* c = nullptr;
                for (Client& x : clients_)
                    if (x.address == who) c = &x;
                if (!c) {
                    Client fresh;
                    fresh.address = who;
                    fresh.upstream.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
                    const sockaddr_in to = loopback(server_port_);
                    ::connect(fresh.upstream.get(), reinterpret_cast<const sockaddr*>(&to),
                              sizeof to);
                    const int big = 4 << 20;
                    ::setsockopt(fresh.upstream.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
                    clients_.push_back(std::move(fresh));
                    c = &clients_.back();
                }
                pass(c->upstream.get(), d, c->held_up, nullptr, 0);
            }
        }
        std::lock_guard lock(mutex_);
        for (size_t i = 1; i < fds.size() && i - 1 < clients_.size(); ++i) {
            if (!(fds[i].revents & POLLIN)) continue;
            Client& c = clients_[i - 1];
            const ssize_t n = ::recv(c.upstream.get(), buf.data(), buf.size(), MSG_DONTWAIT);
            if (n < 0) continue;
            pass(front_.get(), std::string(buf.data(), static_cast<size_t>(n)), c.held_down,
                 c.address.data(), static_cast<unsigned>(c.address.size()));
        }
    }
}

}  // namespace pfp::test
