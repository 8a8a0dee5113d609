#pragma once
// The endpoint grammar (docs/policy.md "Endpoints"), shared by the policy, the compatibility CLIs
// and the logs.
//
//   tcp:IP:PORT  tcp:[IPv6%scope]:PORT  udp:...   vsock:CID:PORT (CID: any|host|local|u32)
//   unix:/path  unix:@abstract   fc-vsock:/path/to.sock:PORT   systemd:NAME
//   nfqueue:NUM  nflog:GROUP  raw:DEVICE  raw:route
// plus, where a caller asks for it, the seeds' bare forms (IP:PORT, [::1]:8080, CID:PORT).
#include <sys/socket.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pfp {

enum class Scheme { tcp, udp, vsock, unix_stream, fc_vsock, systemd, nfqueue, raw, nflog };

// One-line message naming the offending text and what was expected.
class endpoint_error : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

// A socket address with its length; what bind()/connect() take.
struct SockAddr {
    sockaddr_storage storage{};
    socklen_t len = 0;

    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
    sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
    int family() const { return storage.ss_family; }
};

struct Endpoint {
    Scheme scheme = Scheme::tcp;
    // tcp, udp: the numeric address (sockaddr_in or sockaddr_in6 with scope id) including the port.
    // vsock: sockaddr_vm. unix: sockaddr_un (abstract when path starts with '@').
    SockAddr addr;
    uint32_t cid = 0;            // vsock
    uint32_t port = 0;           // tcp, udp (16-bit), vsock, fc-vsock (32-bit)
    bool original_port = false;  // vsock:CID:original-port — port taken from SO_ORIGINAL_DST
    std::string path;            // unix (leading '@' = abstract), fc-vsock (the Unix socket path)
    std::string name;            // systemd FileDescriptorName, raw device name
    // tcp, udp upstreams only: a host name the supervisor resolves (addr is empty until then;
    // common/host_endpoint.hpp). Never set by parse_endpoint.
    std::string host;
    bool raw_route = false;  // raw:route
    uint16_t queue = 0;      // nfqueue: the queue number; nflog: the group number

    // AF_INET, AF_INET6, AF_VSOCK or AF_UNIX for address-bearing schemes (fc-vsock: AF_UNIX), else
    // 0.
    int family() const;
    bool is_stream() const;  // tcp, vsock, unix, fc-vsock, systemd (assumed stream)
};

// Parses the full grammar. Throws endpoint_error.
Endpoint parse_endpoint(std::string_view text);

// Also accepts the seeds' bare forms, read as `assumed` (tcp, udp or vsock); full forms pass
// through.
Endpoint parse_endpoint_or_bare(std::string_view text, Scheme assumed);

// Canonical text; parse_endpoint(to_string(e)) gives back an equal endpoint.
std::string to_string(const Endpoint& e);

// A peer or local address for log lines: "127.0.0.1:8080", "[::1]:80", "vsock:3:1200", "unix:/p".
std::string format_sockaddr(const sockaddr* sa, socklen_t len);
inline std::string format_sockaddr(const SockAddr& a) {
    return format_sockaddr(a.get(), a.len);
}

std::string_view scheme_name(Scheme s);

}  // namespace pfp
