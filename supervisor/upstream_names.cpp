#include "supervisor/upstream_names.hpp"

#include <algorithm>
#include <stdexcept>

#include "common/address_message.hpp"
#include "common/allow_list.hpp"
#include "common/log.hpp"

namespace pfp::supervisor {

namespace {

bool same_name(const Endpoint& a, const Endpoint& b) {
    return a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

bool same_set(const std::vector<SockAddr>& a, const std::vector<SockAddr>& b) {
    return addresses_text(a) == addresses_text(b);
}

double unix_seconds(std::chrono::system_clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

}  // namespace

std::vector<SockAddr> admitted_addresses(const std::vector<SockAddr>& resolved,
                                         const std::vector<std::string>& allow) {
    std::vector<SockAddr> out;
    const std::optional<AllowList> list =
        allow.empty() ? std::nullopt : std::optional(AllowList::parse(allow));
    for (const SockAddr& a : resolved) {
        if (out.size() == ipc::kMaxAddresses) break;
        if (list && !list->decide(a).allowed()) continue;
        out.push_back(a);
    }
    return out;
}

std::string addresses_text(const std::vector<SockAddr>& set) {
    std::string s;
    for (const SockAddr& a : set) s += (s.empty() ? "" : ", ") + format_sockaddr(a);
    return s;
}

UpstreamNames::UpstreamNames(EventLoop& loop, Changed changed)
    : loop_(loop), changed_(std::move(changed)) {}

UpstreamNames::~UpstreamNames() = default;

UpstreamNames::Prepared UpstreamNames::prepare(const policy::Policy& policy) const {
    Prepared out;
    out.options.server = policy.resolver;
    out.min = policy.resolve_min;
    out.max = policy.resolve_max;
    const bool same_resolver = resolver_ && out.options.server == options_.server;
    std::vector<ResolveRequest> requests;
    std::vector<std::string> names;  // the proxy of each request
    for (const policy::Proxy& p : policy.proxies) {
        if (p.upstream.host.empty() || !has_upstream_endpoint(p.upstream_mode)) continue;
        const auto old = entries_.find(p.name);
        if (same_resolver && old != entries_.end() && same_name(old->second.upstream, p.upstream) &&
            old->second.allow == p.allow) {
            out.entries.emplace(p.name, old->second);
            continue;
        }
        Entry e;
        e.upstream = p.upstream;
        e.allow = p.allow;
        out.entries.emplace(p.name, std::move(e));
        requests.push_back({p.upstream.host, static_cast<uint16_t>(p.upstream.port), AF_UNSPEC});
        names.push_back(p.name);
    }
    if (requests.empty()) return out;
    const std::vector<ResolveResult> results = resolve_now(requests, out.options);
    const Clock::time_point now = Clock::now();
    const std::string via =
        out.options.server.empty() ? "" : " (resolver " + out.options.server + ")";
    for (size_t i = 0; i < results.size(); ++i) {
        Entry& e = out.entries.at(names[i]);
        const std::string what = "proxy \"" + names[i] + "\": upstream " + to_string(e.upstream);
        if (const auto* err = std::get_if<ResolveError>(&results[i]))
            throw std::runtime_error(what + ": cannot resolve \"" + e.upstream.host +
                                     "\": " + err->message + via);
        const auto& set = std::get<AddressSet>(results[i]);
        e.addresses = admitted_addresses(set.addresses, e.allow);
        if (e.addresses.empty())
            throw std::runtime_error(what + ": \"" + e.upstream.host + "\" resolves to " +
                                     addresses_text(set.addresses) +
                                     ", none of which the allow list admits");
        e.resolved_at = std::chrono::system_clock::now();
        e.refresh_at = now + std::clamp<Clock::duration>(set.ttl, out.min, out.max);
        log::info(what, ": \"", e.upstream.host, "\" resolves to ", addresses_text(e.addresses),
                  " (TTL ", set.ttl.count(), " s)");
    }
    return out;
}

void UpstreamNames::commit(Prepared prepared) {
    if (prepared.options.server != options_.server || (!resolver_ && !prepared.entries.empty())) {
        // A new channel: answers the old one still owes are dropped, so nothing stays in flight.
        resolver_.reset();
        if (!prepared.entries.empty())
            resolver_ = std::make_unique<NameResolver>(loop_, prepared.options);
        for (auto& [name, e] : prepared.entries) e.in_flight = false;
    }
    options_ = prepared.options;
    min_ = prepared.min;
    max_ = prepared.max;
    entries_ = std::move(prepared.entries);
}

const std::vector<SockAddr>* UpstreamNames::addresses(const std::string& proxy) const {
    const auto it = entries_.find(proxy);
    return it == entries_.end() ? nullptr : &it->second.addresses;
}

std::optional<NameStatus> UpstreamNames::status(const std::string& proxy) const {
    const auto it = entries_.find(proxy);
    if (it == entries_.end()) return std::nullopt;
    const Entry& e = it->second;
    NameStatus s;
    s.host = e.upstream.host;
    for (const SockAddr& a : e.addresses) s.addresses.push_back(format_sockaddr(a));
    s.resolved_at = unix_seconds(e.resolved_at);
    if (!e.in_flight)
        s.refresh_in_seconds =
            std::max(0.0, std::chrono::duration<double>(e.refresh_at - Clock::now()).count());
    s.error = e.error;
    return s;
}

void UpstreamNames::schedule(Entry& e, std::chrono::seconds ttl, Clock::time_point now) const {
    e.refresh_at = now + std::clamp<Clock::duration>(ttl, min_, max_);
}

std::optional<Clock::time_point> UpstreamNames::tick(Clock::time_point now) {
    if (!resolver_) return std::nullopt;
    std::optional<Clock::time_point> next;
    for (auto& [proxy, e] : entries_) {
        if (e.in_flight) continue;
        if (e.refresh_at <= now) {
            e.in_flight = true;
            // The callback may run at once (c-ares answers some queries without waiting).
            resolver_->resolve(e.upstream.host, static_cast<uint16_t>(e.upstream.port), AF_UNSPEC,
                               [this, name = proxy, upstream = e.upstream](ResolveResult r) {
                                   answered(name, upstream, std::move(r));
                               });
            if (e.in_flight) continue;
        }
        if (!next || e.refresh_at < *next) next = e.refresh_at;
    }
    if (auto t = resolver_->tick(now); t && (!next || *t < *next)) next = t;
    return next;
}

void UpstreamNames::answered(const std::string& proxy, const Endpoint& upstream,
                             ResolveResult result) {
    const auto it = entries_.find(proxy);
    // A reload may have replaced the entry meanwhile: this answer is for a name it no longer has.
    if (it == entries_.end() || !same_name(it->second.upstream, upstream)) return;
    Entry& e = it->second;
    e.in_flight = false;
    const Clock::time_point now = Clock::now();
    const std::string what = "proxy \"" + proxy + "\": upstream \"" + upstream.host + "\"";
    std::string failure;
    std::vector<SockAddr> set;
    std::chrono::seconds ttl{0};
    if (const auto* err = std::get_if<ResolveError>(&result)) {
        failure = err->message;
    } else {
        const auto& answer = std::get<AddressSet>(result);
        set = admitted_addresses(answer.addresses, e.allow);
        ttl = answer.ttl;
        if (set.empty())
            failure = "resolves to " + addresses_text(answer.addresses) +
                      ", none of which the allow list admits";
    }
    if (!failure.empty()) {
        if (e.error.empty())
            log::warning(what, ": cannot resolve it again (", failure, "); keeping ",
                         addresses_text(e.addresses), ", retrying every ",
                         std::chrono::duration_cast<std::chrono::seconds>(min_).count(), " s");
        e.error = failure;
        e.refresh_at = now + min_;
        return;
    }
    if (!e.error.empty()) log::notice(what, " resolves again");
    e.error.clear();
    e.resolved_at = std::chrono::system_clock::now();
    schedule(e, ttl, now);
    if (same_set(set, e.addresses)) return;
    log::notice(what, " now resolves to ", addresses_text(set), " (was ",
                addresses_text(e.addresses), ")");
    e.addresses = std::move(set);
    changed_(proxy, e.addresses);
}

}  // namespace pfp::supervisor
