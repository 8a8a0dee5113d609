#include "tests/support/lossy_udp_relay.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <stdexcept>
#include <vector>

namespace pfp::test::lossy {
namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error failure(const std::string& what) {
    return std::runtime_error("lossy-udp-relay: " + what + ": " + std::strerror(errno));
}

// splitmix64: a tiny generator whose sequence is the same on every platform and library.
struct Random {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

struct Held {
    std::string bytes;
    Clock::time_point since;
};

// One direction of one flow: its own random sequence and the datagrams held back.
struct Direction {
    Random random;
    std::deque<Held> held;
};

struct Flow {
    uint64_t id = 0;
    SockAddr client;
    unique_fd back;  // connected to the target
    Direction up, down;
    Clock::time_point last;
};

void set_buffers(int fd, int bytes) {
    if (bytes <= 0) return;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

// "IP:PORT" or "[IPv6]:PORT", numeric; port 0 (any free one) allowed.
SockAddr parse_address(const std::string& text, const char* what) {
    const auto bad = [&](const char* why) {
        return std::runtime_error(std::string("lossy-udp-relay: invalid ") + what + " '" + text +
                                  "': " + why);
    };
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) throw bad("expected IP:PORT or [IPv6]:PORT");
    std::string host = text.substr(0, colon);
    const std::string port_text = text.substr(colon + 1);
    char* end = nullptr;
    const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port > 65535) throw bad("expected a port 0-65535");
    SockAddr a;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(static_cast<uint16_t>(port));
        if (::inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1)
            throw bad("bad IPv6 address");
        a.len = sizeof *in6;
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&a.storage);
        in4->sin_family = AF_INET;
        in4->sin_port = htons(static_cast<uint16_t>(port));
        if (::inet_pton(AF_INET, host.c_str(), &in4->sin_addr) != 1) throw bad("bad IPv4 address");
        a.len = sizeof *in4;
    }
    return a;
}

std::string key_of(const sockaddr_storage& a, socklen_t len) {
    return std::string(reinterpret_cast<const char*>(&a), len);
}

constexpr size_t kBatch = 32;
constexpr size_t kDatagramMax = 65536;

}  // namespace

// The relay's state while it runs (the thread's own; counters are shared through atomics).
class Loop {
  public:
    Loop(const Options& o, const SockAddr& target, int front, int stop, Relay::Shared& c, Tap& tap)
        : o_(o),
          target_(target),
          front_(front),
          stop_(stop),
          c_(c),
          tap_(tap),
          buffers_(kBatch, std::vector<char>(kDatagramMax)) {
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_) throw failure("epoll_create1");
        add(front_, kFront);
        add(stop_, kStop);
    }

    void run() {
        Clock::time_point next_sweep = Clock::now() + std::chrono::seconds(1);
        std::array<epoll_event, 64> events{};
        for (;;) {
            const int timeout = held_ > 0 ? static_cast<int>(o_.hold_limit.count()) : 1000;
            const int n = ::epoll_wait(epoll_.get(), events.data(), events.size(), timeout);
            if (n < 0 && errno != EINTR) return;
            for (int i = 0; i < n; ++i) {
                const uint64_t tag = events[i].data.u64;
                if (tag == kStop) return;
                if (tag == kFront) {
                    from_front();
                } else if (auto it = flows_.find(tag); it != flows_.end()) {
                    from_back(*it->second);
                }
            }
            const auto now = Clock::now();
            if (held_ > 0) release_expired(now);
            if (now >= next_sweep) {
                sweep(now);
                next_sweep = now + std::chrono::seconds(1);
            }
        }
    }

  private:
    static constexpr uint64_t kFront = 0, kStop = 1;
    enum Counter { received, sent, dropped, duplicated, reordered, lost, flows };

    void count(Counter which, uint64_t n = 1) { c_[which].fetch_add(n, std::memory_order_relaxed); }

    void add(int fd, uint64_t tag) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = tag;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throw failure("epoll_ctl");
    }

    // Reads up to kBatch datagrams; calls `each(index, length, source, source_len)`.
    template <typename Each>
    void read_batch(int fd, Each each) {
        std::array<mmsghdr, kBatch> msgs{};
        std::array<iovec, kBatch> iov{};
        std::array<sockaddr_storage, kBatch> from{};
        for (size_t i = 0; i < kBatch; ++i) {
            iov[i] = {buffers_[i].data(), buffers_[i].size()};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        const int n = ::recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
        for (int i = 0; i < n; ++i) {
            count(received);
            each(static_cast<size_t>(i), msgs[i].msg_len, from[i], msgs[i].msg_hdr.msg_namelen);
        }
    }

    void from_front() {
        read_batch(front_, [&](size_t i, size_t len, const sockaddr_storage& src, socklen_t sl) {
            if (o_.record) {
                const std::lock_guard lock(tap_.mutex);
                tap_.recorded.emplace_back(buffers_[i].data(), len);
            }
            Flow* f = flow_for(src, sl);
            if (f == nullptr) return;
            f->last = Clock::now();
            pass(f->up, buffers_[i].data(), len,
                 [&](const char* p, size_t l) { return ::send(f->back.get(), p, l, 0); });
        });
    }

    void from_back(Flow& f) {
        read_batch(f.back.get(), [&](size_t i, size_t len, const sockaddr_storage&, socklen_t) {
            f.last = Clock::now();
            pass(f.down, buffers_[i].data(), len, [&](const char* p, size_t l) {
                return ::sendto(front_, p, l, 0, f.client.get(), f.client.len);
            });
        });
    }

    // One datagram's fate: three draws always (so later fates do not depend on earlier ones).
    template <typename Send>
    void pass(Direction& d, const char* p, size_t len, Send send) {
        const double drop_draw = d.random.unit(), dup_draw = d.random.unit(),
                     hold_draw = d.random.unit();
        if (drop_draw < o_.drop) {
            count(dropped);
            return;
        }
        if (hold_draw < o_.reorder && d.held.size() < o_.max_held) {
            d.held.push_back({std::string(p, len), Clock::now()});
            ++held_;
            return;
        }
        transmit(send, p, len);
        if (dup_draw < o_.duplicate) {
            count(duplicated);
            transmit(send, p, len);
        }
        // Held datagrams follow the one that overtook them.
        while (!d.held.empty()) {
            count(reordered);
            transmit(send, d.held.front().bytes.data(), d.held.front().bytes.size());
            d.held.pop_front();
            --held_;
        }
    }

    template <typename Send>
    void transmit(Send send, const char* p, size_t len) {
        if (tap_.cut.load(std::memory_order_relaxed)) {
            count(dropped);
        } else if (send(p, len) < 0) {
            count(lost);
        } else {
            count(sent);
        }
    }

    void release_expired(Clock::time_point now) {
        for (auto& [id, f] : flows_) {
            Flow* flow = f.get();
            auto release = [&](Direction& d, auto send) {
                while (!d.held.empty() && now - d.held.front().since >= o_.hold_limit) {
                    transmit(send, d.held.front().bytes.data(), d.held.front().bytes.size());
                    d.held.pop_front();
                    --held_;
                }
            };
            release(flow->up,
                    [&](const char* p, size_t l) { return ::send(flow->back.get(), p, l, 0); });
            release(flow->down, [&](const char* p, size_t l) {
                return ::sendto(front_, p, l, 0, flow->client.get(), flow->client.len);
            });
        }
    }

    void close_flow(std::map<uint64_t, std::unique_ptr<Flow>>::iterator it) {
        const size_t pending = it->second->up.held.size() + it->second->down.held.size();
        held_ -= pending;
        count(lost, pending);
        by_client_.erase(key_of(it->second->client.storage, it->second->client.len));
        flows_.erase(it);  // closing the socket removes it from the epoll set
    }

    void sweep(Clock::time_point now) {
        for (auto it = flows_.begin(); it != flows_.end();) {
            auto next = std::next(it);
            if (now - it->second->last >= o_.idle_timeout) close_flow(it);
            it = next;
        }
    }

    Flow* flow_for(const sockaddr_storage& src, socklen_t len) {
        const std::string key = key_of(src, len);
        if (auto it = by_client_.find(key); it != by_client_.end()) return flows_[it->second].get();
        if (flows_.size() >= o_.max_flows && !flows_.empty()) {
            auto oldest = flows_.begin();
            for (auto it = flows_.begin(); it != flows_.end(); ++it)
                if (it->second->last < oldest->second->last) oldest = it;
            close_flow(oldest);
        }
        auto f = std::make_unique<Flow>();
        f->id = next_id_++;
        std::memcpy(&f->client.storage, &src, len);
        f->client.len = len;
        f->back.reset(::socket(target_.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!f->back) return nullptr;
        set_buffers(f->back.get(), o_.socket_buffer);
        if (::connect(f->back.get(), target_.get(), target_.len) < 0) return nullptr;
        // Each direction's sequence: the seed, the flow's number and the direction, mixed.
        const uint64_t base = Random{o_.seed ^ (f->id * 0xd1b54a32d192ed03ULL)}.next();
        f->up.random = Random{base};
        f->down.random = Random{base ^ 0x5bd1e9955bd1e995ULL};
        f->last = Clock::now();
        add(f->back.get(), f->id);
        count(flows);
        {
            const std::lock_guard lock(tap_.mutex);
            if (!tap_.first_back) tap_.first_back.reset(::fcntl(f->back.get(), F_DUPFD_CLOEXEC, 0));
        }
        by_client_[key] = f->id;
        Flow* raw = f.get();
        flows_[f->id] = std::move(f);
        return raw;
    }

    const Options& o_;
    const SockAddr& target_;
    int front_, stop_;
    Relay::Shared& c_;
    Tap& tap_;
    unique_fd epoll_;
    std::vector<std::vector<char>> buffers_;
    std::map<uint64_t, std::unique_ptr<Flow>> flows_;
    std::map<std::string, uint64_t> by_client_;
    uint64_t next_id_ = 2;  // 0 and 1 tag the front socket and the stop eventfd
    size_t held_ = 0;
};

Relay::Relay(Options options) : options_(std::move(options)) {
    for (double p : {options_.drop, options_.duplicate, options_.reorder})
        if (!(p >= 0 && p <= 1))
            throw std::runtime_error("lossy-udp-relay: a probability must be 0..1");
    const SockAddr listen = parse_address(options_.listen, "listen address");
    target_ = parse_address(options_.target, "target address");
    front_.reset(::socket(listen.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!front_) throw failure("socket");
    set_buffers(front_.get(), options_.socket_buffer);
    if (::bind(front_.get(), listen.get(), listen.len) < 0)
        throw failure("bind " + options_.listen);
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(front_.get(), reinterpret_cast<sockaddr*>(&bound), &len) < 0)
        throw failure("getsockname");
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_) throw failure("eventfd");
    loop_ = std::make_unique<Loop>(options_, target_, front_.get(), stop_.get(), counters_, tap_);
    thread_ = std::thread([this] { loop_->run(); });
}

Relay::~Relay() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(stop_.get(), &one, sizeof one);
    if (thread_.joinable()) thread_.join();
}

std::vector<std::string> Relay::client_datagrams() const {
    const std::lock_guard lock(tap_.mutex);
    return tap_.recorded;
}

bool Relay::inject(const std::string& datagram) {
    const std::lock_guard lock(tap_.mutex);
    if (!tap_.first_back) return false;
    return ::send(tap_.first_back.get(), datagram.data(), datagram.size(), MSG_DONTWAIT) ==
           static_cast<ssize_t>(datagram.size());
}

Counters Relay::counters() const {
    const auto get = [this](size_t i) { return counters_[i].load(); };
    return {get(0), get(1), get(2), get(3), get(4), get(5), get(6)};
}

}  // namespace pfp::test::lossy
