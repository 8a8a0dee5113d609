#include "supervisor/name_resolver.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <limits>
#include <stdexcept>

#include "common/address_order.hpp"

namespace pfp::supervisor {

// One socket c-ares asked us to watch. Removed sockets stay allocated until the next tick: the
// loop may still hold an event for them from the same epoll batch.
class NameResolver::SocketWatch : public EventSource {
  public:
    SocketWatch(NameResolver& r, ares_socket_t fd) : r_(r), fd_(fd) {}
    void on_event(uint32_t events) override {
        if (dead) return;
        const bool in = events & (EPOLLIN | EPOLLERR | EPOLLHUP);
        const bool out = events & EPOLLOUT;
        // May close this socket (and so mark this watch dead): nothing of `this` is used after.
        ares_process_fd(r_.channel_, in ? fd_ : ARES_SOCKET_BAD, out ? fd_ : ARES_SOCKET_BAD);
    }
    bool dead = false;

  private:
    NameResolver& r_;
    ares_socket_t fd_;
};

struct NameResolver::Pending {
    NameResolver* resolver;
    uint64_t id;
    uint16_t port;
    std::function<void(ResolveResult)> done;
};

namespace {

// c-ares keeps process-wide state; ares_library_init is reference counted.
struct AresLibrary {
    AresLibrary() {
        if (const int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS)
            throw std::runtime_error(std::string("c-ares: ") + ares_strerror(rc));
    }
    ~AresLibrary() { ares_library_cleanup(); }
};

void set_port(SockAddr& a, uint16_t port) {
    if (a.family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
    else if (a.family() == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
}

}  // namespace

NameResolver::NameResolver(EventLoop& loop, ResolverOptions options) : loop_(loop) {
    static AresLibrary library;  // once per process, before the first channel
    ares_options o{};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    o.sock_state_cb = &NameResolver::on_socket_state;
    o.sock_state_cb_data = this;
    o.timeout = static_cast<int>(options.timeout.count());
    o.tries = options.tries;
    std::string lookups = "b";  // DNS only: a configured server is the whole truth
    if (!options.server.empty()) {
        o.lookups = lookups.data();
        mask |= ARES_OPT_LOOKUPS;
    }
    if (const int rc = ares_init_options(&channel_, &o, mask); rc != ARES_SUCCESS)
        throw std::runtime_error(std::string("cannot start the DNS resolver: ") +
                                 ares_strerror(rc));
    if (!options.server.empty()) {
        if (const int rc = ares_set_servers_ports_csv(channel_, options.server.c_str());
            rc != ARES_SUCCESS) {
            ares_destroy(channel_);
            throw std::runtime_error("resolver \"" + options.server + "\": " + ares_strerror(rc));
        }
    }
}

NameResolver::~NameResolver() {
    destroying_ = true;  // ares_destroy answers every pending query with ARES_EDESTRUCTION
    ares_destroy(channel_);
    for (auto& [fd, w] : watches_) loop_.remove(fd);
}

void NameResolver::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto& r = *static_cast<NameResolver*>(data);
    const uint32_t events = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u);
    auto it = r.watches_.find(fd);
    if (events == 0) {
        if (it == r.watches_.end()) return;
        r.loop_.remove(fd);
        it->second->dead = true;
        r.closed_.push_back(std::move(it->second));
        r.watches_.erase(it);
        return;
    }
    if (it == r.watches_.end()) {
        auto w = std::make_unique<SocketWatch>(r, fd);
        // A socket the loop cannot watch would never be answered: c-ares times it out.
        if (r.loop_.add(fd, events, w.get())) r.watches_.emplace(fd, std::move(w));
        return;
    }
    r.loop_.modify(fd, events, it->second.get());
}

void NameResolver::resolve(const std::string& host, uint16_t port, int family,
                           std::function<void(ResolveResult)> done) {
    const uint64_t id = next_id_++;
    auto p = std::make_unique<Pending>(Pending{this, id, port, std::move(done)});
    Pending* raw = p.get();
    pending_.emplace(id, std::move(p));
    ares_addrinfo_hints hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;  // one entry per address (the set is the same for UDP)
    // May answer at once (a numeric host, /etc/hosts): `raw` is gone after this call then.
    ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &NameResolver::on_answer, raw);
}

void NameResolver::on_answer(void* arg, int status, int, ares_addrinfo* result) {
    auto* p = static_cast<Pending*>(arg);
    NameResolver& r = *p->resolver;
    auto node = r.pending_.extract(p->id);  // owns `p` until the end of this function
    ResolveResult out = ResolveError{ares_strerror(status)};
    if (status == ARES_SUCCESS && result) {
        AddressSet set;
        int ttl = std::numeric_limits<int>::max();
        std::vector<SockAddr> found;
        for (const ares_addrinfo_node* n = result->nodes; n; n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) || !n->ai_addr ||
                n->ai_addrlen > sizeof(sockaddr_storage))
                continue;
            SockAddr a;
            std::memcpy(&a.storage, n->ai_addr, n->ai_addrlen);
            a.len = static_cast<socklen_t>(n->ai_addrlen);
            set_port(a, p->port);
            found.push_back(a);
            if (n->ai_ttl >= 0 && n->ai_ttl < ttl) ttl = n->ai_ttl;
        }
        if (found.empty()) {
            out = ResolveError{"no IPv4 or IPv6 address"};
        } else {
            set.addresses = interleave_families(found);
            set.ttl = std::chrono::seconds(ttl == std::numeric_limits<int>::max() ? 0 : ttl);
            out = std::move(set);
        }
    }
    if (result) ares_freeaddrinfo(result);
    if (r.destroying_ || node.empty()) return;
    node.mapped()->done(std::move(out));
}

std::optional<Clock::time_point> NameResolver::tick(Clock::time_point now) {
    closed_.clear();
    if (pending_.empty()) return std::nullopt;
    timeval tv{};
    if (!ares_timeout(channel_, nullptr, &tv)) return std::nullopt;
    if (tv.tv_sec == 0 && tv.tv_usec == 0) {
        ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // expire what is due
        closed_.clear();
        if (pending_.empty() || !ares_timeout(channel_, nullptr, &tv)) return std::nullopt;
    }
    return now + std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
}

std::vector<ResolveResult> resolve_now(const std::vector<ResolveRequest>& requests,
                                       const ResolverOptions& options) {
    EventLoop loop;
    NameResolver resolver(loop, options);
    std::vector<ResolveResult> out(requests.size(), ResolveError{"not resolved"});
    size_t answered = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
        const ResolveRequest& q = requests[i];
        resolver.resolve(q.host, q.port, q.family, [&out, &answered, i](ResolveResult r) {
            out[i] = std::move(r);
            ++answered;
        });
    }
    loop.run([&] { return answered == requests.size(); },
             [&](Clock::time_point now) { return resolver.tick(now); });
    return out;
}

}  // namespace pfp::supervisor
