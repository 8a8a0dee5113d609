#include "common/allow_list.hpp"

#include <arpa/inet.h>

#include "common/text.hpp"
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <utility>

namespace pfp {
namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

constexpr IpAddress v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    IpAddress ip;
    ip.bytes[0] = a;
    ip.bytes[1] = b;
    ip.bytes[2] = c;
    ip.bytes[3] = d;
    return ip;
}

constexpr IpAddress v6(std::array<uint8_t, 16> bytes) {
    IpAddress ip;
    ip.v6 = true;
    ip.bytes = bytes;
    return ip;
}

struct ProtectedRange {
    Cidr range;
    std::string_view reason;
};

// Innermost first: the first range containing a destination is the one an entry must lie in.
constexpr std::string_view kMetadata = "metadata address not explicitly allowed";
constexpr std::string_view kLoopback = "loopback destination not explicitly allowed";
constexpr std::string_view kLinkLocal = "link-local destination not explicitly allowed";
constexpr std::string_view kUnspecified = "unspecified destination not explicitly allowed";
constexpr std::string_view kMulticast = "multicast destination not explicitly allowed";
constexpr std::string_view kReserved = "reserved or broadcast destination not explicitly allowed";
const std::array<ProtectedRange, 14> kProtected{{
    {{v4(169, 254, 169, 254), 32}, kMetadata},  // AWS, GCP, Azure IMDS, OpenStack
    {{v6({0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}), 128}, kMetadata},
    {{v4(100, 100, 100, 200), 32}, kMetadata},  // Alibaba Cloud
    {{v4(168, 63, 129, 16), 32}, kMetadata},    // Azure WireServer
    {{v4(127, 0, 0, 0), 8}, kLoopback},
    {{v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), 128}, kLoopback},
    {{v4(169, 254, 0, 0), 16}, kLinkLocal},
    {{v6({0xfe, 0x80}), 10}, kLinkLocal},
    {{v4(0, 0, 0, 0), 8}, kUnspecified},
    {{v6({}), 128}, kUnspecified},
    {{v6({}), 96}, kUnspecified},  // IPv4-compatible ::a.b.c.d (deprecated), ::127.0.0.1 included
    {{v4(224, 0, 0, 0), 4}, kMulticast},
    {{v6({0xff}), 8}, kMulticast},
    {{v4(240, 0, 0, 0), 4}, kReserved},  // 255.255.255.255 included
}};

constexpr std::string_view kPortZero = "port 0 not explicitly allowed";
constexpr std::string_view kHostAddress = "the host's own address not explicitly allowed";

// An IPv6 form that carries an IPv4 address: the address and the IPv6 range of the form.
struct Embedded {
    IpAddress v4;
    Cidr form;
};

std::optional<Embedded> embedded_ipv4(const IpAddress& a) {
    if (!a.v6) return std::nullopt;
    const auto& b = a.bytes;
    IpAddress out;
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): the last 32 bits.
    if (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
        std::all_of(b.begin() + 4, b.begin() + 12, [](uint8_t x) { return x == 0; })) {
        std::copy_n(b.begin() + 12, 4, out.bytes.begin());
        return Embedded{out, {v6({0, 0x64, 0xff, 0x9b}), 96}};
    }
    // NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215), /48 layout: bits 48-63, then 72-87.
    if (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1) {
        out.bytes = {b[6], b[7], b[9], b[10]};
        return Embedded{out, {v6({0, 0x64, 0xff, 0x9b, 0, 1}), 48}};
    }
    // 6to4 2002::/16 (RFC 3056): bits 16-47.
    if (b[0] == 0x20 && b[1] == 0x02) {
        std::copy_n(b.begin() + 2, 4, out.bytes.begin());
        return Embedded{out, {v6({0x20, 0x02}), 16}};
    }
    return std::nullopt;
}

constexpr std::string_view kAllowed = "allowed";
constexpr std::string_view kNotListed = "not in the allow list";
constexpr std::string_view kNotIp = "not an IP destination";

// Clears the bits beyond `prefix`.
IpAddress masked(const IpAddress& a, unsigned prefix) {
    IpAddress m = a;
    const unsigned total = a.v6 ? 128 : 32;
    for (unsigned bit = prefix; bit < total; ++bit) {
        m.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    }
    return m;
}

// Parses entries and CIDRs, carrying the whole text so every error can quote it.
class Parser {
  public:
    Parser(std::string_view what, std::string_view text) : what_(what), text_(text) {
        if (text_.find('\0') != std::string_view::npos) fail("contains a NUL byte");
    }

    [[noreturn]] void fail(std::string_view why) const {
        throw allow_list_error("invalid " + std::string(what_) + " " + quote(text_) + ": " +
                               std::string(why));
    }

    // `host` with an optional "/N" already split off; `bracketed` when it came from [...].
    Cidr cidr(std::string_view host, std::optional<std::string_view> prefix_text,
              bool bracketed) const;
    PortRange ports(std::string_view s) const;

  private:
    std::string_view what_;
    std::string_view text_;
};

Cidr Parser::cidr(std::string_view host, std::optional<std::string_view> prefix_text,
                  bool bracketed) const {
    if (host.empty()) fail("missing address");
    if (host.find('%') != std::string_view::npos) fail("scope ids are not allowed");
    const std::string host_str(host);
    IpAddress ip;
    if (bracketed || host.find(':') != std::string_view::npos) {
        in6_addr a6{};
        if (inet_pton(AF_INET6, host_str.c_str(), &a6) != 1) {
            fail(quote(host) + " is not an IPv6 address");
        }
        ip.v6 = true;
        std::memcpy(ip.bytes.data(), a6.s6_addr, 16);
    } else {
        in_addr a4{};
        if (inet_pton(AF_INET, host_str.c_str(), &a4) != 1) {
            fail(quote(host) + " is not an IPv4 address");
        }
        std::memcpy(ip.bytes.data(), &a4, 4);
    }
    const uint32_t max = ip.v6 ? 128 : 32;
    uint32_t prefix = max;
    if (prefix_text) {
        const auto n = parse_decimal(*prefix_text, max);
        if (!n) {
            fail(ip.v6 ? "prefix length must be 0-128 for IPv6"
                       : "prefix length must be 0-32 for IPv4");
        }
        prefix = *n;
    }
    Cidr c{masked(ip, prefix), static_cast<uint8_t>(prefix)};
    if (c.base != ip) {
        const std::string suggestion =
            bracketed ? "[" + c.base.to_string() + "]/" + std::to_string(prefix) : c.to_string();
        fail("host bits set beyond the /" + std::to_string(prefix) + " prefix (did you mean " +
             suggestion + "?)");
    }
    // An IPv4-mapped range is that IPv4 range, so that it matches IPv4 destinations.
    if (c.base.v6 && c.prefix >= 96 &&
        std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), c.base.bytes.begin())) {
        IpAddress four;
        std::copy_n(c.base.bytes.begin() + 12, 4, four.bytes.begin());
        c = Cidr{four, static_cast<uint8_t>(c.prefix - 96)};
    }
    return c;
}

PortRange Parser::ports(std::string_view s) const {
    constexpr std::string_view kExpected = "port must be a number 0-65535, a range LOW-HIGH or *";
    if (s == "*") return PortRange{};
    const size_t dash = s.find('-');
    if (dash == std::string_view::npos) {
        const auto port = parse_decimal(s, 65535);
        if (!port) fail(kExpected);
        return PortRange{static_cast<uint16_t>(*port), static_cast<uint16_t>(*port)};
    }
    const auto low = parse_decimal(s.substr(0, dash), 65535);
    const auto high = parse_decimal(s.substr(dash + 1), 65535);
    if (!low || !high) fail(kExpected);
    if (*low > *high) {
        fail("port range " + std::string(s) +
             " runs backwards (expected LOW-HIGH with LOW <= HIGH)");
    }
    return PortRange{static_cast<uint16_t>(*low), static_cast<uint16_t>(*high)};
}

// Splits "host/prefix" at the slash.
std::pair<std::string_view, std::optional<std::string_view>> split_prefix(std::string_view s) {
    const size_t slash = s.find('/');
    if (slash == std::string_view::npos) return {s, std::nullopt};
    return {s.substr(0, slash), s.substr(slash + 1)};
}

}  // namespace

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* sa, socklen_t len,
                                                  uint16_t* port) noexcept {
    if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return std::nullopt;
    IpAddress ip;
    if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        sockaddr_in sin;
        std::memcpy(&sin, sa, sizeof sin);
        std::memcpy(ip.bytes.data(), &sin.sin_addr, 4);
        if (port) *port = ntohs(sin.sin_port);
        return ip;
    }
    if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        sockaddr_in6 sin6;
        std::memcpy(&sin6, sa, sizeof sin6);
        const uint8_t* b = sin6.sin6_addr.s6_addr;
        if (std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), b)) {
            std::copy_n(b + 12, 4, ip.bytes.begin());
        } else {
            ip.v6 = true;
            std::copy_n(b, 16, ip.bytes.begin());
        }
        if (port) *port = ntohs(sin6.sin6_port);
        return ip;
    }
    return std::nullopt;
}

std::string IpAddress::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf) == nullptr) return "?";
    return buf;
}

bool Cidr::contains(const IpAddress& a) const noexcept {
    if (a.v6 != base.v6) return false;
    // Clamped: a hand-built Cidr with a prefix beyond the family's width must not read past bytes.
    const unsigned bits = std::min<unsigned>(prefix, base.v6 ? 128 : 32);
    const unsigned whole = bits / 8;
    if (std::memcmp(a.bytes.data(), base.bytes.data(), whole) != 0) return false;
    const unsigned rest = bits % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<uint8_t>(0xff00u >> rest);
    return (a.bytes[whole] & mask) == base.bytes[whole];
}

bool Cidr::covers(const Cidr& inner) const noexcept {
    return inner.prefix >= prefix && contains(inner.base);
}

std::string Cidr::to_string() const {
    return base.to_string() + "/" + std::to_string(prefix);
}

std::string PortRange::to_string() const {
    if (low == 0 && high == 65535) return "*";
    if (low == high) return std::to_string(low);
    return std::to_string(low) + "-" + std::to_string(high);
}

std::string AllowEntry::to_string() const {
    const std::string range = cidr.base.v6
                                  ? "[" + cidr.base.to_string() + "]/" + std::to_string(cidr.prefix)
                                  : cidr.to_string();
    return range + ":" + ports.to_string();
}

AllowEntry parse_allow_entry(std::string_view text) {
    const Parser p("allow entry", text);
    if (text.empty()) p.fail("empty (expected ADDRESS[/PREFIX]:PORTS, e.g. 10.0.0.0/8:443)");
    std::string_view host;
    std::optional<std::string_view> prefix;
    std::string_view rest;  // after the address and prefix: ":PORTS"
    bool bracketed = false;
    if (text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos) p.fail("missing ']' after the IPv6 address");
        host = text.substr(1, close - 1);
        if (host.find('/') != std::string_view::npos) {
            p.fail("the prefix length goes after the bracket, e.g. [2001:db8::]/32:443");
        }
        bracketed = true;
        rest = text.substr(close + 1);
        if (!rest.empty() && rest.front() == '/') {
            const size_t colon = rest.find(':');
            prefix = rest.substr(
                1, colon == std::string_view::npos ? std::string_view::npos : colon - 1);
            rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon);
        }
    } else {
        const size_t colon = text.find(':');
        if (colon != std::string_view::npos &&
            text.find(':', colon + 1) != std::string_view::npos) {
            p.fail("IPv6 addresses go in brackets, e.g. [2001:db8::]/32:443");
        }
        std::tie(host, prefix) = split_prefix(text.substr(0, colon));
        rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
    }
    if (rest.empty()) {
        p.fail("missing port (expected ADDRESS[/PREFIX]:PORTS with PORTS a port, LOW-HIGH or *)");
    }
    if (rest.front() != ':') p.fail("expected ':' and the ports after the address");
    AllowEntry e;
    e.cidr = p.cidr(host, prefix, bracketed);
    e.ports = p.ports(rest.substr(1));
    return e;
}

Cidr parse_cidr(std::string_view text) {
    const Parser p("source CIDR", text);
    if (text.empty()) p.fail("empty (expected ADDRESS[/PREFIX], e.g. 10.0.0.0/8)");
    auto [host, prefix] = split_prefix(text);
    bool bracketed = false;
    if (!host.empty() && host.front() == '[') {
        if (host.size() < 2 || host.back() != ']') p.fail("missing ']' after the IPv6 address");
        host = host.substr(1, host.size() - 2);
        bracketed = true;
    }
    return p.cidr(host, prefix, bracketed);
}

AllowList AllowList::parse(const std::vector<std::string>& entries) {
    std::vector<AllowEntry> parsed;
    parsed.reserve(entries.size());
    for (const auto& text : entries) parsed.push_back(parse_allow_entry(text));
    return AllowList(std::move(parsed));
}

AllowList AllowList::any() {
    return AllowList({AllowEntry{Cidr{IpAddress{}, 0}, PortRange{}},
                      AllowEntry{Cidr{IpAddress{true, {}}, 0}, PortRange{}}});
}

std::optional<AllowList::Guard> AllowList::guard_for(const IpAddress& address,
                                                     uint16_t port) const noexcept {
    for (const ProtectedRange& p : kProtected)
        if (p.range.contains(address)) return Guard{p.range, p.reason};
    for (const IpAddress& host : host_)
        if (host == address)
            return Guard{{host, static_cast<uint8_t>(host.v6 ? 128 : 32)}, kHostAddress};
    // An IPv4 address in IPv6 clothing is as protected as the address itself; an entry must then
    // lie inside the form's own range to unlock it.
    if (const auto e = embedded_ipv4(address)) {
        if (const auto inner = guard_for(e->v4, port)) return Guard{e->form, inner->reason};
    }
    if (port == 0) return Guard{{address, static_cast<uint8_t>(address.v6 ? 128 : 32)}, kPortZero};
    return std::nullopt;
}

Decision AllowList::decide(const IpAddress& address, uint16_t port) const noexcept {
    const std::optional<Guard> guarded = guard_for(address, port);
    bool matched = false;
    for (size_t i = 0; i < entries_.size(); ++i) {
        const AllowEntry& e = entries_[i];
        if (!e.cidr.contains(address) || !e.ports.contains(port)) continue;
        const bool names_it = guarded && guarded->range.covers(e.cidr) &&
                              (guarded->reason != kPortZero || e.ports.high == 0);
        if (!guarded || names_it) return Decision{Verdict::allow, kAllowed, static_cast<int>(i)};
        matched = true;  // a broad entry; keep looking for one naming the protected range
    }
    if (matched) return Decision{Verdict::deny, guarded->reason, -1};
    return Decision{Verdict::deny, kNotListed, -1};
}

Decision AllowList::decide(const sockaddr* sa, socklen_t len) const noexcept {
    uint16_t port = 0;
    const auto ip = IpAddress::from_sockaddr(sa, len, &port);
    if (!ip) return Decision{Verdict::deny, kNotIp, -1};
    return decide(*ip, port);
}

CidrSet CidrSet::parse(const std::vector<std::string>& cidrs) {
    std::vector<Cidr> parsed;
    parsed.reserve(cidrs.size());
    for (const auto& text : cidrs) parsed.push_back(parse_cidr(text));
    return CidrSet(std::move(parsed));
}

bool CidrSet::contains(const IpAddress& a) const noexcept {
    return std::any_of(cidrs_.begin(), cidrs_.end(), [&](const Cidr& c) { return c.contains(a); });
}

bool CidrSet::contains(const sockaddr* sa, socklen_t len) const noexcept {
    const auto ip = IpAddress::from_sockaddr(sa, len);
    return ip && contains(*ip);
}

CidSet::CidSet(std::vector<uint32_t> cids) : cids_(std::move(cids)) {
    std::sort(cids_.begin(), cids_.end());
    cids_.erase(std::unique(cids_.begin(), cids_.end()), cids_.end());
}

CidSet CidSet::any() {
    CidSet s;
    s.any_ = true;
    return s;
}

bool CidSet::contains(uint32_t cid) const noexcept {
    return any_ || std::binary_search(cids_.begin(), cids_.end(), cid);
}

bool CidSet::contains(const sockaddr* sa, socklen_t len) const noexcept {
    if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sockaddr_vm)) ||
        sa->sa_family != AF_VSOCK) {
        return false;
    }
    sockaddr_vm svm;
    std::memcpy(&svm, sa, sizeof svm);
    return contains(svm.svm_cid);
}

}  // namespace pfp
