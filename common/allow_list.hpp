#pragma once
// Egress and ingress control for stream relays (docs/policy.md "allow"):
//   AllowList  `allow`: where vsock-to-ip(-transparent) may connect, CIDR + port range entries
//              "0.0.0.0/0:443"  "10.0.0.0/8:1024-65535"  "[2001:db8::]/32:443"  "192.168.1.5:22"
//              "127.0.0.1/32:*"  (no prefix: one host; * : any port)
//   CidrSet    `allowed_sources`: which TCP clients a listener accepts (CIDRs, no ports)
//   CidSet     `allowed_cids`: which vsock peers a listener accepts
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are their IPv4 address everywhere: in entries, in
// destinations and in sources, so a dual-stack socket can never slip past an IPv4 rule. IPv6
// forms that carry an IPv4 address to an IPv4 host (NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4
// 2002::/16) are protected whenever the IPv4 address they embed is.
//
// Protected even under a broad `allow` unless an entry lies inside the protected range: loopback,
// unspecified (0.0.0.0/8, ::/128, ::/96), link-local, cloud metadata addresses, multicast,
// 240.0.0.0/4 (broadcast included), port 0, and the host's own addresses.
//
// Parsing happens at setup and throws allow_list_error; the checks run on the data path and
// neither throw nor allocate.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/endpoint.hpp"

namespace pfp {

// One-line message quoting the entry and saying what is wrong with it.
class allow_list_error : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

// An IP address as the checks compare it; IPv4-mapped IPv6 is folded to IPv4.
struct IpAddress {
    bool v6 = false;
    std::array<uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4

    // AF_INET or AF_INET6 (copied, so any alignment is fine); std::nullopt for anything else or a
    // length too short for the family. `port` (host order) is set when given.
    static std::optional<IpAddress> from_sockaddr(const sockaddr* sa, socklen_t len,
                                                  uint16_t* port = nullptr) noexcept;
    std::string to_string() const;  // "10.0.0.1", "2001:db8::1"
    bool operator==(const IpAddress&) const = default;
};

struct Cidr {
    IpAddress base;  // host bits are zero
    uint8_t prefix = 0;

    bool contains(const IpAddress& a) const noexcept;
    // `inner` lies entirely inside this range.
    bool covers(const Cidr& inner) const noexcept;
    std::string to_string() const;  // "10.0.0.0/8", "2001:db8::/32"
    bool operator==(const Cidr&) const = default;
};

struct PortRange {
    uint16_t low = 0;
    uint16_t high = 65535;

    bool contains(uint16_t port) const noexcept { return port >= low && port <= high; }
    std::string to_string() const;  // "443", "1024-65535", "*"
    bool operator==(const PortRange&) const = default;
};

struct AllowEntry {
    Cidr cidr;
    PortRange ports;

    std::string to_string() const;  // "10.0.0.0/8:443", "[2001:db8::]/32:*"
    bool operator==(const AllowEntry&) const = default;
};

// "ADDRESS[/PREFIX]:PORTS" with IPv6 in brackets ("[2001:db8::]/32:443"). A prefix with host bits
// set is an error (10.0.0.1/8 is a typo for 10.0.0.0/8 or 10.0.0.1/32). An IPv4-mapped IPv6
// range becomes its IPv4 range. Throws allow_list_error:
//   invalid allow entry "10.0.0.0/33:443": prefix length must be 0-32 for IPv4
AllowEntry parse_allow_entry(std::string_view text);

// "ADDRESS[/PREFIX]", IPv6 with or without brackets. Throws allow_list_error:
//   invalid source CIDR "10.0.0.0/33": prefix length must be 0-32 for IPv4
Cidr parse_cidr(std::string_view text);

enum class Verdict : uint8_t { allow, deny };

struct Decision {
    Verdict verdict = Verdict::deny;
    std::string_view reason;  // static text for the log line
    int entry = -1;           // index of the entry that allowed the destination

    bool allowed() const { return verdict == Verdict::allow; }
};

// A destination is allowed when an entry contains its address and port, except that these
// protected ranges stay denied under a broad entry such as 0.0.0.0/0:
//   metadata     169.254.169.254, fd00:ec2::254 (the cloud instance metadata services)
//   loopback     127.0.0.0/8, ::1
//   link-local   169.254.0.0/16, fe80::/10
//   unspecified  0.0.0.0/8 ("this network": Linux connects 0.0.0.0 to the local host), ::
// A protected destination is allowed only by a matching entry that lies entirely inside its
// innermost protected range: 127.0.0.1:8080 unlocks exactly that, 169.254.169.254/32:80 unlocks
// the metadata service's port 80, and 169.254.0.0/16:* unlocks link-local but not metadata.
class AllowList {
  public:
    AllowList() = default;  // no entries: denies everything
    explicit AllowList(std::vector<AllowEntry> entries) : entries_(std::move(entries)) {}

    // Throws allow_list_error naming the first bad entry.
    static AllowList parse(const std::vector<std::string>& entries);
    // Every destination outside the protected ranges: 0.0.0.0/0:* and [::]/0:*.
    static AllowList any();

    Decision decide(const IpAddress& address, uint16_t port) const noexcept;
    // Not AF_INET/AF_INET6: denied ("not an IP destination").
    Decision decide(const sockaddr* sa, socklen_t len) const noexcept;
    Decision decide(const SockAddr& a) const noexcept { return decide(a.get(), a.len); }

    const std::vector<AllowEntry>& entries() const { return entries_; }

    // The host's own addresses (the supervisor lists them at each worker generation): protected
    // like loopback, so a broad list cannot reach the host's services on its public address.
    void protect_host_addresses(std::vector<IpAddress> addresses) { host_ = std::move(addresses); }

  private:
    struct Guard {
        Cidr range;  // an entry unlocks the destination only when it lies inside this range
        std::string_view reason;
    };
    std::optional<Guard> guard_for(const IpAddress& address, uint16_t port) const noexcept;

    std::vector<AllowEntry> entries_;
    std::vector<IpAddress> host_;
};

// `allowed_sources`: no protected ranges, a source is in the set or not.
class CidrSet {
  public:
    CidrSet() = default;  // empty: contains nothing
    explicit CidrSet(std::vector<Cidr> cidrs) : cidrs_(std::move(cidrs)) {}

    // Throws allow_list_error naming the first bad CIDR.
    static CidrSet parse(const std::vector<std::string>& cidrs);

    bool contains(const IpAddress& a) const noexcept;
    bool contains(const sockaddr* sa, socklen_t len) const noexcept;  // false for non-IP
    bool contains(const SockAddr& a) const noexcept { return contains(a.get(), a.len); }

    bool empty() const { return cidrs_.empty(); }
    const std::vector<Cidr>& cidrs() const { return cidrs_; }

  private:
    std::vector<Cidr> cidrs_;
};

// `allowed_cids`. CIDs are plain numbers here; the vsockproxy CLI's "0 means any guest" belongs to
// its compatibility layer, which passes CidSet::any().
class CidSet {
  public:
    CidSet() = default;  // empty: contains nothing
    explicit CidSet(std::vector<uint32_t> cids);
    static CidSet any();

    bool contains(uint32_t cid) const noexcept;
    // An AF_VSOCK peer's svm_cid; false for other families or a short length.
    bool contains(const sockaddr* sa, socklen_t len) const noexcept;
    bool contains(const SockAddr& a) const noexcept { return contains(a.get(), a.len); }

    bool matches_any() const { return any_; }
    const std::vector<uint32_t>& cids() const { return cids_; }  // sorted, unique

  private:
    std::vector<uint32_t> cids_;
    bool any_ = false;
};

}  // namespace pfp
