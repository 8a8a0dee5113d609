// The endpoint grammar (docs/policy.md "Endpoints"): every form, its canonical text, the seeds'
// bare forms, the exact error messages, and format_sockaddr for log lines.
#include "common/endpoint.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "common/worker_kind.hpp"

namespace pfp {
namespace {

// Field-by-field equality, including every byte of the socket address.
testing::AssertionResult Same(const Endpoint& a, const Endpoint& b) {
    if (a.scheme != b.scheme) return testing::AssertionFailure() << "scheme differs";
    if (a.addr.len != b.addr.len) {
        return testing::AssertionFailure() << "addr.len " << a.addr.len << " vs " << b.addr.len;
    }
    if (std::memcmp(&a.addr.storage, &b.addr.storage, sizeof a.addr.storage) != 0) {
        return testing::AssertionFailure() << "addr bytes differ";
    }
    if (a.cid != b.cid) return testing::AssertionFailure() << "cid " << a.cid << " vs " << b.cid;
    if (a.port != b.port) {
        return testing::AssertionFailure() << "port " << a.port << " vs " << b.port;
    }
    if (a.original_port != b.original_port) {
        return testing::AssertionFailure() << "original_port differs";
    }
    if (a.path != b.path) return testing::AssertionFailure() << a.path << " vs " << b.path;
    if (a.name != b.name) return testing::AssertionFailure() << a.name << " vs " << b.name;
    if (a.raw_route != b.raw_route) return testing::AssertionFailure() << "raw_route differs";
    if (a.queue != b.queue) return testing::AssertionFailure() << "queue differs";
    return testing::AssertionSuccess();
}

// The message of the endpoint_error thrown, or a marker when none (or another type) is thrown.
template <typename F>
std::string ErrorFrom(F&& f) {
    try {
        f();
    } catch (const endpoint_error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("<other exception: ") + e.what() + ">";
    }
    return "<no error>";
}

std::string ErrorOf(std::string_view text) {
    return ErrorFrom([&] { parse_endpoint(text); });
}

std::string ErrorOfBare(std::string_view text, Scheme assumed) {
    return ErrorFrom([&] { parse_endpoint_or_bare(text, assumed); });
}

sockaddr_in AsIn(const SockAddr& a) {
    sockaddr_in sin;
    std::memcpy(&sin, &a.storage, sizeof sin);
    return sin;
}

sockaddr_in6 AsIn6(const SockAddr& a) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, &a.storage, sizeof sin6);
    return sin6;
}

sockaddr_vm AsVm(const SockAddr& a) {
    sockaddr_vm svm;
    std::memcpy(&svm, &a.storage, sizeof svm);
    return svm;
}

sockaddr_un AsUn(const SockAddr& a) {
    sockaddr_un sun;
    std::memcpy(&sun, &a.storage, sizeof sun);
    return sun;
}

in6_addr V6(const char* text) {
    in6_addr a{};
    EXPECT_EQ(inet_pton(AF_INET6, text, &a), 1) << text;
    return a;
}

constexpr socklen_t kSunPathOffset = offsetof(sockaddr_un, sun_path);

// ---------------------------------------------------------------------------------------------
// Each form, parsed.

TEST(EndpointParse, TcpIPv4) {
    const Endpoint e = parse_endpoint("tcp:127.0.0.1:8080");
    EXPECT_EQ(e.scheme, Scheme::tcp);
    EXPECT_EQ(e.port, 8080u);
    EXPECT_EQ(e.family(), AF_INET);
    EXPECT_TRUE(e.is_stream());
    ASSERT_EQ(e.addr.len, sizeof(sockaddr_in));
    const sockaddr_in sin = AsIn(e.addr);
    EXPECT_EQ(sin.sin_family, AF_INET);
    EXPECT_EQ(sin.sin_port, htons(8080));
    EXPECT_EQ(sin.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    EXPECT_TRUE(e.path.empty());
    EXPECT_TRUE(e.name.empty());
}

TEST(EndpointParse, UdpIPv4Wildcard) {
    const Endpoint e = parse_endpoint("udp:0.0.0.0:53");
    EXPECT_EQ(e.scheme, Scheme::udp);
    EXPECT_EQ(e.port, 53u);
    EXPECT_EQ(e.family(), AF_INET);
    EXPECT_FALSE(e.is_stream());
    const sockaddr_in sin = AsIn(e.addr);
    EXPECT_EQ(sin.sin_port, htons(53));
    EXPECT_EQ(sin.sin_addr.s_addr, htonl(INADDR_ANY));
}

TEST(EndpointParse, PortBounds) {
    EXPECT_EQ(parse_endpoint("tcp:1.2.3.4:1").port, 1u);
    EXPECT_EQ(parse_endpoint("tcp:1.2.3.4:65535").port, 65535u);
    EXPECT_EQ(AsIn(parse_endpoint("tcp:1.2.3.4:65535").addr).sin_port, htons(65535));
    // Decimal only: leading zeros are still decimal, not octal.
    EXPECT_EQ(parse_endpoint("tcp:1.2.3.4:0080").port, 80u);
}

TEST(EndpointParse, TcpIPv6) {
    const Endpoint e = parse_endpoint("tcp:[::1]:443");
    EXPECT_EQ(e.scheme, Scheme::tcp);
    EXPECT_EQ(e.port, 443u);
    EXPECT_EQ(e.family(), AF_INET6);
    ASSERT_EQ(e.addr.len, sizeof(sockaddr_in6));
    const sockaddr_in6 sin6 = AsIn6(e.addr);
    EXPECT_EQ(sin6.sin6_family, AF_INET6);
    EXPECT_EQ(sin6.sin6_port, htons(443));
    EXPECT_EQ(sin6.sin6_flowinfo, 0u);
    EXPECT_EQ(sin6.sin6_scope_id, 0u);
    EXPECT_EQ(std::memcmp(&sin6.sin6_addr, &in6addr_loopback, sizeof(in6_addr)), 0);
}

TEST(EndpointParse, UdpIPv6Wildcard) {
    const Endpoint e = parse_endpoint("udp:[::]:5353");
    EXPECT_EQ(e.scheme, Scheme::udp);
    EXPECT_EQ(e.family(), AF_INET6);
    const sockaddr_in6 sin6 = AsIn6(e.addr);
    EXPECT_EQ(std::memcmp(&sin6.sin6_addr, &in6addr_any, sizeof(in6_addr)), 0);
    EXPECT_EQ(sin6.sin6_port, htons(5353));
}

TEST(EndpointParse, IPv6ScopeByInterfaceName) {
    const unsigned lo = if_nametoindex("lo");
    ASSERT_NE(lo, 0u);
    const Endpoint e = parse_endpoint("tcp:[fe80::1%lo]:80");
    const sockaddr_in6 sin6 = AsIn6(e.addr);
    EXPECT_EQ(sin6.sin6_scope_id, lo);
    const in6_addr want = V6("fe80::1");
    EXPECT_EQ(std::memcmp(&sin6.sin6_addr, &want, sizeof want), 0);
    EXPECT_EQ(sin6.sin6_port, htons(80));
}

TEST(EndpointParse, IPv6ScopeByNumber) {
    const Endpoint e = parse_endpoint("udp:[fe80::1%7]:80");
    EXPECT_EQ(AsIn6(e.addr).sin6_scope_id, 7u);
    EXPECT_EQ(AsIn6(parse_endpoint("udp:[fe80::1%4294967295]:80").addr).sin6_scope_id, 4294967295u);
}

TEST(EndpointParse, VsockNumbers) {
    const Endpoint e = parse_endpoint("vsock:3:1200");
    EXPECT_EQ(e.scheme, Scheme::vsock);
    EXPECT_EQ(e.cid, 3u);
    EXPECT_EQ(e.port, 1200u);
    EXPECT_FALSE(e.original_port);
    EXPECT_EQ(e.family(), AF_VSOCK);
    EXPECT_TRUE(e.is_stream());
    ASSERT_EQ(e.addr.len, sizeof(sockaddr_vm));
    const sockaddr_vm svm = AsVm(e.addr);
    EXPECT_EQ(svm.svm_family, AF_VSOCK);
    EXPECT_EQ(svm.svm_cid, 3u);
    EXPECT_EQ(svm.svm_port, 1200u);
    EXPECT_EQ(svm.svm_reserved1, 0);
}

TEST(EndpointParse, VsockWords) {
    EXPECT_EQ(parse_endpoint("vsock:any:5000").cid, VMADDR_CID_ANY);
    EXPECT_EQ(parse_endpoint("vsock:any:5000").cid, 0xFFFFFFFFu);
    EXPECT_EQ(parse_endpoint("vsock:host:5000").cid, 2u);
    EXPECT_EQ(parse_endpoint("vsock:local:5000").cid, 1u);
    EXPECT_EQ(AsVm(parse_endpoint("vsock:host:5000").addr).svm_cid, 2u);

    const Endpoint any_port = parse_endpoint("vsock:1:any");
    EXPECT_EQ(any_port.port, VMADDR_PORT_ANY);
    EXPECT_EQ(AsVm(any_port.addr).svm_port, VMADDR_PORT_ANY);
    EXPECT_FALSE(any_port.original_port);

    const Endpoint original = parse_endpoint("vsock:88:original-port");
    EXPECT_EQ(original.cid, 88u);
    EXPECT_TRUE(original.original_port);
    EXPECT_EQ(original.port, 0u);
    EXPECT_EQ(AsVm(original.addr).svm_port, 0u);
}

TEST(EndpointParse, VsockFullRange) {
    const Endpoint e = parse_endpoint("vsock:0:0");
    EXPECT_EQ(e.cid, 0u);
    EXPECT_EQ(e.port, 0u);
    const Endpoint max = parse_endpoint("vsock:4294967295:4294967295");
    EXPECT_EQ(max.cid, 4294967295u);
    EXPECT_EQ(max.port, 4294967295u);
}

TEST(EndpointParse, UnixPath) {
    const Endpoint e = parse_endpoint("unix:/run/pf-proxy/ctl.sock");
    EXPECT_EQ(e.scheme, Scheme::unix_stream);
    EXPECT_EQ(e.path, "/run/pf-proxy/ctl.sock");
    EXPECT_EQ(e.family(), AF_UNIX);
    EXPECT_TRUE(e.is_stream());
    const std::string path = "/run/pf-proxy/ctl.sock";
    EXPECT_EQ(e.addr.len, kSunPathOffset + path.size() + 1);
    const sockaddr_un sun = AsUn(e.addr);
    EXPECT_EQ(sun.sun_family, AF_UNIX);
    EXPECT_STREQ(sun.sun_path, path.c_str());
}

TEST(EndpointParse, UnixAbstract) {
    const Endpoint e = parse_endpoint("unix:@pf-proxy");
    EXPECT_EQ(e.path, "@pf-proxy");
    EXPECT_EQ(e.family(), AF_UNIX);
    EXPECT_EQ(e.addr.len, kSunPathOffset + 1 + 8);
    const sockaddr_un sun = AsUn(e.addr);
    EXPECT_EQ(sun.sun_path[0], '\0');
    EXPECT_EQ(std::string(sun.sun_path + 1, 8), "pf-proxy");
}

TEST(EndpointParse, UnixLongestNames) {
    const std::string path = "/" + std::string(106, 'p');  // 107 bytes + NUL = sun_path
    const Endpoint e = parse_endpoint("unix:" + path);
    EXPECT_EQ(e.path, path);
    EXPECT_EQ(e.addr.len, sizeof(sockaddr_un));

    const std::string name(107, 'a');
    const Endpoint a = parse_endpoint("unix:@" + name);
    EXPECT_EQ(a.addr.len, sizeof(sockaddr_un));
    EXPECT_EQ(std::string(AsUn(a.addr).sun_path + 1, 107), name);
}

TEST(EndpointParse, FirecrackerVsock) {
    const Endpoint e = parse_endpoint("fc-vsock:/run/fc/v.sock:52");
    EXPECT_EQ(e.scheme, Scheme::fc_vsock);
    EXPECT_EQ(e.path, "/run/fc/v.sock");
    EXPECT_EQ(e.port, 52u);
    EXPECT_EQ(e.family(), AF_UNIX);
    EXPECT_TRUE(e.is_stream());
    EXPECT_EQ(e.addr.len, kSunPathOffset + std::strlen("/run/fc/v.sock") + 1);
    EXPECT_STREQ(AsUn(e.addr).sun_path, "/run/fc/v.sock");
}

TEST(EndpointParse, FirecrackerVsockLastColonSeparatesPort) {
    const Endpoint e = parse_endpoint("fc-vsock:/tmp/a:b/v.sock:4294967295");
    EXPECT_EQ(e.path, "/tmp/a:b/v.sock");
    EXPECT_EQ(e.port, 4294967295u);
    EXPECT_STREQ(AsUn(e.addr).sun_path, "/tmp/a:b/v.sock");
}

TEST(EndpointParse, Systemd) {
    const Endpoint e = parse_endpoint("systemd:web-listener");
    EXPECT_EQ(e.scheme, Scheme::systemd);
    EXPECT_EQ(e.name, "web-listener");
    EXPECT_EQ(e.family(), 0);
    EXPECT_TRUE(e.is_stream());
    EXPECT_EQ(e.addr.len, 0u);
    EXPECT_EQ(parse_endpoint("systemd:a b~").name, "a b~");
    const std::string longest(255, 'n');
    EXPECT_EQ(parse_endpoint("systemd:" + longest).name, longest);
}

TEST(EndpointParse, Nfqueue) {
    const Endpoint e = parse_endpoint("nfqueue:7");
    EXPECT_EQ(e.scheme, Scheme::nfqueue);
    EXPECT_EQ(e.queue, 7);
    EXPECT_EQ(e.family(), 0);
    EXPECT_FALSE(e.is_stream());
    EXPECT_EQ(parse_endpoint("nfqueue:0").queue, 0);
    EXPECT_EQ(parse_endpoint("nfqueue:65535").queue, 65535);
}

TEST(EndpointParse, Nflog) {
    const Endpoint e = parse_endpoint("nflog:3");
    EXPECT_EQ(e.scheme, Scheme::nflog);
    EXPECT_EQ(e.queue, 3);
    EXPECT_EQ(e.family(), 0);
    EXPECT_FALSE(e.is_stream());
    EXPECT_EQ(to_string(parse_endpoint("nflog:65535")), "nflog:65535");
    for (const char* bad : {"nflog:65536", "nflog:", "nflog:-1", "nflog:x"}) {
        try {
            (void)parse_endpoint(bad);
            ADD_FAILURE() << bad << " parsed";
        } catch (const endpoint_error& err) {
            EXPECT_NE(std::string(err.what()).find("group number must be 0-65535"),
                      std::string::npos)
                << err.what();
        }
    }
}

TEST(EndpointParse, RawDevice) {
    const Endpoint e = parse_endpoint("raw:eth0");
    EXPECT_EQ(e.scheme, Scheme::raw);
    EXPECT_EQ(e.name, "eth0");
    EXPECT_FALSE(e.raw_route);
    EXPECT_EQ(e.family(), 0);
    EXPECT_FALSE(e.is_stream());
    EXPECT_EQ(parse_endpoint("raw:0123456789abcde").name, "0123456789abcde");  // 15 chars
    EXPECT_EQ(parse_endpoint("raw:veth-a.1").name, "veth-a.1");
    // The kernel accepts non-ASCII device names, so do we.
    EXPECT_EQ(parse_endpoint("raw:\xc3\xa9th0").name, "\xc3\xa9th0");
}

TEST(EndpointParse, RawRoute) {
    const Endpoint e = parse_endpoint("raw:route");
    EXPECT_EQ(e.scheme, Scheme::raw);
    EXPECT_TRUE(e.raw_route);
    EXPECT_TRUE(e.name.empty());
}

// ---------------------------------------------------------------------------------------------
// Canonical text and round trips.

TEST(EndpointToString, CanonicalText) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"tcp:127.0.0.1:8080", "tcp:127.0.0.1:8080"},
        {"tcp:1.2.3.4:0080", "tcp:1.2.3.4:80"},
        {"udp:0.0.0.0:53", "udp:0.0.0.0:53"},
        {"tcp:[::1]:443", "tcp:[::1]:443"},
        {"tcp:[2001:DB8:0:0:0:0:0:1]:80", "tcp:[2001:db8::1]:80"},
        {"udp:[::ffff:10.0.0.1]:53", "udp:[::ffff:10.0.0.1]:53"},
        {"tcp:[fe80::1%7]:80", "tcp:[fe80::1%7]:80"},
        {"tcp:[fe80::1%0]:80", "tcp:[fe80::1]:80"},
        {"vsock:3:1200", "vsock:3:1200"},
        {"vsock:any:5000", "vsock:any:5000"},
        {"vsock:4294967295:1", "vsock:any:1"},
        {"vsock:host:5000", "vsock:2:5000"},
        {"vsock:local:any", "vsock:1:any"},
        {"vsock:3:4294967295", "vsock:3:any"},
        {"vsock:88:original-port", "vsock:88:original-port"},
        {"unix:/run/x.sock", "unix:/run/x.sock"},
        {"unix:@abstract", "unix:@abstract"},
        {"fc-vsock:/run/fc/v.sock:52", "fc-vsock:/run/fc/v.sock:52"},
        {"fc-vsock:/a:b:7", "fc-vsock:/a:b:7"},
        {"systemd:web", "systemd:web"},
        {"nfqueue:0", "nfqueue:0"},
        {"nfqueue:65535", "nfqueue:65535"},
        {"raw:eth0", "raw:eth0"},
        {"raw:route", "raw:route"},
    };
    for (const auto& [input, canonical] : cases) {
        const Endpoint e = parse_endpoint(input);
        EXPECT_EQ(to_string(e), canonical) << input;
        EXPECT_TRUE(Same(parse_endpoint(to_string(e)), e)) << input;
    }
}

TEST(EndpointToString, ScopeByNameRoundTripsAsNumber) {
    const unsigned lo = if_nametoindex("lo");
    ASSERT_NE(lo, 0u);
    const Endpoint e = parse_endpoint("tcp:[fe80::1%lo]:80");
    EXPECT_EQ(to_string(e), "tcp:[fe80::1%" + std::to_string(lo) + "]:80");
    EXPECT_TRUE(Same(parse_endpoint(to_string(e)), e));
}

TEST(EndpointToString, DefaultEndpointDoesNotCrash) {
    EXPECT_EQ(to_string(Endpoint{}), "tcp:(no address)");
}

TEST(EndpointScheme, Names) {
    EXPECT_EQ(scheme_name(Scheme::tcp), "tcp");
    EXPECT_EQ(scheme_name(Scheme::udp), "udp");
    EXPECT_EQ(scheme_name(Scheme::vsock), "vsock");
    EXPECT_EQ(scheme_name(Scheme::unix_stream), "unix");
    EXPECT_EQ(scheme_name(Scheme::fc_vsock), "fc-vsock");
    EXPECT_EQ(scheme_name(Scheme::systemd), "systemd");
    EXPECT_EQ(scheme_name(Scheme::nfqueue), "nfqueue");
    EXPECT_EQ(scheme_name(Scheme::raw), "raw");
}

// ---------------------------------------------------------------------------------------------
// The seeds' bare forms.

TEST(EndpointBare, IPv4AsTcpAndUdp) {
    const Endpoint t = parse_endpoint_or_bare("127.0.0.1:1200", Scheme::tcp);
    EXPECT_TRUE(Same(t, parse_endpoint("tcp:127.0.0.1:1200")));
    const Endpoint u = parse_endpoint_or_bare("0.0.0.0:3000", Scheme::udp);
    EXPECT_TRUE(Same(u, parse_endpoint("udp:0.0.0.0:3000")));
}

TEST(EndpointBare, IPv6) {
    EXPECT_TRUE(
        Same(parse_endpoint_or_bare("[::1]:8080", Scheme::tcp), parse_endpoint("tcp:[::1]:8080")));
    EXPECT_TRUE(Same(parse_endpoint_or_bare("[fe80::1%lo]:80", Scheme::udp),
                     parse_endpoint("udp:[fe80::1%lo]:80")));
    EXPECT_TRUE(Same(parse_endpoint_or_bare("[fe80::1%3]:80", Scheme::tcp),
                     parse_endpoint("tcp:[fe80::1%3]:80")));
}

TEST(EndpointBare, Vsock) {
    EXPECT_TRUE(
        Same(parse_endpoint_or_bare("3:1200", Scheme::vsock), parse_endpoint("vsock:3:1200")));
    EXPECT_TRUE(
        Same(parse_endpoint_or_bare("88:5000", Scheme::vsock), parse_endpoint("vsock:88:5000")));
    EXPECT_EQ(parse_endpoint_or_bare("any:5000", Scheme::vsock).cid, VMADDR_CID_ANY);
    EXPECT_EQ(parse_endpoint_or_bare("host:5000", Scheme::vsock).cid, 2u);
    EXPECT_EQ(parse_endpoint_or_bare("local:5000", Scheme::vsock).cid, 1u);
}

TEST(EndpointBare, FullFormsPassThrough) {
    EXPECT_TRUE(Same(parse_endpoint_or_bare("udp:1.2.3.4:5", Scheme::tcp),
                     parse_endpoint("udp:1.2.3.4:5")));
    EXPECT_TRUE(
        Same(parse_endpoint_or_bare("vsock:3:1200", Scheme::tcp), parse_endpoint("vsock:3:1200")));
    EXPECT_TRUE(Same(parse_endpoint_or_bare("unix:/x", Scheme::vsock), parse_endpoint("unix:/x")));
    EXPECT_TRUE(Same(parse_endpoint_or_bare("raw:route", Scheme::unix_stream),
                     parse_endpoint("raw:route")));
    // A full form is parsed fully: its errors are the full grammar's.
    EXPECT_EQ(ErrorOfBare("tcp:1.2.3:80", Scheme::vsock),
              R"(invalid endpoint "tcp:1.2.3:80": "1.2.3" is not an IPv4 address)");
}

TEST(EndpointBare, Errors) {
    EXPECT_EQ(ErrorOfBare("::1:80", Scheme::tcp),
              R"(invalid endpoint "::1:80": IPv6 addresses must be in brackets, e.g. [::1]:80)");
    EXPECT_EQ(ErrorOfBare("1.2.3.4", Scheme::udp),
              R"(invalid endpoint "1.2.3.4": expected IP:PORT or [IPv6]:PORT)");
    EXPECT_EQ(ErrorOfBare("1.2.3.4:0", Scheme::tcp),
              R"(invalid endpoint "1.2.3.4:0": port must be 1-65535)");
    EXPECT_EQ(ErrorOfBare("localhost:80", Scheme::tcp),
              R"(invalid endpoint "localhost:80": "localhost" is not an IPv4 address)");
    EXPECT_EQ(ErrorOfBare("3", Scheme::vsock), R"(invalid endpoint "3": expected CID:PORT)");
    EXPECT_EQ(ErrorOfBare("x:1", Scheme::vsock),
              R"(invalid endpoint "x:1": CID must be any, host, local or a number 0-4294967295)");
    EXPECT_EQ(
        ErrorOfBare("/run/x.sock", Scheme::unix_stream),
        R"(invalid endpoint "/run/x.sock": missing scheme (a bare address is read only as tcp, udp or vsock, not as unix))");
    EXPECT_EQ(
        ErrorOfBare("1", Scheme::nfqueue),
        R"(invalid endpoint "1": missing scheme (a bare address is read only as tcp, udp or vsock, not as nfqueue))");
}

// ---------------------------------------------------------------------------------------------
// Bad input: the exact one-line message.

struct BadCase {
    std::string input;
    std::string message;  // after `invalid endpoint "<input>": `
};

void ExpectErrors(const std::vector<BadCase>& cases) {
    for (const auto& c : cases) {
        EXPECT_EQ(ErrorOf(c.input), "invalid endpoint \"" + c.input + "\": " + c.message);
    }
}

TEST(EndpointErrors, Scheme) {
    ExpectErrors({
        {"foo:1",
         R"(unknown scheme "foo" (expected tcp, udp, vsock, unix, fc-vsock, systemd, nfqueue, nflog or raw))"},
        {"TCP:1.2.3.4:80",
         R"(unknown scheme "TCP" (expected tcp, udp, vsock, unix, fc-vsock, systemd, nfqueue, nflog or raw))"},
        {"127.0.0.1:80",
         R"(unknown scheme "127.0.0.1" (expected tcp, udp, vsock, unix, fc-vsock, systemd, nfqueue, nflog or raw))"},
        {"",
         "missing scheme, expected SCHEME:ADDRESS with SCHEME one of tcp, udp, vsock, unix, "
         "fc-vsock, systemd, nfqueue, nflog or raw"},
        {"tcp",
         "missing scheme, expected SCHEME:ADDRESS with SCHEME one of tcp, udp, vsock, "
         "unix, fc-vsock, systemd, nfqueue, nflog or raw"},
        {":80",
         "missing scheme, expected SCHEME:ADDRESS with SCHEME one of tcp, udp, vsock, "
         "unix, fc-vsock, systemd, nfqueue, nflog or raw"},
    });
}

TEST(EndpointErrors, Inet) {
    ExpectErrors({
        {"tcp:1.2.3:80", R"("1.2.3" is not an IPv4 address)"},
        {"tcp:1.2.3.256:80", R"("1.2.3.256" is not an IPv4 address)"},
        {"tcp:localhost:80", R"("localhost" is not an IPv4 address)"},
        {"udp:1.2.3.4:80:90", R"("1.2.3.4:80" is not an IPv4 address)"},
        {"tcp: 1.2.3.4:80", R"(" 1.2.3.4" is not an IPv4 address)"},
        {"tcp:1.2.3.4%lo:80", R"("1.2.3.4%lo" is not an IPv4 address)"},
        {"tcp:::1:80", "IPv6 addresses must be in brackets, e.g. tcp:[::1]:80"},
        {"udp:fe80::1%lo:80", "IPv6 addresses must be in brackets, e.g. udp:[::1]:80"},
        {"tcp:::1", "IPv6 addresses must be in brackets, e.g. tcp:[::1]:80"},
        {"tcp:127.0.0.1", "expected tcp:IP:PORT or tcp:[IPv6]:PORT"},
        {"tcp:", "expected tcp:IP:PORT or tcp:[IPv6]:PORT"},
        {"tcp::80", "missing address; expected tcp:IP:PORT or tcp:[IPv6]:PORT"},
        {"tcp:[::1", "missing ']' after the IPv6 address; expected tcp:IP:PORT or tcp:[IPv6]:PORT"},
        {"tcp:[::1]", "expected tcp:[IPv6]:PORT"},
        {"tcp:[::1]80", "expected tcp:[IPv6]:PORT"},
        {"tcp:[]:80", R"("" is not an IPv6 address)"},
        {"tcp:[1.2.3.4]:80", R"("1.2.3.4" is not an IPv6 address)"},
        {"tcp:[::1]]:80", "expected tcp:[IPv6]:PORT"},
        {"tcp:[fe80::1%]:80", "empty scope id after '%' (expected an interface name or a number)"},
        {"tcp:[fe80::1%4294967296]:80",
         "scope id must be an interface name or a number 0-4294967295"},
        {"tcp:[fe80::1%1x]:80", "scope id must be an interface name or a number 0-4294967295"},
        {"tcp:[fe80::1%nosuchif0]:80", R"(unknown interface "nosuchif0")"},
        {"tcp:[fe80::1%averyveryverylonginterfacename]:80",
         R"(unknown interface "averyveryverylonginterfacename")"},
    });
}

TEST(EndpointErrors, Port) {
    for (const char* port : {"0", "65536", "70000", "+80", "-1", " 80", "80 ", "0x50", "", "http",
                             "99999999999999999999999999"}) {
        const std::string input = std::string("tcp:127.0.0.1:") + port;
        EXPECT_EQ(ErrorOf(input), "invalid endpoint \"" + input + "\": port must be 1-65535");
        const std::string v6 = std::string("udp:[::1]:") + port;
        EXPECT_EQ(ErrorOf(v6), "invalid endpoint \"" + v6 + "\": port must be 1-65535");
    }
}

TEST(EndpointErrors, Vsock) {
    const std::string cid = "CID must be any, host, local or a number 0-4294967295";
    const std::string port = "port must be any, original-port or a number 0-4294967295";
    ExpectErrors({
        {"vsock:abc:5", cid},
        {"vsock:4294967296:5", cid},
        {"vsock:-1:5", cid},
        {"vsock:+3:5", cid},
        {"vsock::5", cid},
        {"vsock:ANY:5", cid},
        {"vsock:3:x", port},
        {"vsock:3:", port},
        {"vsock:3:4294967296", port},
        {"vsock:3:1:2", port},
        {"vsock:3:original_port", port},
        {"vsock:3", "expected vsock:CID:PORT"},
        {"vsock:", "expected vsock:CID:PORT"},
    });
}

TEST(EndpointErrors, Unix) {
    const std::string long_path = "/" + std::string(107, 'p');  // 108 bytes: no room for NUL
    const std::string long_name(108, 'a');
    ExpectErrors({
        {"unix:", "expected unix:/path or unix:@name"},
        {"unix:run/x.sock", "path must start with '/' (or '@' for an abstract socket)"},
        {"unix:@", "abstract socket name after '@' must not be empty"},
        {"unix:" + long_path, "path is 108 bytes; a Unix socket address holds at most 107"},
        {"unix:@" + long_name,
         "abstract name is 108 bytes; a Unix socket address holds at most 107"},
    });
}

TEST(EndpointErrors, FirecrackerVsock) {
    ExpectErrors({
        {"fc-vsock:/run/v.sock", "expected fc-vsock:/path/to.sock:PORT"},
        {"fc-vsock:", "expected fc-vsock:/path/to.sock:PORT"},
        {"fc-vsock::52", "path must start with '/', expected fc-vsock:/path/to.sock:PORT"},
        {"fc-vsock:v.sock:52", "path must start with '/', expected fc-vsock:/path/to.sock:PORT"},
        {"fc-vsock:@v:52", "path must start with '/', expected fc-vsock:/path/to.sock:PORT"},
        {"fc-vsock:/run/v.sock:", "port must be original-port or a number 0-4294967295"},
        {"fc-vsock:/run/v.sock:any", "port must be original-port or a number 0-4294967295"},
        {"fc-vsock:/run/v.sock:4294967296", "port must be original-port or a number 0-4294967295"},
        {"fc-vsock:/" + std::string(107, 'p') + ":5",
         "path is 108 bytes; a Unix socket address holds at most 107"},
    });
}

TEST(EndpointErrors, Systemd) {
    const std::string chars = "name may contain only printable ASCII characters other than ':'";
    ExpectErrors({
        {"systemd:", "missing name, expected systemd:NAME"},
        {"systemd:a:b", chars},
        {"systemd:" + std::string(256, 'n'), "name is longer than 255 characters"},
    });
    EXPECT_EQ(ErrorOf("systemd:a\tb"), "invalid endpoint \"systemd:a\\x09b\": " + chars);
    EXPECT_EQ(ErrorOf("systemd:caf\xc3\xa9"),
              "invalid endpoint \"systemd:caf\\xc3\\xa9\": " + chars);
}

TEST(EndpointErrors, Nfqueue) {
    ExpectErrors({
        {"nfqueue:", "queue number must be 0-65535"},
        {"nfqueue:65536", "queue number must be 0-65535"},
        {"nfqueue:-1", "queue number must be 0-65535"},
        {"nfqueue:one", "queue number must be 0-65535"},
    });
}

TEST(EndpointErrors, Raw) {
    const std::string chars =
        "device name must not contain '/', ':', whitespace or control characters";
    ExpectErrors({
        {"raw:", "missing device, expected raw:DEVICE or raw:route"},
        {"raw:0123456789abcdef", "device name is longer than 15 characters"},
        {"raw:.", R"("." is not a device name)"},
        {"raw:..", R"(".." is not a device name)"},
        {"raw:a/b", chars},
        {"raw:a b", chars},
        {"raw:eth0:1", chars},
    });
    EXPECT_EQ(ErrorOf("raw:a\x7f"), "invalid endpoint \"raw:a\\x7f\": " + chars);
}

TEST(EndpointErrors, MessageIsOneEscapedLine) {
    // Control bytes, quotes and non-ASCII bytes are escaped, so the message is one printable line.
    EXPECT_EQ(ErrorOf("tcp:1.2.3.4:80\n"),
              R"(invalid endpoint "tcp:1.2.3.4:80\x0a": port must be 1-65535)");
    EXPECT_EQ(ErrorOf(std::string_view("tcp:1.2.3.4:80\0x", 16)),
              R"(invalid endpoint "tcp:1.2.3.4:80\x00x": contains a NUL byte)");
    EXPECT_EQ(
        ErrorOf("fo\"o\\:1"),
        R"(invalid endpoint "fo\"o\\:1": unknown scheme "fo\"o\\" (expected tcp, udp, vsock, unix, fc-vsock, systemd, nfqueue, nflog or raw))");
    EXPECT_EQ(ErrorOf("nfqueue:\xff"),
              R"(invalid endpoint "nfqueue:\xff": queue number must be 0-65535)");
}

// Every prefix and many one-byte mutations of each valid form: either a clean parse that
// round-trips, or an endpoint_error. Run under ASan/UBSan this also checks the bounds.
TEST(EndpointErrors, MutationsThrowOnlyEndpointError) {
    const std::vector<std::string> seeds = {
        "tcp:127.0.0.1:8080",
        "udp:[fe80::1%lo]:80",
        "tcp:[::ffff:1.2.3.4]:1",
        "vsock:any:original-port",
        "vsock:4294967295:4294967295",
        "unix:@n",
        "unix:/r/x.sock",
        "fc-vsock:/r/v.sock:52",
        "systemd:web",
        "nfqueue:65535",
        "raw:route",
        "raw:eth0",
    };
    std::string alphabet = ":[]%@/.0129afx-+ \n\"\\";
    alphabet += '\0';
    alphabet += '\xff';
    size_t parsed = 0;
    size_t rejected = 0;
    auto check = [&](const std::string& text, Scheme assumed) {
        for (int bare = 0; bare < 2; ++bare) {
            try {
                const Endpoint e =
                    bare ? parse_endpoint_or_bare(text, assumed) : parse_endpoint(text);
                const std::string canonical = to_string(e);
                EXPECT_TRUE(Same(parse_endpoint(canonical), e)) << text << " -> " << canonical;
                (void)format_sockaddr(e.addr);
                ++parsed;
            } catch (const endpoint_error& err) {
                const std::string what = err.what();
                EXPECT_EQ(what.find('\n'), std::string::npos) << what;
                ++rejected;
            }
        }
    };
    for (const auto& seed : seeds) {
        for (size_t cut = 0; cut <= seed.size(); ++cut) {
            check(seed.substr(0, cut), Scheme::tcp);
            const std::string tail = seed.substr(cut);
            check(tail, Scheme::udp);
            check(tail, Scheme::vsock);
        }
        for (size_t i = 0; i < seed.size(); ++i) {
            for (char c : alphabet) {
                std::string m = seed;
                m[i] = c;
                check(m, Scheme::tcp);
                m.insert(i, 1, c);
                check(m, Scheme::vsock);
            }
        }
    }
    EXPECT_GT(parsed, 100u);
    EXPECT_GT(rejected, 100u);
}

// ---------------------------------------------------------------------------------------------
// format_sockaddr for log lines.

TEST(EndpointFormatSockaddr, IPv4) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(8080);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof sin),
              "127.0.0.1:8080");
    EXPECT_EQ(format_sockaddr(parse_endpoint("udp:10.1.2.3:53").addr), "10.1.2.3:53");
}

TEST(EndpointFormatSockaddr, IPv6) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(80);
    sin6.sin6_addr = in6addr_loopback;
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6), "[::1]:80");
    sin6.sin6_addr = V6("fe80::1");
    sin6.sin6_scope_id = 2;
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6),
              "[fe80::1%2]:80");
    EXPECT_EQ(format_sockaddr(parse_endpoint("tcp:[fe80::1%lo]:80").addr),
              "[fe80::1%" + std::to_string(if_nametoindex("lo")) + "]:80");
}

TEST(EndpointFormatSockaddr, Vsock) {
    sockaddr_vm svm{};
    svm.svm_family = AF_VSOCK;
    svm.svm_cid = 3;
    svm.svm_port = 1200;
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&svm), sizeof svm), "vsock:3:1200");
    EXPECT_EQ(format_sockaddr(parse_endpoint("vsock:any:any").addr), "vsock:any:any");
    EXPECT_EQ(format_sockaddr(parse_endpoint("vsock:host:5").addr), "vsock:2:5");
}

TEST(EndpointFormatSockaddr, Unix) {
    EXPECT_EQ(format_sockaddr(parse_endpoint("unix:/run/x.sock").addr), "unix:/run/x.sock");
    EXPECT_EQ(format_sockaddr(parse_endpoint("unix:@name").addr), "unix:@name");
    EXPECT_EQ(format_sockaddr(parse_endpoint("fc-vsock:/run/v.sock:5").addr), "unix:/run/v.sock");

    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    // Unnamed: what accept() reports for an unbound client.
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&sun), sizeof(sa_family_t)),
              "unix:");
    // A pathname without its NUL (the kernel allows a full 108-byte sun_path).
    std::memset(sun.sun_path, 'p', sizeof sun.sun_path);
    sun.sun_path[0] = '/';
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&sun), sizeof sun),
              "unix:/" + std::string(107, 'p'));
    // Length, not a NUL, ends an abstract name; bytes that could break a log line are escaped.
    std::memset(sun.sun_path, 0, sizeof sun.sun_path);
    std::memcpy(sun.sun_path + 1, "a\0b\nc\\", 6);
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&sun), kSunPathOffset + 7),
              R"(unix:@a\x00b\x0ac\x5c)");
}

TEST(EndpointFormatSockaddr, UnknownShortAndNull) {
    sockaddr_storage ss{};
    ss.ss_family = AF_PACKET;
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&ss), sizeof ss),
              "family " + std::to_string(AF_PACKET));
    ss.ss_family = AF_INET;
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&ss), 4),
              "family 2 (4 bytes, too short)");
    EXPECT_EQ(format_sockaddr(nullptr, 0), "(no address)");
    EXPECT_EQ(format_sockaddr(reinterpret_cast<const sockaddr*>(&ss), 1), "(no address)");
    EXPECT_EQ(format_sockaddr(SockAddr{}), "(no address)");
}

TEST(EndpointFormatSockaddr, EveryLengthStaysInBounds) {
    // Exactly `len` bytes on the heap, so ASan reports any read past them.
    for (int family : {AF_INET, AF_INET6, AF_VSOCK, AF_UNIX, AF_PACKET}) {
        for (socklen_t len = 0; len <= sizeof(sockaddr_storage); ++len) {
            std::vector<unsigned char> bytes(len, 'x');
            if (len >= sizeof(sa_family_t)) {
                const sa_family_t f = static_cast<sa_family_t>(family);
                std::memcpy(bytes.data(), &f, sizeof f);
            }
            const std::string s =
                format_sockaddr(reinterpret_cast<const sockaddr*>(bytes.data()), len);
            EXPECT_FALSE(s.empty());
            EXPECT_EQ(s.find('\n'), std::string::npos);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Worker kind names (common/worker_kind.cpp), the policy's "kind" values.

TEST(EndpointWorkerKind, NamesRoundTrip) {
    EXPECT_EQ(kind_name(WorkerKind::tcp_forward), "tcp-forward");
    EXPECT_EQ(kind_from_name("tcp-forward"), WorkerKind::tcp_forward);
    EXPECT_EQ(kind_from_name(kind_name(WorkerKind::tcp_forward)), WorkerKind::tcp_forward);
    EXPECT_EQ(kind_from_name("tcp_forward"), std::nullopt);
    EXPECT_EQ(kind_from_name(""), std::nullopt);
    EXPECT_EQ(kind_from_name("TCP-FORWARD"), std::nullopt);
}

}  // namespace
}  // namespace pfp
