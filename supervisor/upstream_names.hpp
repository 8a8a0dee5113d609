#pragma once
// The host-name upstreams of a policy ("tcp:api.example.com:443"), resolved by the supervisor
// and kept fresh: every name is resolved before its proxy's first worker starts (a name that does
// not resolve is an error), then again when its TTL — clamped to the policy's resolve_min and
// resolve_max — runs out. A changed set goes to the proxy's workers (the owner's callback sends
// ADDRESSES); a failed refresh keeps the last good set, logged once until the name resolves
// again. An `allow` list applies to every resolved address: addresses it denies are dropped.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "policy/model.hpp"
#include "supervisor/name_resolver.hpp"
#include "supervisor/status.hpp"

namespace pfp::supervisor {

class UpstreamNames {
  public:
    using Changed = std::function<void(const std::string& proxy, const std::vector<SockAddr>&)>;

    struct Entry {
        Endpoint upstream;               // scheme, host, port
        std::vector<std::string> allow;  // the proxy's allow list (empty: every address)
        std::vector<SockAddr> addresses;
        std::chrono::system_clock::time_point resolved_at{};
        Clock::time_point refresh_at{};
        bool in_flight = false;
        std::string error;  // set while refreshes fail (logged when it is first set)
    };
    // The names of a policy, resolved: what commit() takes.
    struct Prepared {
        ResolverOptions options;
        std::chrono::milliseconds min{0}, max{0};
        std::map<std::string, Entry> entries;  // by proxy name
    };

    UpstreamNames(EventLoop& loop, Changed changed);
    ~UpstreamNames();
    UpstreamNames(const UpstreamNames&) = delete;
    UpstreamNames& operator=(const UpstreamNames&) = delete;

    // The entries `policy` needs: the current ones where a proxy's name, port, allow list and
    // resolver are unchanged, the others resolved now (blocking, each bounded by the resolver's
    // timeout). Throws std::runtime_error, one line naming the proxy, the name and the
    // resolver's answer, when a name does not resolve.
    Prepared prepare(const policy::Policy& policy) const;
    void commit(Prepared prepared);

    // The proxy's current address set; nullptr when its upstream is not a host name.
    const std::vector<SockAddr>* addresses(const std::string& proxy) const;
    std::optional<NameStatus> status(const std::string& proxy) const;

    // Starts the refreshes that are due; returns the next deadline (a refresh or c-ares').
    std::optional<Clock::time_point> tick(Clock::time_point now);

  private:
    void answered(const std::string& proxy, const Endpoint& upstream, ResolveResult result);
    void schedule(Entry& e, std::chrono::seconds ttl, Clock::time_point now) const;

    EventLoop& loop_;
    Changed changed_;
    ResolverOptions options_;
    std::chrono::milliseconds min_{5'000}, max_{3'600'000};
    std::unique_ptr<NameResolver> resolver_;  // made at the first commit with a name
    std::map<std::string, Entry> entries_;
};

// The addresses a name resolved to that `allow` admits (all of them when `allow` is empty), at
// most as many as one ADDRESSES message carries.
std::vector<SockAddr> admitted_addresses(const std::vector<SockAddr>& resolved,
                                         const std::vector<std::string>& allow);

// "10.0.0.1:443, [fd00::1]:443"
std::string addresses_text(const std::vector<SockAddr>& set);

}  // namespace pfp::supervisor
