// The seed command lines as the replaced tools' documentation shows them, with their CIDs replaced
// by 1 (the guest's loopback CID), carrying real vsock traffic in the QEMU guest (tests/vm), and
// the lines they print: startup lines on stdout exactly, per-connection lines in pf-proxy's log on
// stderr. The guest is a machine of its own, so the seeds' own ports (80, 1200, 3000, 4000, 8080)
// are used.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "guest_support.hpp"

using namespace pfp::test;
using namespace pfp::test::vm;
using pfp::unique_fd;

namespace {

const std::string kClient = "127.0.0.9";  // source the REDIRECT rules match (see transparent_*)

std::vector<std::string> seed(const std::string& name, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {bin_dir() + "/" + name};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

// Sends `text`, half-closes, and returns everything that comes back until EOF; that finishes
// both copy directions, so both "IO copy done" lines get logged.
std::string exchange(int fd, const std::string& text) {
    std::string back;
    if (!write_text(fd, text)) return "(write failed)";
    ::shutdown(fd, SHUT_WR);
    if (!read_to_eof(fd, back)) return "(read failed)";
    return back;
}

std::string local_address(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    char ip[INET_ADDRSTRLEN] = "";
    ::inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

void expect_err_lines(const RunningCommand& r, const std::vector<std::string>& lines) {
    for (const auto& l : lines)
        EXPECT_TRUE(r.wait_err(l, 5s)) << "missing: " << l << "\n" << r.err();
}

TEST(SeedGuest, VsockToIp) {
    REQUIRE_VSOCK_LOOPBACK();
    EchoServer service(8080);
    const std::vector<std::vector<std::string>> forms = {
        {"--vsock-addr", "1:4000", "--ip-addr", "127.0.0.1:8080"},
        {"-v", "1:4000", "-i", "127.0.0.1:8080"}};
    for (const auto& args : forms) {
        RunningCommand r(seed("vsock-to-ip", args));
        ASSERT_TRUE(r.wait_err("proxies ready")) << r.out() << r.err();
        EXPECT_EQ(r.out(),
                  "Listening on: VsockAddr { cid: 1, port: 4000 }\n"
                  "Proxying to: \"127.0.0.1:8080\"\n");
        unique_fd s = connect_vsock(4000);
        ASSERT_TRUE(s) << std::strerror(errno);
        EXPECT_EQ(exchange(s.get(), "hello"), "hello");
        expect_err_lines(r, {"Proxying to: \"127.0.0.1:8080\"",
                             "vsock to ip IO copy done, from \"1:4000\" to \"127.0.0.1:8080\"",
                             "ip to vsock IO copy done, from \"127.0.0.1:8080\" to \"1:4000\""});
        EXPECT_EQ(r.terminate(), 0) << r.err();
    }
}

TEST(SeedGuest, IpToVsock) {
    REQUIRE_VSOCK_LOOPBACK();
    VsockEchoServer service(5000);
    RunningCommand r(seed("ip-to-vsock", {"-i", "0.0.0.0:3000", "-v", "1:5000"}));
    ASSERT_TRUE(r.wait_err("proxies ready")) << r.out() << r.err();
    EXPECT_EQ(r.out(),
              "Listening on: \"0.0.0.0:3000\"\n"
              "Proxying to: VsockAddr { cid: 1, port: 5000 }\n");
    unique_fd c = connect_tcp(3000, 10s);
    ASSERT_TRUE(c);
    const std::string client = "\"" + local_address(c.get()) + "\"";
    EXPECT_EQ(exchange(c.get(), "hello"), "hello");
    const std::string vsock = "VsockAddr { cid: 1, port: 5000 }";
    expect_err_lines(
        r, {"Proxying to: " + vsock, "ip to vsock IO copy done, from " + client + " to " + vsock,
            "vsock to ip IO copy done, from " + vsock + " to " + client});
    EXPECT_EQ(r.terminate(), 0) << r.err();
}

// The PF-Proxy documentation's "Complete Transparent Proxy Chain": REDIRECT port 80 to 1200,
// ip-to-vsock-transparent on 1200 in the enclave, vsock-to-ip-transparent on the host. Both ends
// are in this guest, so the rule matches the client's source only (else the host side's own
// connection would loop).
TEST(SeedGuest, TransparentChain) {
    REQUIRE_VSOCK_LOOPBACK();
    REQUIRE_IPTABLES();
    EchoServer web(80);
    Redirect rule(kClient, 80, 1200);
    ASSERT_TRUE(rule.ok()) << rule.output();
    RunningCommand enclave(
        seed("ip-to-vsock-transparent", {"-i", "127.0.0.1:1200", "-v", "1:1200"}));
    ASSERT_TRUE(enclave.wait_err("proxies ready")) << enclave.out() << enclave.err();
    EXPECT_EQ(enclave.out(),
              "Listening on: \"127.0.0.1:1200\"\n"
              "Proxying to: VsockAddr { cid: 1, port: 1200 }\n");
    {
        // The seed's line as it is: 127.0.0.1 is a protected destination now (docs/migration.md).
        RunningCommand host(seed("vsock-to-ip-transparent", {"-v", "1:1200"}));
        ASSERT_TRUE(host.wait_err("proxies ready")) << host.out() << host.err();
        EXPECT_EQ(host.out(), "Listening on: VsockAddr { cid: 1, port: 1200 }\n");
        unique_fd c = connect_tcp_from(kClient, 80);
        ASSERT_TRUE(c) << std::strerror(errno);
        EXPECT_EQ(exchange(c.get(), "GET /"), "");
        EXPECT_TRUE(host.wait_err("destination 127.0.0.1:80 denied", 5s)) << host.err();
        EXPECT_EQ(host.terminate(), 0) << host.err();
    }
    RunningCommand host(
        seed("vsock-to-ip-transparent", {"-v", "1:1200", "--allow", "127.0.0.1/32:80"}));
    ASSERT_TRUE(host.wait_err("proxies ready")) << host.out() << host.err();
    unique_fd c = connect_tcp_from(kClient, 80);
    ASSERT_TRUE(c) << std::strerror(errno);
    const std::string client = "\"" + local_address(c.get()) + "\"";
    EXPECT_EQ(exchange(c.get(), "GET /"), "GET /");
    const std::string vsock = "VsockAddr { cid: 1, port: 1200 }";
    const std::string od = ", with original_dst=127.0.0.1:80 from inbound TCP stream";
    expect_err_lines(enclave, {"Original destination: 127.0.0.1:80", "Proxying to: " + vsock,
                               "ip to vsock IO copy done, from " + client + " to " + vsock + od,
                               "vsock to ip IO copy done, from " + vsock + " to " + client + od});
    expect_err_lines(host, {"Proxying to: 127.0.0.1:80",
                            "vsock to ip IO copy done, from \"1:1200\" to 127.0.0.1:80",
                            "ip to vsock IO copy done, from 127.0.0.1:80 to \"1:1200\""});
    EXPECT_EQ(host.terminate(), 0) << host.err();
    EXPECT_EQ(enclave.terminate(), 0) << enclave.err();
}

// transparent-port-to-vsock's documented "Architecture Example": port 80 redirected to 1200, on to
// vsock port 80, where `vsock-to-ip -v 88:80 -i 127.0.0.1:8080` (CID 1 here) serves it.
TEST(SeedGuest, TransparentPortToVsockBothNames) {
    REQUIRE_VSOCK_LOOPBACK();
    REQUIRE_IPTABLES();
    EchoServer service(8080);
    Redirect rule(kClient, 80, 1200);
    ASSERT_TRUE(rule.ok()) << rule.output();
    RunningCommand enclave(seed("vsock-to-ip", {"-v", "1:80", "-i", "127.0.0.1:8080"}));
    ASSERT_TRUE(enclave.wait_err("proxies ready")) << enclave.err();
    for (const std::string name : {"transparent-port-to-vsock", "port-to-vsock-transparent"}) {
        SCOPED_TRACE(name);
        RunningCommand r(seed(name, {"-i", "127.0.0.1:1200", "-v", "1"}));
        ASSERT_TRUE(r.wait_err("proxies ready")) << r.out() << r.err();
        EXPECT_EQ(r.out(), "Listening on: \"127.0.0.1:1200\"\nProxying to: 1\n");
        unique_fd c = connect_tcp_from(kClient, 80);
        ASSERT_TRUE(c) << std::strerror(errno);
        const std::string client = "\"" + local_address(c.get()) + "\"";
        EXPECT_EQ(exchange(c.get(), "GET /"), "GET /");
        const std::string vsock = "VsockAddr { cid: 1, port: 80 }";
        const std::string od =
            ", with original_dst=127.0.0.1:80, ip=127.0.0.1, port=80, from inbound TCP stream";
        expect_err_lines(r, {"Original destination: 127.0.0.1:80", "Proxying to: " + vsock,
                             "port to vsock IO copy done, from " + client + " to " + vsock + od,
                             "vsock to port IO copy done, from " + vsock + " to " + client + od});
        EXPECT_EQ(r.terminate(), 0) << r.err();
    }
}

// The vsockproxy README: `vsockproxy 8080 4 9090 2`, with remote CID and allowed CID 1.
TEST(SeedGuest, Vsockproxy) {
    REQUIRE_VSOCK_LOOPBACK();
    VsockEchoServer target(9090);
    {
        RunningCommand r(seed("vsockproxy", {"8080", "1", "9090", "1"}));
        ASSERT_TRUE(r.wait_err("proxies ready")) << r.out() << r.err();
        EXPECT_EQ(r.out(),
                  "vsockproxy started (local port 8080, remote cid 1, remote port 9090, "
                  "allowed_cid 1)\n");
        unique_fd s = connect_vsock(8080);
        ASSERT_TRUE(s) << std::strerror(errno);
        // Statistics come at most once a second, while bytes move.
        for (int i = 0; i < 30 && !r.wait_err("statistics: vsock:1:", 100ms); ++i)
            EXPECT_TRUE(echoes(s.get(), "ping"));
        EXPECT_TRUE(r.wait_err("statistics: vsock:1:", 5s)) << r.err();
        s.reset();
        EXPECT_EQ(r.terminate(), 0) << r.err();
        EXPECT_EQ(r.out(),
                  "vsockproxy started (local port 8080, remote cid 1, remote port 9090, "
                  "allowed_cid 1)\nvsockproxy finished\n");
    }
    RunningCommand other(seed("vsockproxy", {"8080", "1", "9090", "2"}));
    ASSERT_TRUE(other.wait_err("proxies ready")) << other.out() << other.err();
    unique_fd s = connect_vsock(8080);
    ASSERT_TRUE(s) << std::strerror(errno);
    EXPECT_FALSE(echoes(s.get(), "ping"));
    EXPECT_TRUE(other.wait_err("is not in allowed_cids", 5s)) << other.err();
}

}  // namespace
