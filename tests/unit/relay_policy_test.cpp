// The relay engine keys of a stream entry (docs/policy.md, `relay` and `relay_threads`): their
// defaults, the errors for a wrong value or a key that cannot apply, and the handover that carries
// the worker's share of the bound.
#include <gtest/gtest.h>

#include <string>

#include "policy/parse.hpp"
#include "supervisor/handover_builder.hpp"
#include "tests/unit/policy_errors.hpp"

namespace pfp::policy {
namespace {

std::string stream(const std::string& extra = "") {
    return R"({"proxies": [{"name": "s", "listen": "tcp:127.0.0.1:8080", )"
           R"("upstream": "vsock:3:5000")" +
           extra + "}]}";
}

TEST(RelayPolicy, EventsByDefaultThreadsWhenAskedWithABound) {
    const Proxy d = parse_policy(stream(), "p.json").proxies.at(0);
    EXPECT_FALSE(d.thread_relay);
    EXPECT_EQ(d.relay_threads, 64);
    const Proxy e = parse_policy(stream(R"(, "relay": "events")"), "p.json").proxies.at(0);
    EXPECT_FALSE(e.thread_relay);
    const Proxy t =
        parse_policy(stream(R"(, "relay": "threads", "relay_threads": 8)"), "p.json").proxies.at(0);
    EXPECT_TRUE(t.thread_relay);
    EXPECT_EQ(t.relay_threads, 8);
    EXPECT_FALSE(same_configuration(d, t)) << "a reload that changes the engine changes the proxy";
}

TEST(RelayPolicy, TheHandoverCarriesEachWorkersShareOrZeroForEvents) {
    const Policy events = parse_policy(stream(R"(, "workers": 2)"), "p.json");
    EXPECT_EQ(supervisor::stream_options(events.proxies.at(0)).relay_threads, 0);
    const Policy threads =
        parse_policy(stream(R"(, "workers": 2, "relay": "threads", "relay_threads": 5)"), "p.json");
    EXPECT_EQ(supervisor::stream_options(threads.proxies.at(0)).relay_threads, 3);
}

TEST(RelayPolicy, WrongValuesAndKeysThatCannotApplyAreErrors) {
    EXPECT_EQ(errors(stream(R"(, "relay": "thread")")),
              R"(p.json:1:97: /proxies/0/relay: expected "events" or "threads", got "thread" )"
              R"((did you mean "threads"?))");
    EXPECT_EQ(errors(stream(R"(, "relay": "threads", "relay_threads": 0)")),
              "p.json:1:125: /proxies/0/relay_threads: expected an integer 1-4096, got 0");
    EXPECT_EQ(errors(stream(R"(, "relay_threads": 4)")),
              "p.json:1:105: /proxies/0/relay_threads: relay_threads applies only with "
              "\"relay\": \"threads\" (the event engine serves every connection on the worker's "
              "one thread)");
    EXPECT_EQ(errors(R"({"proxies": [{"name": "u", "listen": "udp:127.0.0.1:53", )"
                     R"("upstream": "udp:10.0.0.1:53", "relay": "threads"}]})"),
              "p.json:1:98: /proxies/0/relay: relay applies only to stream relays, not "
              "udp-forward (a datagram forwarder has no connections)");
    EXPECT_EQ(errors(R"({"proxies": [{"name": "k", "tunnel": "kcp", "listen": )"
                     R"("tcp:127.0.0.1:2022", "upstream": "udp:10.0.0.2:4000", )"
                     R"("relay": "threads"}]})"),
              "p.json:1:119: /proxies/0/relay: relay does not apply to a KCP tunnel "
              "(kcp-client)");
}

}  // namespace
}  // namespace pfp::policy
