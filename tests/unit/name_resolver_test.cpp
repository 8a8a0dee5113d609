// The supervisor's resolver (c-ares on its event loop) against a real DNS server on loopback
// (tests/support/dns_test_server.hpp): answers with their TTL, families interleaved, the
// resolver's own words for a failure, answers that change, and a silent server that holds up
// nothing else.
#include "supervisor/name_resolver.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <set>
#include <string>
#include <vector>

#include "common/address_order.hpp"
#include "tests/support/dns_test_server.hpp"

namespace pfp::supervisor {
namespace {

using test::DnsTestServer;

ResolverOptions options_for(const DnsTestServer& dns) {
    ResolverOptions o;
    o.server = dns.address();
    o.timeout = std::chrono::milliseconds(300);
    o.tries = 1;
    return o;
}

std::vector<std::string> texts(const AddressSet& s) {
    std::vector<std::string> out;
    for (const SockAddr& a : s.addresses) out.push_back(format_sockaddr(a));
    return out;
}

std::string error_of(const ResolveResult& r) {
    if (const auto* e = std::get_if<ResolveError>(&r)) return e->message;
    return "<resolved>";
}

TEST(AddressOrder, FamiliesAlternateStartingWithTheFirst) {
    const auto addr = [](const std::string& t) { return parse_endpoint("tcp:" + t).addr; };
    const std::vector<SockAddr> in{addr("[fd00::1]:1"), addr("[fd00::2]:1"), addr("[fd00::3]:1"),
                                   addr("10.0.0.1:1"), addr("10.0.0.2:1")};
    std::vector<std::string> out;
    for (const SockAddr& a : interleave_families(in)) out.push_back(format_sockaddr(a));
    EXPECT_EQ(out, (std::vector<std::string>{"[fd00::1]:1", "10.0.0.1:1", "[fd00::2]:1",
                                             "10.0.0.2:1", "[fd00::3]:1"}));
    const std::vector<SockAddr> v4_first{addr("10.0.0.1:1"), addr("[fd00::1]:1"),
                                         addr("[fd00::2]:1")};
    out.clear();
    for (const SockAddr& a : interleave_families(v4_first)) out.push_back(format_sockaddr(a));
    EXPECT_EQ(out, (std::vector<std::string>{"10.0.0.1:1", "[fd00::1]:1", "[fd00::2]:1"}));
    EXPECT_TRUE(interleave_families({}).empty());
}

TEST(NameResolver, AnswersCarryThePortTheTtlAndInterleavedFamilies) {
    DnsTestServer dns;
    dns.set("api.example.test", {{"10.0.0.1", "10.0.0.2"}, {"fd00::1", "fd00::2"}, 7});
    const auto results = resolve_now({{"api.example.test", 443, AF_UNSPEC}}, options_for(dns));
    ASSERT_EQ(results.size(), 1u);
    const auto* set = std::get_if<AddressSet>(&results[0]);
    ASSERT_TRUE(set) << error_of(results[0]);
    EXPECT_EQ(set->ttl, std::chrono::seconds(7));
    const std::vector<std::string> got = texts(*set);
    EXPECT_EQ(
        std::set<std::string>(got.begin(), got.end()),
        (std::set<std::string>{"10.0.0.1:443", "10.0.0.2:443", "[fd00::1]:443", "[fd00::2]:443"}));
    ASSERT_EQ(set->addresses.size(), 4u);
    for (size_t i = 1; i < set->addresses.size(); ++i)
        EXPECT_NE(set->addresses[i].family(), set->addresses[i - 1].family()) << got[i];
    EXPECT_GE(dns.queries("api.example.test"), 2) << "an A and an AAAA query";
}

TEST(NameResolver, OneFamilyOnlyWhenAsked) {
    DnsTestServer dns;
    dns.set("dual.test", {{"10.0.0.1"}, {"fd00::1"}, 30});
    const auto r =
        resolve_now({{"dual.test", 53, AF_INET}, {"dual.test", 53, AF_INET6}}, options_for(dns));
    ASSERT_TRUE(std::holds_alternative<AddressSet>(r[0])) << error_of(r[0]);
    ASSERT_TRUE(std::holds_alternative<AddressSet>(r[1])) << error_of(r[1]);
    EXPECT_EQ(texts(std::get<AddressSet>(r[0])), std::vector<std::string>{"10.0.0.1:53"});
    EXPECT_EQ(texts(std::get<AddressSet>(r[1])), std::vector<std::string>{"[fd00::1]:53"});
}

// The resolver's own answer, for the start-up error that names the name.
TEST(NameResolver, FailuresAreTheResolversWords) {
    DnsTestServer dns;
    dns.set("broken.test", {{"10.0.0.1"}, {}, 5, DnsTestServer::Mode::servfail});
    dns.set("silent.test", {{"10.0.0.1"}, {}, 5, DnsTestServer::Mode::silent});
    dns.set("empty.test", {{}, {}, 5});
    const auto r = resolve_now({{"nope.test", 1, AF_UNSPEC},
                                {"broken.test", 1, AF_UNSPEC},
                                {"silent.test", 1, AF_UNSPEC},
                                {"empty.test", 1, AF_UNSPEC}},
                               options_for(dns));
    EXPECT_EQ(error_of(r[0]), "Domain name not found");
    EXPECT_EQ(error_of(r[1]), "Could not contact DNS servers");  // SERVFAIL from the only one
    EXPECT_EQ(error_of(r[2]), "Timeout while contacting DNS servers");
    EXPECT_EQ(error_of(r[3]), "DNS server returned answer with no data");
}

// A query the server never answers holds up nothing: an answer to a later query arrives first,
// from the same loop.
TEST(NameResolver, ASilentServerBlocksNothingElse) {
    DnsTestServer dns;
    dns.set("silent.test", {{"10.0.0.1"}, {}, 5, DnsTestServer::Mode::silent});
    dns.set("fast.test", {{"10.0.0.9"}, {}, 5});
    EventLoop loop;
    ResolverOptions o = options_for(dns);
    o.timeout = std::chrono::milliseconds(1500);
    NameResolver resolver(loop, o);
    std::vector<std::string> order;
    resolver.resolve("silent.test", 1, AF_INET,
                     [&](ResolveResult r) { order.push_back("silent: " + error_of(r)); });
    resolver.resolve("fast.test", 1, AF_INET, [&](ResolveResult r) {
        order.push_back("fast: " + (std::holds_alternative<AddressSet>(r)
                                        ? texts(std::get<AddressSet>(r)).at(0)
                                        : error_of(r)));
    });
    loop.run([&] { return order.size() == 2; },
             [&](Clock::time_point now) { return resolver.tick(now); });
    EXPECT_EQ(order, (std::vector<std::string>{"fast: 10.0.0.9:1",
                                               "silent: Timeout while contacting DNS servers"}));
    EXPECT_EQ(resolver.pending(), 0u);
}

// The set follows the server: a second resolution sees the new answer.
TEST(NameResolver, AChangedAnswerIsSeenByTheNextResolution) {
    DnsTestServer dns;
    dns.set("moving.test", {{"10.0.0.1"}, {}, 1});
    EventLoop loop;
    NameResolver resolver(loop, options_for(dns));
    std::vector<std::string> seen;
    const auto once = [&] {
        const size_t before = seen.size();
        resolver.resolve("moving.test", 80, AF_INET, [&](ResolveResult r) {
            seen.push_back(std::holds_alternative<AddressSet>(r)
                               ? texts(std::get<AddressSet>(r)).at(0)
                               : error_of(r));
        });
        loop.run([&] { return seen.size() > before; },
                 [&](Clock::time_point now) { return resolver.tick(now); });
    };
    once();
    dns.set("moving.test", {{"10.0.0.2"}, {}, 1});
    once();
    dns.remove("moving.test");
    once();
    EXPECT_EQ(seen,
              (std::vector<std::string>{"10.0.0.1:80", "10.0.0.2:80", "Domain name not found"}));
}

// Destroyed with a query in flight: its callback is never called (the owner is gone too).
TEST(NameResolver, DestructionDropsPendingCallbacks) {
    DnsTestServer dns;
    dns.set("silent.test", {{"10.0.0.1"}, {}, 5, DnsTestServer::Mode::silent});
    EventLoop loop;
    bool called = false;
    {
        NameResolver resolver(loop, options_for(dns));
        resolver.resolve("silent.test", 1, AF_INET, [&](ResolveResult) { called = true; });
        EXPECT_EQ(resolver.pending(), 1u);
    }
    EXPECT_FALSE(called);
}

TEST(NameResolver, ABadServerIsAnErrorNamingIt) {
    EventLoop loop;
    ResolverOptions o;
    o.server = "not-an-address";
    try {
        NameResolver r(loop, o);
        ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("resolver \"not-an-address\": ", 0), 0u) << e.what();
    }
}

}  // namespace
}  // namespace pfp::supervisor
