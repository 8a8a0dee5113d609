// The transparent kinds over real vsock, in the QEMU guest (tests/vm). The guest has
// iptables-legacy and the NAT modules, so a REDIRECT rule gives connections a real original
// destination. Rules match the test client's source address (127.0.0.9) only: the proxies'
// own connections to 127.0.0.1 come from 127.0.0.1 and are never redirected (no loop).
//
// Measured in this guest (6.1 kernel): SO_ORIGINAL_DST needs conntrack to track the connection,
// and conntrack tracks only while some NAT rule exists in the network namespace. Without any rule
// the call fails (ENOENT) and the relay refuses the client; with a rule elsewhere, a connection no
// rule touched reports its own local address (the address the client connected to).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "guest_support.hpp"

using namespace pfp::test;
using namespace pfp::test::vm;
using pfp::unique_fd;

namespace {

const std::string kClient = "127.0.0.9";  // the test client's source: what the rules match

// The transparent header naming 127.0.0.1:port: the address as a little-endian u32 (octets
// reversed), the port as a little-endian u16; the standard format starts with version 0x04.
std::string header_for_loopback(bool oyster, uint16_t port) {
    std::string h = oyster ? "" : std::string(1, '\x04');
    h += std::string("\x01\x00\x00\x7f", 4);
    h += static_cast<char>(port & 0xff);
    h += static_cast<char>(port >> 8);
    return h;
}

std::string sender(uint16_t in, uint32_t vport, bool oyster) {
    return proxy("egress", tcp(in), "vsock:1:" + std::to_string(vport),
                 "\"send_original_destination\": true, \"log_connections\": true, \"header\": " +
                     std::string(oyster ? "\"oyster-v4\"" : "\"standard\""));
}

// What arrives on the vsock side: the header, then the payload the client sent; and the way back.
void expect_header_then_payload(int client, int vsock_listener, const std::string& header) {
    ASSERT_TRUE(write_all(client, "payload", 7));
    unique_fd v = accept_within(vsock_listener);
    ASSERT_TRUE(v) << "no vsock connection arrived";
    EXPECT_EQ(peer_cid(v.get()), kLocalCid);
    std::string got(header.size() + 7, '\0');
    ASSERT_TRUE(read_exact(v.get(), got.data(), got.size()));
    EXPECT_EQ(hex(got), hex(header + "payload"));
    ASSERT_TRUE(write_all(v.get(), "answer", 6));
    char back[6];
    ASSERT_TRUE(read_exact(client, back, 6));
    EXPECT_EQ(std::string(back, 6), "answer");
}

TEST(TransparentGuest, IpToVsockTransparentSendsTheRedirectedDestinationInBothFormats) {
    REQUIRE_VSOCK_LOOPBACK();
    REQUIRE_IPTABLES();
    for (bool oyster : {false, true}) {
        SCOPED_TRACE(oyster ? "oyster-v4" : "standard");
        const uint16_t in = free_port(), orig = free_port();  // nothing listens on orig
        const uint32_t vport = oyster ? 5102 : 5101;
        unique_fd vl = listen_vsock(vport);
        Redirect r(kClient, orig, in);
        ASSERT_TRUE(r.ok()) << r.output();
        Daemon d(policy({sender(in, vport, oyster)}));
        ASSERT_TRUE(d.wait_ready()) << d.log();
        unique_fd c = connect_tcp_from(kClient, orig);
        ASSERT_TRUE(c) << std::strerror(errno);
        expect_header_then_payload(c.get(), vl.get(), header_for_loopback(oyster, orig));
        EXPECT_TRUE(d.wait_log("Original destination: 127.0.0.1:" + std::to_string(orig), 5s))
            << d.log();
    }
}

TEST(TransparentGuest, WithoutNatTheOriginalDestinationIsTheListenerOnlyWhileConntrackTracks) {
    REQUIRE_VSOCK_LOOPBACK();
    REQUIRE_IPTABLES();
    const uint16_t in = free_port();
    unique_fd vl = listen_vsock(5103);
    Daemon d(policy({sender(in, 5103, false)}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    {
        // No NAT rule anywhere: nothing is tracked, there is no original destination.
        unique_fd c = connect_tcp(in, 10s);
        ASSERT_TRUE(c);
        std::string got;
        EXPECT_TRUE(read_to_eof(c.get(), got));
        EXPECT_EQ(got, "");
        EXPECT_TRUE(d.wait_log("Failed to retrieve original destination from TCP stream", 5s))
            << d.log();
        EXPECT_FALSE(accept_within(vl.get(), 200ms));
    }
    // A rule for some other traffic switches tracking on; this connection, untouched by it,
    // names the listener itself.
    Redirect unrelated(kClient, 1, 2);
    ASSERT_TRUE(unrelated.ok()) << unrelated.output();
    unique_fd c = connect_tcp(in, 10s);
    ASSERT_TRUE(c);
    expect_header_then_payload(c.get(), vl.get(), header_for_loopback(false, in));
}

// ip-to-vsock-transparent -> vsock -> vsock-to-ip-transparent -> the redirected destination.
TEST(TransparentGuest, PairCarriesRedirectedTrafficToTheOriginalDestination) {
    REQUIRE_VSOCK_LOOPBACK();
    REQUIRE_IPTABLES();
    const uint16_t server = free_port();
    EchoServer echo(server);
    for (bool oyster : {false, true}) {
        SCOPED_TRACE(oyster ? "oyster-v4" : "standard");
        const uint16_t in = free_port();
        const std::string header = oyster ? "\"oyster-v4\"" : "\"standard\"";
        Redirect r(kClient, server, in);
        ASSERT_TRUE(r.ok()) << r.output();
        Daemon d(policy({sender(in, 1200, oyster),
                         proxy("egress-host", "vsock:any:1200", "destination-header",
                               "\"allow\": [\"127.0.0.1:" + std::to_string(server) +
                                   "\"], \"log_connections\": true, \"header\": " + header)}));
        ASSERT_TRUE(d.wait_ready()) << d.log();
        unique_fd c = connect_tcp_from(kClient, server, 60s);
        ASSERT_TRUE(c) << std::strerror(errno);
        Transfer t = send_and_receive(c.get(), 8u << 20, 11);
        EXPECT_TRUE(t.ok);
        EXPECT_EQ(t.received, 8u << 20);
        EXPECT_EQ(t.received_hash, t.sent_hash);
        // vsock-to-ip-transparent names the destination unquoted, as the seed does.
        EXPECT_TRUE(d.wait_log("Proxying to: 127.0.0.1:" + std::to_string(server), 5s)) << d.log();
    }
}

// The far side alone, with the header written by the test over vsock: it connects to exactly the
// destination named, and refuses one outside `allow` although something listens there too.
TEST(TransparentGuest, VsockToIpTransparentConnectsWhereTheHeaderSaysIfAllowed) {
    REQUIRE_VSOCK_LOOPBACK();
    const uint16_t allowed = free_port(), denied = free_port();
    unique_fd allowed_l = listen_tcp(allowed), denied_l = listen_tcp(denied);
    for (bool oyster : {false, true}) {
        SCOPED_TRACE(oyster ? "oyster-v4" : "standard");
        Daemon d(policy({proxy(
            "egress-host", "vsock:any:1201", "destination-header",
            "\"allow\": [\"127.0.0.1:" + std::to_string(allowed) +
                "\"], \"header\": " + std::string(oyster ? "\"oyster-v4\"" : "\"standard\""))}));
        ASSERT_TRUE(d.wait_ready()) << d.log();

        unique_fd s = connect_vsock(1201);
        ASSERT_TRUE(s) << std::strerror(errno);
        ASSERT_TRUE(write_text(s.get(), header_for_loopback(oyster, allowed) + "hey"));
        unique_fd up = accept_within(allowed_l.get());
        ASSERT_TRUE(up) << d.log();
        char b[3];
        ASSERT_TRUE(read_exact(up.get(), b, 3));
        EXPECT_EQ(std::string(b, 3), "hey");
        ASSERT_TRUE(write_all(up.get(), "ho", 2));
        ASSERT_TRUE(read_exact(s.get(), b, 2));
        EXPECT_EQ(std::string(b, 2), "ho");

        unique_fd refused = connect_vsock(1201);
        ASSERT_TRUE(refused);
        ASSERT_TRUE(write_text(refused.get(), header_for_loopback(oyster, denied) + "hey"));
        std::string got;
        EXPECT_TRUE(read_to_eof(refused.get(), got));
        EXPECT_EQ(got, "");
        EXPECT_FALSE(accept_within(denied_l.get(), 200ms));
        EXPECT_TRUE(d.wait_log("destination 127.0.0.1:" + std::to_string(denied) + " denied", 5s))
            << d.log();
    }
}

// transparent-port-to-vsock: the vsock port is the port the client originally asked for; without
// NAT (tracking on) that is the listener's own port.
TEST(TransparentGuest, TransparentPortToVsockConnectsToTheOriginalPort) {
    REQUIRE_VSOCK_LOOPBACK();
    REQUIRE_IPTABLES();
    const uint16_t in = free_port(), orig = free_port();
    unique_fd at_orig = listen_vsock(orig), at_in = listen_vsock(in);
    Redirect r(kClient, orig, in);
    ASSERT_TRUE(r.ok()) << r.output();
    Daemon d(
        policy({proxy("ports", tcp(in), "vsock:1:original-port", "\"log_connections\": true")}));
    ASSERT_TRUE(d.wait_ready()) << d.log();

    unique_fd redirected = connect_tcp_from(kClient, orig);
    ASSERT_TRUE(redirected) << std::strerror(errno);
    expect_header_then_payload(redirected.get(), at_orig.get(), "");
    EXPECT_TRUE(
        d.wait_log("Proxying to: VsockAddr { cid: 1, port: " + std::to_string(orig) + " }", 5s))
        << d.log();

    unique_fd direct = connect_tcp(in, 10s);
    ASSERT_TRUE(direct);
    expect_header_then_payload(direct.get(), at_in.get(), "");
}

}  // namespace
