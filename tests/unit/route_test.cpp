// The per-connection decisions of stream workers that need no socket: peer admission
// (allowed_cids, allowed_sources), the fc-vsock handshake reply, and the seed log lines.
#include "workers/route.hpp"

#include <gtest/gtest.h>
#include <linux/vm_sockets.h>

#include "workers/connection_log.hpp"
#include "workers/redirected_destination.hpp"

using namespace pfp;
using namespace pfp::worker;

namespace {

// A stream worker's handover options, with the kind and listener beside them.
struct Config : StreamOptions {
    WorkerKind kind = WorkerKind::tcp_forward;
    std::string listen;
};

Config config(const std::string& listen, const std::string& upstream) {
    Config c;
    c.listen = listen;
    c.upstream = upstream;
    return c;
}

Route route_of(const Config& c) {
    return Route::build(c.kind, c.listen, c);
}

SockAddr vsock_peer(uint32_t cid, uint32_t port) {
    SockAddr a;
    auto* vm = reinterpret_cast<sockaddr_vm*>(&a.storage);
    vm->svm_family = AF_VSOCK;
    vm->svm_cid = cid;
    vm->svm_port = port;
    a.len = sizeof(sockaddr_vm);
    return a;
}

TEST(RoutePeerCheck, AllowedCidsAdmitListedPeersOnly) {
    Config c = config("vsock:any:3000", "vsock:7:22");
    c.kind = WorkerKind::vsock_to_vsock;
    c.allowed_cids = {5, 9};
    Route r = route_of(c);
    EXPECT_FALSE(r.admit(vsock_peer(5, 1234)));
    EXPECT_FALSE(r.admit(vsock_peer(9, 1)));
    auto why = r.admit(vsock_peer(6, 4294967295u));
    ASSERT_TRUE(why);
    EXPECT_EQ(*why, "peer vsock:6:any is not in allowed_cids");
}

TEST(RoutePeerCheck, NoAllowedCidsAdmitsEveryPeer) {
    Config c = config("vsock:any:3000", "vsock:7:22");
    c.kind = WorkerKind::vsock_to_vsock;
    Route r = route_of(c);
    EXPECT_FALSE(r.admit(vsock_peer(1, 1)));
    EXPECT_FALSE(r.admit(vsock_peer(1234567, 1)));
}

TEST(RoutePeerCheck, AllowedSourcesCheckTcpClients) {
    Config c = config("tcp:127.0.0.1:1", "tcp:127.0.0.1:2");
    c.allowed_sources = {"10.0.0.0/8"};
    Route r = route_of(c);
    Endpoint inside = parse_endpoint("tcp:10.1.2.3:5000");
    Endpoint outside = parse_endpoint("tcp:127.0.0.1:5000");
    EXPECT_FALSE(r.admit(inside.addr));
    ASSERT_TRUE(r.admit(outside.addr));
    EXPECT_EQ(*r.admit(outside.addr), "client 127.0.0.1:5000 is not in allowed_sources");
}

TEST(RouteTarget, ModesFollowTheConfig) {
    Config c = config("tcp:127.0.0.1:1", "vsock:88:original-port");
    EXPECT_EQ(route_of(c).target, Target::original_port);
    c = config("vsock:any:1200", "");
    c.upstream_mode = UpstreamMode::destination_header;
    Route r = route_of(c);
    EXPECT_EQ(r.target, Target::destination_header);
    ASSERT_TRUE(r.allow) << "a peer-chosen destination is always checked";
    // Deny by default: without a list (the policy never sends one) nothing is allowed.
    EXPECT_FALSE(r.allow->decide(parse_endpoint("tcp:127.0.0.1:80").addr).allowed());
    EXPECT_FALSE(r.allow->decide(parse_endpoint("tcp:93.184.216.34:80").addr).allowed());
    c.allow = {"0.0.0.0/0:*"};
    r = route_of(c);
    EXPECT_FALSE(r.allow->decide(parse_endpoint("tcp:127.0.0.1:80").addr).allowed());
    EXPECT_TRUE(r.allow->decide(parse_endpoint("tcp:93.184.216.34:80").addr).allowed());

    c = config("tcp:127.0.0.1:1", "");
    c.upstream_mode = UpstreamMode::original_destination;
    r = route_of(c);
    EXPECT_EQ(r.target, Target::original_destination);
    EXPECT_TRUE(r.client_chooses_destination());
    EXPECT_TRUE(r.reads_original_destination());
    ASSERT_TRUE(r.allow);
    EXPECT_FALSE(r.allow->decide(parse_endpoint("tcp:93.184.216.34:80").addr).allowed());

    c = config("tcp:127.0.0.1:1", "tcp:10.1.0.0:80");
    c.upstream_mode = UpstreamMode::base_address;
    r = route_of(c);
    EXPECT_EQ(r.target, Target::base_address);
    EXPECT_EQ(to_string(r.upstream), "tcp:10.1.0.0:80");
    EXPECT_TRUE(r.client_chooses_destination());
    c = config("tcp:127.0.0.1:1", "vsock:3:80");
    c.upstream_mode = UpstreamMode::base_address;
    EXPECT_THROW(route_of(c), std::runtime_error);
}

// tcpfwd -b: base + (original port - local port) in the IPv4 address or the last 32 bits of an
// IPv6 one, the port unchanged; out of those 32 bits is refused, not wrapped.
TEST(RouteBaseAddress, OriginalPortMovesTheAddress) {
    const auto moved = [](const std::string& base, uint16_t original, uint16_t local) {
        auto a = base_address_destination(parse_endpoint(base).addr, original, local);
        return a ? format_sockaddr(*a) : std::string("refused");
    };
    EXPECT_EQ(moved("tcp:10.1.0.0:80", 7005, 7000), "10.1.0.5:80");
    EXPECT_EQ(moved("tcp:10.1.0.0:80", 7000, 7000), "10.1.0.0:80");
    EXPECT_EQ(moved("tcp:10.1.0.0:80", 6999, 7000), "10.0.255.255:80");
    EXPECT_EQ(moved("tcp:10.1.0.250:80", 7010, 7000), "10.1.1.4:80");
    EXPECT_EQ(moved("tcp:0.0.0.1:80", 7000, 7002), "refused");
    EXPECT_EQ(moved("tcp:255.255.255.254:80", 7002, 7000), "refused");
    EXPECT_EQ(moved("tcp:[2001:db8::1:ff00]:443", 1300, 1000), "[2001:db8::2:2c]:443");
    EXPECT_EQ(moved("tcp:[2001:db8::5]:443", 995, 1000), "[2001:db8::]:443");
    EXPECT_EQ(moved("tcp:[2001:db8::ffff:ffff]:443", 1001, 1000), "refused");
    EXPECT_EQ(moved("unix:/run/x.sock", 1001, 1000), "refused");
    EXPECT_EQ(port_of(parse_endpoint("tcp:[::1]:8443").addr), 8443);
    EXPECT_EQ(to_string(tcp_endpoint(parse_endpoint("tcp:10.0.0.1:22").addr)), "tcp:10.0.0.1:22");
}

TEST(RouteKeepalive, DelayIsATenthOfIdleAtMostASecond) {
    using std::chrono::milliseconds;
    Config c = config("tcp:127.0.0.1:1", "tcp:127.0.0.1:2");
    c.keepalive_idle = std::chrono::seconds(60);
    EXPECT_EQ(route_of(c).keepalive_delay(), milliseconds(1000));
    c.keepalive_idle = std::chrono::seconds(5);
    EXPECT_EQ(route_of(c).keepalive_delay(), milliseconds(500));
    c.keepalive_idle = std::chrono::seconds(1);
    EXPECT_EQ(route_of(c).keepalive_delay(), milliseconds(100));
    EXPECT_TRUE(route_of(c).wants_keepalive(AF_INET6));
    EXPECT_FALSE(route_of(c).wants_keepalive(AF_VSOCK));
    EXPECT_FALSE(route_of(c).wants_keepalive(AF_UNIX));
    c.keepalive = false;
    EXPECT_FALSE(route_of(c).wants_keepalive(AF_INET));
}

TEST(RouteFcVsock, ReplyParsing) {
    size_t len = 0;
    EXPECT_EQ(parse_fc_vsock_reply("OK 1073741824\nhello", len), FcReply::ok);
    EXPECT_EQ(len, 14u);
    EXPECT_EQ(parse_fc_vsock_reply("OK 12", len), FcReply::need_more);
    EXPECT_EQ(parse_fc_vsock_reply("", len), FcReply::need_more);
    EXPECT_EQ(parse_fc_vsock_reply("ERR\n", len), FcReply::bad);
    EXPECT_EQ(parse_fc_vsock_reply("OK x\n", len), FcReply::bad);
    EXPECT_EQ(parse_fc_vsock_reply(std::string(40, 'O'), len), FcReply::bad);
    EXPECT_EQ(fc_vsock_connect_line(5000), "CONNECT 5000\n");
}

TEST(RouteSeedLog, LinesMatchSeed000) {
    Endpoint listen = parse_endpoint("vsock:88:4000");
    Endpoint dest = parse_endpoint("tcp:127.0.0.1:8080");
    auto l = make_connection_log(WorkerKind::vsock_to_ip, listen, vsock_peer(3, 1), dest, nullptr);
    EXPECT_EQ(proxying_line(WorkerKind::vsock_to_ip, *l), "Proxying to: \"127.0.0.1:8080\"");
    EXPECT_EQ(copy_done_line(WorkerKind::vsock_to_ip, *l, true),
              "vsock to ip IO copy done, from \"88:4000\" to \"127.0.0.1:8080\"");
    EXPECT_EQ(copy_done_line(WorkerKind::vsock_to_ip, *l, false),
              "ip to vsock IO copy done, from \"127.0.0.1:8080\" to \"88:4000\"");

    Endpoint client = parse_endpoint("tcp:192.168.1.5:52314");
    Endpoint vs = parse_endpoint("vsock:88:5000");
    l = make_connection_log(WorkerKind::ip_to_vsock, parse_endpoint("tcp:0.0.0.0:3000"),
                            client.addr, vs, nullptr);
    EXPECT_EQ(proxying_line(WorkerKind::ip_to_vsock, *l),
              "Proxying to: VsockAddr { cid: 88, port: 5000 }");
    EXPECT_EQ(copy_done_line(WorkerKind::ip_to_vsock, *l, true),
              "ip to vsock IO copy done, from \"192.168.1.5:52314\" to VsockAddr { cid: 88, "
              "port: 5000 }");

    Endpoint od = parse_endpoint("tcp:93.184.216.34:80");
    l = make_connection_log(WorkerKind::vsock_to_ip_transparent, parse_endpoint("vsock:3:1200"),
                            vsock_peer(5, 1), od, nullptr);
    EXPECT_EQ(proxying_line(WorkerKind::vsock_to_ip_transparent, *l),
              "Proxying to: 93.184.216.34:80");
    EXPECT_EQ(copy_done_line(WorkerKind::vsock_to_ip_transparent, *l, true),
              "vsock to ip IO copy done, from \"3:1200\" to 93.184.216.34:80");

    Endpoint local = parse_endpoint("tcp:127.0.0.1:45678");
    l = make_connection_log(WorkerKind::ip_to_vsock_transparent,
                            parse_endpoint("tcp:127.0.0.1:1200"), local.addr,
                            parse_endpoint("vsock:3:1200"), &od.addr);
    EXPECT_EQ(copy_done_line(WorkerKind::ip_to_vsock_transparent, *l, true),
              "ip to vsock IO copy done, from \"127.0.0.1:45678\" to VsockAddr { cid: 3, port: "
              "1200 }, with original_dst=93.184.216.34:80 from inbound TCP stream");
    l = make_connection_log(WorkerKind::transparent_port_to_vsock,
                            parse_endpoint("tcp:127.0.0.1:1200"), local.addr,
                            parse_endpoint("vsock:88:80"), &od.addr);
    EXPECT_EQ(copy_done_line(WorkerKind::transparent_port_to_vsock, *l, false),
              "vsock to port IO copy done, from VsockAddr { cid: 88, port: 80 } to "
              "\"127.0.0.1:45678\", with original_dst=93.184.216.34:80, ip=93.184.216.34, "
              "port=80, from inbound TCP stream");
}

TEST(RouteSeedLog, ErrorLinesAreSeed000s) {
    EXPECT_EQ(connect_error_line(WorkerKind::vsock_to_ip),
              "Error: failed to connect to TCP endpoint");
    EXPECT_EQ(connect_error_line(WorkerKind::ip_to_vsock),
              "Error: failed to connect to vsock endpoint");
    EXPECT_EQ(connect_error_line(WorkerKind::transparent_port_to_vsock),
              "Error: failed to connect to vsock endpoint");
    EXPECT_EQ(header_error_line(), "Error: Can't retrieve original_dst from vsock stream");
}

}  // namespace
