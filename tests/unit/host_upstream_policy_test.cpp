// Host-name upstreams before anything runs: the name's form, the policy keys (resolver,
// resolve_min, resolve_max, ipv6_only), the handover that carries the resolved set (and its
// checks in the worker), the allow list's filter, UpstreamNames against a real DNS server on
// loopback, and the status that shows the set.
#include <gtest/gtest.h>

#include "common/host_endpoint.hpp"
#include "policy/parse.hpp"
#include "supervisor/handover_builder.hpp"
#include "supervisor/status.hpp"
#include "supervisor/upstream_names.hpp"
#include "tests/support/dns_test_server.hpp"
#include "workers/route.hpp"

namespace pfp {
namespace {

using test::DnsTestServer;

std::string errors(const std::string& text) {
    try {
        (void)policy::parse_policy(text, "p.json");
    } catch (const policy::policy_error& e) {
        return e.what();
    }
    return "<valid>";
}

std::string entry(const std::string& upstream, const std::string& extra = "",
                  const std::string& top = "", const std::string& listen = "tcp:127.0.0.1:8080") {
    return "{" + top + "\"proxies\": [{\"name\": \"api\", \"listen\": \"" + listen +
           "\", \"upstream\": \"" + upstream + "\"" + extra + "}]}";
}

SockAddr addr(const std::string& text) {
    return parse_endpoint("tcp:" + text).addr;
}

TEST(HostEndpoint, NamesAndNotNames) {
    for (const char* ok : {"api.example.com", "a", "x-1.y", "localhost.", "1a.example", "9.9.9.a1"})
        EXPECT_TRUE(valid_host_name(ok)) << ok;
    for (const char* bad :
         {"", ".", "-a.b", "a-.b", "a..b", "a_b.c", "1.2.3.4", "10.0.0.999", "a b", "ä.example"})
        EXPECT_FALSE(valid_host_name(bad)) << bad;
    EXPECT_FALSE(valid_host_name(std::string(64, 'a')));
    EXPECT_TRUE(valid_host_name(std::string(63, 'a')));
    const auto e = parse_host_endpoint("tcp:api.example.com:443");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host, "api.example.com");
    EXPECT_EQ(e->port, 443u);
    EXPECT_EQ(e->addr.len, 0u);
    EXPECT_EQ(to_string(*e), "tcp:api.example.com:443");
    EXPECT_EQ(to_string(*parse_host_endpoint("udp:dns.internal:53")), "udp:dns.internal:53");
    for (const char* bad : {"tcp:api.example.com", "tcp:api.example.com:0", "tcp:x:65536",
                            "vsock:x:1", "tcp:1.2.3.4:80", "tcp:[::1]:80", "api.example.com:443"})
        EXPECT_FALSE(parse_host_endpoint(bad)) << bad;
}

TEST(HostUpstreamPolicy, NamesResolverAndClamps) {
    const policy::Policy p = policy::parse_policy(
        entry("tcp:api.example.com:443", "",
              R"("resolver": "127.0.0.1:5353", "resolve_min": "2s", "resolve_max": "10m", )"),
        "p.json");
    EXPECT_EQ(p.resolver, "127.0.0.1:5353");
    EXPECT_EQ(p.resolve_min, std::chrono::seconds(2));
    EXPECT_EQ(p.resolve_max, std::chrono::minutes(10));
    EXPECT_EQ(kind_name(p.proxies[0].kind), "tcp-forward");
    EXPECT_EQ(p.proxies[0].upstream.host, "api.example.com");
    // Defaults, and the resolver's other forms.
    const policy::Policy d =
        policy::parse_policy(entry("udp:dns.internal:53", "", "", "udp:[::]:53"), "p.json");
    EXPECT_EQ(kind_name(d.proxies[0].kind), "udp-forward");
    EXPECT_EQ(d.resolver, "");
    EXPECT_EQ(d.resolve_min, std::chrono::seconds(5));
    EXPECT_EQ(d.resolve_max, std::chrono::hours(1));
    EXPECT_EQ(
        policy::parse_policy(entry("tcp:a.b:1", "", R"("resolver": "::1", )"), "p.json").resolver,
        "[::1]:53");
    EXPECT_EQ(policy::parse_policy(entry("tcp:a.b:1", "", R"("resolver": "10.0.0.2", )"), "p.json")
                  .resolver,
              "10.0.0.2:53");
}

TEST(HostUpstreamPolicy, Refusals) {
    EXPECT_NE(errors(entry("tcp:a.b:1", "", R"("resolver": "dns.example:53", )"))
                  .find("/resolver: invalid resolver \"dns.example:53\""),
              std::string::npos);
    EXPECT_NE(errors(entry("tcp:a.b:1", "", R"("resolve_min": "2m", "resolve_max": "1m", )"))
                  .find("/resolve_max: expected a duration >= resolve_min (2m)"),
              std::string::npos)
        << errors(entry("tcp:a.b:1", "", R"("resolve_min": "2m", "resolve_max": "1m", )"));
    EXPECT_NE(
        errors(entry("tcp:a.b:22", ", \"base_address\": true, \"allow\": \"any\""))
            .find("base_address needs an IP address in the upstream (the base the original port "
                  "is added to), not the host name \"a.b\""),
        std::string::npos);
    // Listeners stay numeric.
    EXPECT_NE(errors(entry("tcp:a.b:1", "", "", "tcp:myhost:80")), "<valid>");
    EXPECT_NE(errors(entry("vsock:my.host:80")), "<valid>");
}

TEST(HostUpstreamPolicy, Ipv6Only) {
    const auto p = policy::parse_policy(
        entry("tcp:127.0.0.1:1", ", \"ipv6_only\": true", "", "tcp:[::]:8080"), "p.json");
    EXPECT_TRUE(p.proxies[0].ipv6_only);
    EXPECT_NE(errors(entry("tcp:127.0.0.1:1", ", \"ipv6_only\": true"))
                  .find("ipv6_only applies only to a tcp: or udp: listener on an IPv6 address "
                        "(such as \"tcp:[::]:80\"), not \"tcp:127.0.0.1:8080\""),
              std::string::npos);
    EXPECT_EQ(errors(entry("tcp:127.0.0.1:1", ", \"ipv6_only\": false")), "<valid>");
    auto other = p.proxies[0];
    other.ipv6_only = false;
    EXPECT_FALSE(policy::same_configuration(p.proxies[0], other));
}

TEST(HostUpstreamHandover, CarriesTheSetAndTheWorkerChecksIt) {
    const auto p = policy::parse_policy(entry("tcp:api.example.com:443"), "p.json");
    const policy::Proxy& proxy = p.proxies[0];
    Handover h = supervisor::build_handover(proxy, proxy.listen, 0, 1, std::chrono::seconds(1));
    supervisor::set_resolved_upstream(h, proxy.upstream,
                                      {addr("[fd00::1]:443"), addr("10.0.0.1:443")});
    const auto& o = std::get<StreamOptions>(h.options);
    EXPECT_EQ(o.upstream, "tcp:[fd00::1]:443");
    EXPECT_EQ(o.upstream_host, "api.example.com");
    EXPECT_EQ(o.upstream_addresses,
              (std::vector<std::string>{"tcp:[fd00::1]:443", "tcp:10.0.0.1:443"}));
    EXPECT_EQ(Handover::from_json(h.to_json()), h);
    const worker::Route r = worker::Route::build(h.kind, h.fds[0].endpoint, o);
    ASSERT_EQ(r.upstream_addresses.size(), 2u);
    EXPECT_EQ(format_sockaddr(r.upstream_addresses[1]), "10.0.0.1:443");
    // A set that does not match its upstream is a broken handover.
    const Endpoint first = parse_endpoint("tcp:10.0.0.1:443");
    EXPECT_THROW(worker::upstream_address_set("h", {"tcp:10.0.0.1:80"}, first), std::runtime_error);
    EXPECT_THROW(worker::upstream_address_set("h", {"tcp:10.0.0.2:443"}, first),
                 std::runtime_error);
    EXPECT_THROW(worker::upstream_address_set("h", {}, first), std::runtime_error);
    EXPECT_THROW(worker::upstream_address_set("", {"tcp:10.0.0.1:443"}, first), std::runtime_error);
    EXPECT_TRUE(worker::upstream_address_set("", {}, first).empty());
}

TEST(HostUpstreamAllow, DeniedAddressesAreDropped) {
    const std::vector<SockAddr> resolved{addr("10.0.0.1:443"), addr("127.0.0.1:443"),
                                         addr("192.168.0.1:443")};
    EXPECT_EQ(supervisor::addresses_text(supervisor::admitted_addresses(resolved, {})),
              "10.0.0.1:443, 127.0.0.1:443, 192.168.0.1:443");
    EXPECT_EQ(supervisor::addresses_text(
                  supervisor::admitted_addresses(resolved, {"10.0.0.0/8:443", "0.0.0.0/0:443"})),
              "10.0.0.1:443, 192.168.0.1:443");  // loopback stays protected under 0.0.0.0/0
}

// UpstreamNames on a real loop against the test DNS server: start, refresh, failure kept.
TEST(UpstreamNames, ResolvesRefreshesAndKeepsTheLastGoodSet) {
    DnsTestServer dns;
    DnsTestServer::Name n;
    n.v4 = {"10.0.0.1"};
    n.ttl = 0;  // refreshed at resolve_min
    dns.set("svc.test", n);
    const auto p = policy::parse_policy(
        entry("tcp:svc.test:443", "",
              "\"resolver\": \"" + dns.address() + "\", \"resolve_min\": \"100ms\", "),
        "p.json");
    EventLoop loop;
    std::vector<std::string> changes;
    supervisor::UpstreamNames names(
        loop, [&](const std::string& proxy, const std::vector<SockAddr>& set) {
            changes.push_back(proxy + " " + supervisor::addresses_text(set));
        });
    names.commit(names.prepare(p));
    ASSERT_NE(names.addresses("api"), nullptr);
    EXPECT_EQ(supervisor::addresses_text(*names.addresses("api")), "10.0.0.1:443");
    EXPECT_EQ(names.addresses("other"), nullptr);
    const auto run_until = [&](auto done) {
        const auto end = Clock::now() + std::chrono::seconds(10);
        loop.run([&] { return done() || Clock::now() > end; },
                 [&](Clock::time_point now) {
                     auto t = names.tick(now);
                     const auto cap = now + std::chrono::milliseconds(20);
                     return t && *t < cap ? t : std::optional(cap);
                 });
        return done();
    };
    n.v4 = {"10.0.0.2", "10.0.0.3"};
    dns.set("svc.test", n);
    ASSERT_TRUE(run_until([&] { return !changes.empty(); }));
    EXPECT_EQ(changes.front(), "api 10.0.0.2:443, 10.0.0.3:443");
    n.mode = DnsTestServer::Mode::servfail;
    dns.set("svc.test", n);
    ASSERT_TRUE(run_until([&] { return !names.status("api")->error.empty(); }));
    const supervisor::NameStatus s = *names.status("api");
    EXPECT_EQ(s.host, "svc.test");
    EXPECT_EQ(s.addresses, (std::vector<std::string>{"10.0.0.2:443", "10.0.0.3:443"}));
    EXPECT_GT(s.resolved_at, 0);
    EXPECT_EQ(changes.size(), 1u);
    // A name that does not resolve at all: one line naming the proxy, the name, the answer.
    const auto bad = policy::parse_policy(
        entry("tcp:nope.test:443", "", "\"resolver\": \"" + dns.address() + "\", "), "p.json");
    try {
        (void)names.prepare(bad);
        ADD_FAILURE() << "resolved nope.test";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("proxy \"api\": upstream tcp:nope.test:443: cannot "
                                              "resolve \"nope.test\": ",
                                              0),
                  0u)
            << e.what();
    }
}

TEST(HostUpstreamStatus, JsonRoundTripAndTable) {
    supervisor::DaemonStatus d;
    d.version = "1";
    d.state = "running";
    supervisor::ProxyStatus p;
    p.name = "api";
    p.kind = "tcp-forward";
    p.upstream = "tcp:api.example.com:443";
    p.resolved = supervisor::NameStatus{"api.example.com", {"10.0.0.1:443"}, 1.7e9, 12.5, ""};
    d.proxies.push_back(p);
    EXPECT_EQ(supervisor::status_from_json(supervisor::to_json(d)), d);
    EXPECT_NE(supervisor::render_table(d).find("api: api.example.com -> 10.0.0.1:443; refresh in"),
              std::string::npos)
        << supervisor::render_table(d);
}

}  // namespace
}  // namespace pfp
