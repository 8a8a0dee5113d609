#include "common/endpoint.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "common/text.hpp"
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>

namespace pfp {
namespace {

constexpr std::string_view kSchemeChoices =
    "tcp, udp, vsock, unix, fc-vsock, systemd, nfqueue, nflog or raw";

struct SchemeEntry {
    std::string_view name;
    Scheme scheme;
};

constexpr std::array<SchemeEntry, 9> kSchemes{{
    {"tcp", Scheme::tcp},
    {"udp", Scheme::udp},
    {"vsock", Scheme::vsock},
    {"unix", Scheme::unix_stream},
    {"fc-vsock", Scheme::fc_vsock},
    {"systemd", Scheme::systemd},
    {"nfqueue", Scheme::nfqueue},
    {"raw", Scheme::raw},
    {"nflog", Scheme::nflog},
}};

std::optional<Scheme> scheme_from_name(std::string_view name) {
    for (const auto& entry : kSchemes) {
        if (entry.name == name) return entry.scheme;
    }
    return std::nullopt;
}

// sun_path holds 108 bytes; a pathname needs its NUL, an abstract name its leading 0 byte.
constexpr size_t kMaxUnixName = sizeof(sockaddr_un::sun_path) - 1;

// Carries the whole input so every error can quote it.
class Parser {
  public:
    explicit Parser(std::string_view input) : input_(input) {
        // A NUL would silently cut the C strings handed to inet_pton and if_nametoindex.
        if (input_.find('\0') != std::string_view::npos) fail("contains a NUL byte");
    }

    [[noreturn]] void fail(std::string_view why) const {
        std::string msg = "invalid endpoint " + quote(input_) + ": ";
        msg += why;
        throw endpoint_error(msg);
    }

    Endpoint full();
    Endpoint bare(Scheme assumed);

  private:
    // `prefix` is "tcp:", "udp:", "vsock:" or "" (bare form), used in the examples of messages.
    Endpoint inet(Scheme scheme, std::string_view rest, std::string_view prefix);
    Endpoint vsock(std::string_view rest, std::string_view prefix);
    Endpoint unix_socket(std::string_view rest);
    Endpoint fc_vsock(std::string_view rest);
    Endpoint systemd(std::string_view rest);
    Endpoint nfqueue(std::string_view rest);
    Endpoint nflog(std::string_view rest);
    Endpoint raw(std::string_view rest);

    uint32_t scope_id(std::string_view scope);
    void fill_unix(Endpoint& e, std::string_view path);

    std::string_view input_;
};

Endpoint Parser::full() {
    const size_t colon = input_.find(':');
    if (colon == std::string_view::npos || colon == 0) {
        fail("missing scheme, expected SCHEME:ADDRESS with SCHEME one of " +
             std::string(kSchemeChoices));
    }
    const std::string_view name = input_.substr(0, colon);
    const std::string_view rest = input_.substr(colon + 1);
    const auto scheme = scheme_from_name(name);
    if (!scheme) {
        fail("unknown scheme " + quote(name) + " (expected " + std::string(kSchemeChoices) + ")");
    }
    switch (*scheme) {
        case Scheme::tcp:
            return inet(Scheme::tcp, rest, "tcp:");
        case Scheme::udp:
            return inet(Scheme::udp, rest, "udp:");
        case Scheme::vsock:
            return vsock(rest, "vsock:");
        case Scheme::unix_stream:
            return unix_socket(rest);
        case Scheme::fc_vsock:
            return fc_vsock(rest);
        case Scheme::systemd:
            return systemd(rest);
        case Scheme::nfqueue:
            return nfqueue(rest);
        case Scheme::nflog:
            return nflog(rest);
        case Scheme::raw:
            return raw(rest);
    }
    fail("unknown scheme");
}

Endpoint Parser::bare(Scheme assumed) {
    const size_t colon = input_.find(':');
    if (colon != std::string_view::npos && scheme_from_name(input_.substr(0, colon))) {
        return full();
    }
    switch (assumed) {
        case Scheme::tcp:
        case Scheme::udp:
            return inet(assumed, input_, "");
        case Scheme::vsock:
            return vsock(input_, "");
        default:
            break;
    }
    fail("missing scheme (a bare address is read only as tcp, udp or vsock, not as " +
         std::string(scheme_name(assumed)) + ")");
}

uint32_t Parser::scope_id(std::string_view scope) {
    if (scope.empty()) fail("empty scope id after '%' (expected an interface name or a number)");
    if (scope.front() >= '0' && scope.front() <= '9') {
        const auto n = parse_decimal(scope, UINT32_MAX);
        if (!n) fail("scope id must be an interface name or a number 0-4294967295");
        return static_cast<uint32_t>(*n);
    }
    // if_nametoindex would only fail on longer names too; checking first keeps the call bounded.
    const unsigned index =
        scope.size() < IF_NAMESIZE ? if_nametoindex(std::string(scope).c_str()) : 0;
    if (index == 0) fail("unknown interface " + quote(scope));
    return index;
}

Endpoint Parser::inet(Scheme scheme, std::string_view rest, std::string_view prefix) {
    const std::string p(prefix);
    const std::string expected = "expected " + p + "IP:PORT or " + p + "[IPv6]:PORT";
    Endpoint e;
    e.scheme = scheme;
    std::string_view port_text;

    if (!rest.empty() && rest.front() == '[') {
        const size_t close = rest.find(']');
        if (close == std::string_view::npos)
            fail("missing ']' after the IPv6 address; " + expected);
        if (close + 1 >= rest.size() || rest[close + 1] != ':') {
            fail("expected " + p + "[IPv6]:PORT");
        }
        std::string_view host = rest.substr(1, close - 1);
        port_text = rest.substr(close + 2);

        std::string_view scope;
        const size_t percent = host.find('%');
        if (percent != std::string_view::npos) {
            scope = host.substr(percent + 1);
            host = host.substr(0, percent);
        }
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, std::string(host).c_str(), &sin6.sin6_addr) != 1) {
            fail(quote(host) + " is not an IPv6 address");
        }
        if (percent != std::string_view::npos) sin6.sin6_scope_id = scope_id(scope);
        const auto port = parse_decimal(port_text, 65535);
        if (!port || *port == 0) fail("port must be 1-65535");
        sin6.sin6_port = htons(static_cast<uint16_t>(*port));
        std::memcpy(&e.addr.storage, &sin6, sizeof sin6);
        e.addr.len = sizeof sin6;
        e.port = static_cast<uint32_t>(*port);
        return e;
    }

    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) fail(expected);
    const std::string_view host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
    if (host.empty()) fail("missing address; " + expected);

    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    if (inet_pton(AF_INET, std::string(host).c_str(), &sin.sin_addr) != 1) {
        if (host.find(':') != std::string_view::npos) {
            // Unbracketed IPv6 (with or without a port): point at the brackets.
            in6_addr probe{};
            for (std::string_view whole : {host, rest}) {
                const std::string text(whole.substr(0, whole.find('%')));
                if (inet_pton(AF_INET6, text.c_str(), &probe) == 1) {
                    fail("IPv6 addresses must be in brackets, e.g. " + p + "[::1]:80");
                }
            }
        }
        fail(quote(host) + " is not an IPv4 address");
    }
    const auto port = parse_decimal(port_text, 65535);
    if (!port || *port == 0) fail("port must be 1-65535");
    sin.sin_port = htons(static_cast<uint16_t>(*port));
    std::memcpy(&e.addr.storage, &sin, sizeof sin);
    e.addr.len = sizeof sin;
    e.port = static_cast<uint32_t>(*port);
    return e;
}

Endpoint Parser::vsock(std::string_view rest, std::string_view prefix) {
    const size_t colon = rest.find(':');
    if (colon == std::string_view::npos) fail("expected " + std::string(prefix) + "CID:PORT");
    const std::string_view cid_text = rest.substr(0, colon);
    const std::string_view port_text = rest.substr(colon + 1);

    Endpoint e;
    e.scheme = Scheme::vsock;
    if (cid_text == "any") {
        e.cid = VMADDR_CID_ANY;
    } else if (cid_text == "host") {
        e.cid = VMADDR_CID_HOST;
    } else if (cid_text == "local") {
        e.cid = VMADDR_CID_LOCAL;
    } else if (const auto n = parse_decimal(cid_text, UINT32_MAX)) {
        e.cid = static_cast<uint32_t>(*n);
    } else {
        fail("CID must be any, host, local or a number 0-4294967295");
    }

    if (port_text == "any") {
        e.port = VMADDR_PORT_ANY;
    } else if (port_text == "original-port") {
        e.original_port = true;
        e.port = 0;
    } else if (const auto n = parse_decimal(port_text, UINT32_MAX)) {
        e.port = static_cast<uint32_t>(*n);
    } else {
        fail("port must be any, original-port or a number 0-4294967295");
    }

    sockaddr_vm svm{};
    svm.svm_family = AF_VSOCK;
    svm.svm_cid = e.cid;
    svm.svm_port = e.port;
    std::memcpy(&e.addr.storage, &svm, sizeof svm);
    e.addr.len = sizeof svm;
    return e;
}

void Parser::fill_unix(Endpoint& e, std::string_view path) {
    const bool abstract = path.front() == '@';
    const std::string_view name = abstract ? path.substr(1) : path;
    if (abstract && name.empty()) fail("abstract socket name after '@' must not be empty");
    if (name.size() > kMaxUnixName) {
        fail(std::string(abstract ? "abstract name" : "path") + " is " +
             std::to_string(name.size()) + " bytes; a Unix socket address holds at most " +
             std::to_string(kMaxUnixName));
    }
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    // Abstract: sun_path[0] stays 0 and the length, not a NUL, ends the name.
    std::memcpy(sun.sun_path + (abstract ? 1 : 0), name.data(), name.size());
    std::memcpy(&e.addr.storage, &sun, sizeof sun);
    e.addr.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    e.path = std::string(path);
}

Endpoint Parser::unix_socket(std::string_view rest) {
    if (rest.empty()) fail("expected unix:/path or unix:@name");
    if (rest.front() != '/' && rest.front() != '@') {
        fail("path must start with '/' (or '@' for an abstract socket)");
    }
    Endpoint e;
    e.scheme = Scheme::unix_stream;
    fill_unix(e, rest);
    return e;
}

Endpoint Parser::fc_vsock(std::string_view rest) {
    // The path may itself hold ':'; the port never does.
    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) fail("expected fc-vsock:/path/to.sock:PORT");
    const std::string_view path = rest.substr(0, colon);
    if (path.empty() || path.front() != '/') {
        fail("path must start with '/', expected fc-vsock:/path/to.sock:PORT");
    }
    Endpoint e;
    e.scheme = Scheme::fc_vsock;
    fill_unix(e, path);
    if (rest.substr(colon + 1) == "original-port") {  // the CONNECT port comes from SO_ORIGINAL_DST
        e.original_port = true;
        return e;
    }
    const auto port = parse_decimal(rest.substr(colon + 1), UINT32_MAX);
    if (!port) fail("port must be original-port or a number 0-4294967295");
    e.port = static_cast<uint32_t>(*port);
    return e;
}

Endpoint Parser::systemd(std::string_view rest) {
    // systemd's fdname_is_valid(): ASCII without control characters and without ':', which
    // separates names in $LISTEN_FDNAMES.
    if (rest.empty()) fail("missing name, expected systemd:NAME");
    if (rest.size() > 255) fail("name is longer than 255 characters");
    for (unsigned char c : rest) {
        if (c < 0x20 || c >= 0x7f || c == ':') {
            fail("name may contain only printable ASCII characters other than ':'");
        }
    }
    Endpoint e;
    e.scheme = Scheme::systemd;
    e.name = std::string(rest);
    return e;
}

Endpoint Parser::nfqueue(std::string_view rest) {
    const auto n = parse_decimal(rest, 65535);
    if (!n) fail("queue number must be 0-65535");
    Endpoint e;
    e.scheme = Scheme::nfqueue;
    e.queue = static_cast<uint16_t>(*n);
    return e;
}

Endpoint Parser::nflog(std::string_view rest) {
    const auto n = parse_decimal(rest, 65535);
    if (!n) fail("group number must be 0-65535");
    Endpoint e;
    e.scheme = Scheme::nflog;
    e.queue = static_cast<uint16_t>(*n);
    return e;
}

Endpoint Parser::raw(std::string_view rest) {
    Endpoint e;
    e.scheme = Scheme::raw;
    if (rest == "route") {
        e.raw_route = true;
        return e;
    }
    // The kernel's dev_valid_name(), plus no control characters (they would reach the logs).
    if (rest.empty()) fail("missing device, expected raw:DEVICE or raw:route");
    if (rest.size() >= IF_NAMESIZE) {
        fail("device name is longer than " + std::to_string(IF_NAMESIZE - 1) + " characters");
    }
    if (rest == "." || rest == "..") fail(quote(rest) + " is not a device name");
    for (unsigned char c : rest) {
        if (c <= 0x20 || c == 0x7f || c == '/' || c == ':') {
            fail("device name must not contain '/', ':', whitespace or control characters");
        }
    }
    e.name = std::string(rest);
    return e;
}

std::string vsock_cid_text(uint32_t cid) {
    return cid == VMADDR_CID_ANY ? "any" : std::to_string(cid);
}

std::string vsock_port_text(uint32_t port) {
    return port == VMADDR_PORT_ANY ? "any" : std::to_string(port);
}

// Copies at most sizeof(T) of the caller's bytes into an aligned, zeroed T.
template <typename T>
T copy_sockaddr(const sockaddr* sa, socklen_t len) {
    T out{};
    std::memcpy(&out, sa, std::min<size_t>(len, sizeof out));
    return out;
}

std::string format_inet(const sockaddr* sa, socklen_t len, int family) {
    char buf[INET6_ADDRSTRLEN];
    if (family == AF_INET) {
        const auto sin = copy_sockaddr<sockaddr_in>(sa, len);
        inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof buf);
        return std::string(buf) + ":" + std::to_string(ntohs(sin.sin_port));
    }
    const auto sin6 = copy_sockaddr<sockaddr_in6>(sa, len);
    inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof buf);
    std::string out = "[";
    out += buf;
    if (sin6.sin6_scope_id != 0) out += "%" + std::to_string(sin6.sin6_scope_id);
    out += "]:" + std::to_string(ntohs(sin6.sin6_port));
    return out;
}

}  // namespace

int Endpoint::family() const {
    switch (scheme) {
        case Scheme::tcp:
        case Scheme::udp:
            return addr.family();
        case Scheme::vsock:
            return AF_VSOCK;
        case Scheme::unix_stream:
        case Scheme::fc_vsock:
            return AF_UNIX;
        default:
            return 0;
    }
}

bool Endpoint::is_stream() const {
    switch (scheme) {
        case Scheme::tcp:
        case Scheme::vsock:
        case Scheme::unix_stream:
        case Scheme::fc_vsock:
        case Scheme::systemd:
            return true;
        default:
            return false;
    }
}

Endpoint parse_endpoint(std::string_view text) {
    return Parser(text).full();
}

Endpoint parse_endpoint_or_bare(std::string_view text, Scheme assumed) {
    return Parser(text).bare(assumed);
}

std::string to_string(const Endpoint& e) {
    std::string out(scheme_name(e.scheme));
    out += ':';
    switch (e.scheme) {
        case Scheme::tcp:
        case Scheme::udp: {
            if (!e.host.empty()) return out + e.host + ":" + std::to_string(e.port);
            const int family = e.addr.family();
            if (family != AF_INET && family != AF_INET6) return out + "(no address)";
            return out + format_inet(e.addr.get(), e.addr.len, family);
        }
        case Scheme::vsock:
            return out + vsock_cid_text(e.cid) + ":" +
                   (e.original_port ? std::string("original-port") : vsock_port_text(e.port));
        case Scheme::unix_stream:
            return out + e.path;
        case Scheme::fc_vsock:
            return out + e.path + ":" +
                   (e.original_port ? std::string("original-port") : std::to_string(e.port));
        case Scheme::systemd:
            return out + e.name;
        case Scheme::nfqueue:
        case Scheme::nflog:
            return out + std::to_string(e.queue);
        case Scheme::raw:
            return out + (e.raw_route ? std::string("route") : e.name);
    }
    return out;
}

std::string format_sockaddr(const sockaddr* sa, socklen_t len) {
    if (sa == nullptr || len < sizeof(sa_family_t)) return "(no address)";
    sa_family_t family;
    std::memcpy(&family, sa, sizeof family);
    const auto too_short = [&] {
        return "family " + std::to_string(family) + " (" + std::to_string(len) +
               " bytes, too short)";
    };
    switch (family) {
        case AF_INET:
            if (len < sizeof(sockaddr_in)) return too_short();
            return format_inet(sa, len, AF_INET);
        case AF_INET6:
            if (len < sizeof(sockaddr_in6)) return too_short();
            return format_inet(sa, len, AF_INET6);
        case AF_VSOCK: {
            if (len < sizeof(sockaddr_vm)) return too_short();
            const auto svm = copy_sockaddr<sockaddr_vm>(sa, len);
            return "vsock:" + vsock_cid_text(svm.svm_cid) + ":" + vsock_port_text(svm.svm_port);
        }
        case AF_UNIX: {
            const auto sun = copy_sockaddr<sockaddr_un>(sa, len);
            const size_t n = std::min<size_t>(len, sizeof sun) - offsetof(sockaddr_un, sun_path);
            std::string out = "unix:";
            if (n == 0) return out;  // unnamed (socketpair, unbound client)
            if (sun.sun_path[0] == '\0') {
                out += '@';
                append_escaped(out, std::string_view(sun.sun_path + 1, n - 1), false);
            } else {
                append_escaped(out, std::string_view(sun.sun_path, strnlen(sun.sun_path, n)),
                               false);
            }
            return out;
        }
        default:
            return "family " + std::to_string(family);
    }
}

std::string_view scheme_name(Scheme s) {
    for (const auto& entry : kSchemes) {
        if (entry.scheme == s) return entry.name;
    }
    return "unknown";
}

}  // namespace pfp
