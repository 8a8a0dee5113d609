// udp-forward entries in a policy: the kind they make, the datagram family's keys and defaults,
// and the stream relays' keys refused there (and the other way round).
#include <gtest/gtest.h>

#include "policy/parse.hpp"
#include "supervisor/handover_builder.hpp"
#include "tests/unit/policy_errors.hpp"

namespace pfp::policy {
namespace {

std::string udp_entry(const std::string& extra = "", const std::string& listen = "udp:0.0.0.0:53",
                      const std::string& upstream = "udp:10.0.0.2:53") {
    return "{\n  \"proxies\": [\n    {\"name\": \"dns\", \"listen\": \"" + listen +
           "\", \"upstream\": \"" + upstream + "\"" + extra + "}\n  ]\n}";
}

TEST(UdpPolicy, DefaultsOfADatagramForwarder) {
    const Policy p = parse_policy(udp_entry(), "p.json");
    ASSERT_EQ(p.proxies.size(), 1u);
    const Proxy& d = p.proxies[0];
    EXPECT_EQ(kind_name(d.kind), "udp-forward");
    EXPECT_EQ(d.idle_timeout, std::chrono::seconds(60));
    EXPECT_EQ(d.max_flows, 8192);
    EXPECT_TRUE(d.batch);
    const auto h = supervisor::build_handover(d, d.listen, 0, 1, std::chrono::seconds(1));
    EXPECT_EQ(h.fds.at(0).role, FdRole::datagram_socket);
    const auto& o = std::get<DatagramOptions>(h.options);
    EXPECT_EQ(o.upstream, "udp:10.0.0.2:53");
    EXPECT_EQ(o.max_flows, 8192);
    EXPECT_EQ(Handover::from_json(h.to_json()), h);
}

TEST(UdpPolicy, EveryDatagramKey) {
    const Policy p = parse_policy(
        udp_entry(", \"max_flows\": 100, \"batch\": false, \"idle_timeout\": 0, \"workers\": 3, "
                  "\"allowed_sources\": [\"10.0.0.0/8\"], \"log_connections\": true",
                  "udp:[::]:5353", "udp:[::1]:53"),
        "p.json");
    const Proxy& d = p.proxies[0];
    EXPECT_EQ(d.max_flows, 100);
    EXPECT_FALSE(d.batch);
    EXPECT_EQ(d.idle_timeout.count(), 0);
    const auto o = supervisor::datagram_options(d);
    EXPECT_EQ(o.max_flows, 34);  // each of the 3 workers' share, rounded up
    EXPECT_FALSE(o.batch);
    EXPECT_EQ(o.allowed_sources, std::vector<std::string>{"10.0.0.0/8"});
    EXPECT_TRUE(o.log_connections);
}

TEST(UdpPolicy, StreamKeysAreRefused) {
    EXPECT_EQ(errors(udp_entry(", \"tcp_nodelay\": true")),
              "p.json:3:95: /proxies/0/tcp_nodelay: tcp_nodelay applies only to stream relays, "
              "not udp-forward (a datagram forwarder has no connections)");
    EXPECT_EQ(errors(udp_entry(", \"max_connections\": 5")),
              "p.json:3:99: /proxies/0/max_connections: max_connections applies only to stream "
              "relays, not udp-forward (a datagram forwarder has no connections)");
    EXPECT_EQ(errors(udp_entry(", \"allow\": [\"10.0.0.0/8:53\"]")),
              "p.json:3:89: /proxies/0/allow: allow applies only to relays that connect to TCP "
              "destinations (tcp-forward, vsock-to-ip, vsock-to-ip-transparent), not udp-forward");
}

TEST(UdpPolicy, DatagramKeysAreRefusedOnStreams) {
    EXPECT_EQ(errors(udp_entry(", \"max_flows\": 5", "tcp:0.0.0.0:80", "tcp:10.0.0.2:80")),
              "p.json:3:93: /proxies/0/max_flows: max_flows applies only to datagram forwarders "
              "(udp-forward), not tcp-forward");
    EXPECT_EQ(errors(udp_entry(", \"batch\": true", "tcp:0.0.0.0:80", "tcp:10.0.0.2:80")),
              "p.json:3:89: /proxies/0/batch: batch applies only to datagram forwarders "
              "(udp-forward), not tcp-forward");
}

TEST(UdpPolicy, BadDatagramValues) {
    EXPECT_EQ(errors(udp_entry(", \"max_flows\": 0")),
              "p.json:3:93: /proxies/0/max_flows: expected an integer 1-1000000, got 0");
    EXPECT_EQ(errors(udp_entry(", \"batch\": 1")),
              "p.json:3:89: /proxies/0/batch: expected a boolean (true or false), got 1");
    EXPECT_EQ(errors(udp_entry(", \"max_flows\": 2, \"workers\": 3")),
              "p.json:3:93: /proxies/0/max_flows: expected max_flows >= workers (3): each worker "
              "needs a flow");
    EXPECT_EQ(errors(udp_entry(", \"listen_family\": \"udp\", \"workers\": 2", "systemd:dns")),
              "p.json:3:112: /proxies/0/workers: expected 1 with a socket systemd passes: "
              "udp-forward gives each worker its own SO_REUSEPORT socket so that a client stays "
              "on one worker, and one passed socket cannot be split (listen on udp:ADDR:PORT to "
              "run more workers)");
    EXPECT_EQ(errors(udp_entry(", \"listen_family\": \"udp\", \"workers\": 1", "systemd:dns")),
              "<valid>");
    EXPECT_EQ(errors(udp_entry("", "udp:0.0.0.0:53", "tcp:10.0.0.2:53")),
              "p.json:3:61: /proxies/0/upstream: a udp listener with a tcp upstream carries each "
              "stream over datagrams: write \"tunnel\": \"kcp\" (kind kcp-server)");
}

}  // namespace
}  // namespace pfp::policy
