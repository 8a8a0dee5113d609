// The per-connection decisions of stream workers that need no socket: peer admission
// (allowed_cids, allowed_sources), the fc-vsock handshake reply, and the seed log lines.
#include "workers/route.hpp"

#include <gtest/gtest.h>
#include <linux/vm_sockets.h>

#include "workers/connection_log.hpp"

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
    EXPECT_FALSE(r.allow->decide(parse_endpoint("tcp:127.0.0.1:80").addr).allowed());
    EXPECT_TRUE(r.allow->decide(parse_endpoint("tcp:93.184.216.34:80").addr).allowed());
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
