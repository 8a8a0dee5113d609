// Egress and ingress control: allow-list parsing with exact messages, matching and port ranges,
// the protected ranges denied by default (IPv4-mapped forms included) and the explicit unlocks,
// CidrSet for allowed_sources and CidSet for allowed_cids.
#include "common/allow_list.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pfp {
namespace {

// "1.2.3.4" or "2001:db8::1" (IPv6 by the colon) as a sockaddr.
SockAddr Addr(const std::string& ip, uint16_t port) {
    SockAddr a;
    if (ip.find(':') == std::string::npos) {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        EXPECT_EQ(inet_pton(AF_INET, ip.c_str(), &sin.sin_addr), 1) << ip;
        std::memcpy(&a.storage, &sin, sizeof sin);
        a.len = sizeof sin;
    } else {
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(port);
        EXPECT_EQ(inet_pton(AF_INET6, ip.c_str(), &sin6.sin6_addr), 1) << ip;
        std::memcpy(&a.storage, &sin6, sizeof sin6);
        a.len = sizeof sin6;
    }
    return a;
}

template <typename F>
std::string ErrorFrom(F&& f) {
    try {
        f();
    } catch (const allow_list_error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("<other exception: ") + e.what() + ">";
    }
    return "<no error>";
}

std::string EntryError(std::string_view text) {
    return ErrorFrom([&] { parse_allow_entry(text); });
}

std::string CidrError(std::string_view text) {
    return ErrorFrom([&] { parse_cidr(text); });
}

// The reason of the decision for ip:port under `entries`.
std::string Why(const std::vector<std::string>& entries, const std::string& ip, uint16_t port) {
    const Decision d = AllowList::parse(entries).decide(Addr(ip, port));
    return std::string(d.allowed() ? "ALLOW " : "DENY ") + std::string(d.reason);
}

const std::string kAllow = "ALLOW allowed";
const std::string kNotListed = "DENY not in the allow list";
const std::string kLoopback = "DENY loopback destination not explicitly allowed";
const std::string kLinkLocal = "DENY link-local destination not explicitly allowed";
const std::string kMetadata = "DENY metadata address not explicitly allowed";
const std::string kUnspecified = "DENY unspecified destination not explicitly allowed";

TEST(AllowListParse, Forms) {
    EXPECT_EQ(parse_allow_entry("0.0.0.0/0:443").to_string(), "0.0.0.0/0:443");
    EXPECT_EQ(parse_allow_entry("10.0.0.0/8:1024-65535").to_string(), "10.0.0.0/8:1024-65535");
    EXPECT_EQ(parse_allow_entry("[2001:db8::]/32:443").to_string(), "[2001:db8::]/32:443");
    EXPECT_EQ(parse_allow_entry("192.168.1.5:22").to_string(), "192.168.1.5/32:22");
    EXPECT_EQ(parse_allow_entry("[::1]:22").to_string(), "[::1]/128:22");
    EXPECT_EQ(parse_allow_entry("127.0.0.1/32:*").to_string(), "127.0.0.1/32:*");
    EXPECT_EQ(parse_allow_entry("10.0.0.0/8:0-65535").to_string(), "10.0.0.0/8:*");
    EXPECT_EQ(parse_allow_entry("10.0.0.0/8:7-7").to_string(), "10.0.0.0/8:7");

    const AllowEntry e = parse_allow_entry("10.0.0.0/8:1024-65535");
    EXPECT_EQ(e.cidr.prefix, 8);
    EXPECT_FALSE(e.cidr.base.v6);
    EXPECT_EQ(e.ports.low, 1024);
    EXPECT_EQ(e.ports.high, 65535);
}

// An IPv4-mapped IPv6 range is its IPv4 range.
TEST(AllowListParse, MappedEntriesBecomeIpv4) {
    EXPECT_EQ(parse_allow_entry("[::ffff:10.0.0.0]/104:443"), parse_allow_entry("10.0.0.0/8:443"));
    EXPECT_EQ(parse_allow_entry("[::ffff:127.0.0.1]:80"), parse_allow_entry("127.0.0.1:80"));
    EXPECT_EQ(parse_allow_entry("[::ffff:0:0]/96:*"), parse_allow_entry("0.0.0.0/0:*"));
}

TEST(AllowListParse, ErrorsNameTheEntry) {
    EXPECT_EQ(EntryError("10.0.0.0/33:443"),
              "invalid allow entry \"10.0.0.0/33:443\": prefix length must be 0-32 for IPv4");
    EXPECT_EQ(EntryError("[2001:db8::]/129:443"),
              "invalid allow entry \"[2001:db8::]/129:443\": prefix length must be 0-128 for IPv6");
    EXPECT_EQ(EntryError("10.0.0.0/:443"),
              "invalid allow entry \"10.0.0.0/:443\": prefix length must be 0-32 for IPv4");
    EXPECT_EQ(EntryError("10.0.0.0/-1:443"),
              "invalid allow entry \"10.0.0.0/-1:443\": prefix length must be 0-32 for IPv4");
    EXPECT_EQ(EntryError(""),
              "invalid allow entry \"\": empty (expected ADDRESS[/PREFIX]:PORTS, e.g. "
              "10.0.0.0/8:443)");
    EXPECT_EQ(EntryError("10.0.0.0/8"),
              "invalid allow entry \"10.0.0.0/8\": missing port (expected ADDRESS[/PREFIX]:PORTS "
              "with PORTS a port, LOW-HIGH or *)");
    EXPECT_EQ(EntryError("[2001:db8::]/32"),
              "invalid allow entry \"[2001:db8::]/32\": missing port (expected "
              "ADDRESS[/PREFIX]:PORTS with PORTS a port, LOW-HIGH or *)");
    EXPECT_EQ(EntryError("10.0.0.256:443"),
              "invalid allow entry \"10.0.0.256:443\": \"10.0.0.256\" is not an IPv4 address");
    EXPECT_EQ(EntryError("localhost:443"),
              "invalid allow entry \"localhost:443\": \"localhost\" is not an IPv4 address");
    EXPECT_EQ(EntryError(":443"), "invalid allow entry \":443\": missing address");
    EXPECT_EQ(EntryError("[1.2.3.4]:443"),
              "invalid allow entry \"[1.2.3.4]:443\": \"1.2.3.4\" is not an IPv6 address");
    EXPECT_EQ(EntryError("2001:db8::/32:443"),
              "invalid allow entry \"2001:db8::/32:443\": IPv6 addresses go in brackets, e.g. "
              "[2001:db8::]/32:443");
    EXPECT_EQ(EntryError("[2001:db8::/32]:443"),
              "invalid allow entry \"[2001:db8::/32]:443\": the prefix length goes after the "
              "bracket, e.g. [2001:db8::]/32:443");
    EXPECT_EQ(EntryError("[2001:db8::1:443"),
              "invalid allow entry \"[2001:db8::1:443\": missing ']' after the IPv6 address");
    EXPECT_EQ(EntryError("[2001:db8::1]443"),
              "invalid allow entry \"[2001:db8::1]443\": expected ':' and the ports after the "
              "address");
    EXPECT_EQ(EntryError("[fe80::1%eth0]:443"),
              "invalid allow entry \"[fe80::1%eth0]:443\": scope ids are not allowed");
    EXPECT_EQ(EntryError("10.0.0.1/8:443"),
              "invalid allow entry \"10.0.0.1/8:443\": host bits set beyond the /8 prefix (did "
              "you mean 10.0.0.0/8?)");
    EXPECT_EQ(EntryError("[2001:db8::1]/32:443"),
              "invalid allow entry \"[2001:db8::1]/32:443\": host bits set beyond the /32 prefix "
              "(did you mean [2001:db8::]/32?)");
    for (const char* bad :
         {"10.0.0.0/8:", "10.0.0.0/8:65536", "10.0.0.0/8:http", "10.0.0.0/8:-5", "10.0.0.0/8:5-",
          "10.0.0.0/8:1-2-3", "10.0.0.0/8: 443", "10.0.0.0/8:**"}) {
        EXPECT_EQ(EntryError(bad), "invalid allow entry \"" + std::string(bad) +
                                       "\": port must be a number 0-65535, a range LOW-HIGH or *");
    }
    EXPECT_EQ(EntryError("10.0.0.0/8:2000-1000"),
              "invalid allow entry \"10.0.0.0/8:2000-1000\": port range 2000-1000 runs backwards "
              "(expected LOW-HIGH with LOW <= HIGH)");
    // Control bytes are escaped so the message stays one line.
    EXPECT_EQ(EntryError(std::string_view("1.2.3.4\n:1", 10)),
              "invalid allow entry \"1.2.3.4\\x0a:1\": \"1.2.3.4\\x0a\" is not an IPv4 address");
    EXPECT_EQ(EntryError(std::string_view("1.2.3.4\0:1", 10)),
              "invalid allow entry \"1.2.3.4\\x00:1\": contains a NUL byte");
}

TEST(AllowListParse, ListNamesTheBadEntry) {
    EXPECT_EQ(ErrorFrom([] {
                  AllowList::parse({"10.0.0.0/8:443", "10.0.0.0/33:443"});
              }),
              "invalid allow entry \"10.0.0.0/33:443\": prefix length must be 0-32 for IPv4");
}

TEST(AllowListMatch, CidrAndPorts) {
    const std::vector<std::string> list = {"10.0.0.0/8:1024-65535", "192.168.1.5:22",
                                           "[2001:db8::]/32:443"};
    EXPECT_EQ(Why(list, "10.1.2.3", 1024), kAllow);
    EXPECT_EQ(Why(list, "10.255.255.255", 65535), kAllow);
    EXPECT_EQ(Why(list, "10.1.2.3", 1023), kNotListed);
    EXPECT_EQ(Why(list, "11.0.0.0", 2000), kNotListed);
    EXPECT_EQ(Why(list, "9.255.255.255", 2000), kNotListed);
    EXPECT_EQ(Why(list, "192.168.1.5", 22), kAllow);
    EXPECT_EQ(Why(list, "192.168.1.5", 23), kNotListed);
    EXPECT_EQ(Why(list, "192.168.1.6", 22), kNotListed);
    EXPECT_EQ(Why(list, "2001:db8:ffff::1", 443), kAllow);
    EXPECT_EQ(Why(list, "2001:db9::1", 443), kNotListed);
    EXPECT_EQ(Why(list, "2001:db8::1", 80), kNotListed);
    // An IPv6 range never matches an IPv4 destination, mapped or not, and vice versa.
    EXPECT_EQ(Why({"[::]/0:*"}, "1.2.3.4", 80), kNotListed);
    EXPECT_EQ(Why({"[::]/0:*"}, "::ffff:1.2.3.4", 80), kNotListed);
    EXPECT_EQ(Why({"0.0.0.0/0:*"}, "2001:db8::1", 80), kNotListed);
}

TEST(AllowListMatch, OddPrefixLengths) {
    EXPECT_EQ(Why({"172.16.0.0/12:*"}, "172.31.255.255", 1), kAllow);
    EXPECT_EQ(Why({"172.16.0.0/12:*"}, "172.32.0.0", 1), kNotListed);
    EXPECT_EQ(Why({"172.16.0.0/12:*"}, "172.15.255.255", 1), kNotListed);
    EXPECT_EQ(Why({"[2001:db8:8000::]/33:*"}, "2001:db8:8000::1", 1), kAllow);
    EXPECT_EQ(Why({"[2001:db8:8000::]/33:*"}, "2001:db8:7fff::1", 1), kNotListed);
}

// A hand-built Cidr with an impossible prefix must not read past the address.
TEST(AllowListMatch, OversizedPrefixIsClamped) {
    const Cidr c = parse_cidr("10.0.0.1");
    const Cidr wide{c.base, 255};
    EXPECT_TRUE(wide.contains(parse_cidr("10.0.0.1").base));
    EXPECT_FALSE(wide.contains(parse_cidr("10.0.0.2").base));
}

TEST(AllowListMatch, EntryIndexAndEmptyList) {
    const AllowList list = AllowList::parse({"10.0.0.0/8:80", "10.0.0.0/8:443"});
    const Decision d = list.decide(Addr("10.0.0.1", 443));
    EXPECT_TRUE(d.allowed());
    EXPECT_EQ(d.entry, 1);
    EXPECT_EQ(AllowList().decide(Addr("1.1.1.1", 443)).reason, "not in the allow list");
}

TEST(AllowListMatch, MappedDestinationIsIpv4) {
    EXPECT_EQ(Why({"10.0.0.0/8:443"}, "::ffff:10.1.2.3", 443), kAllow);
    EXPECT_EQ(Why({"10.0.0.0/8:443"}, "::ffff:11.1.2.3", 443), kNotListed);
}

TEST(AllowListMatch, NonIpDestinationDenied) {
    sockaddr_vm svm{};
    svm.svm_family = AF_VSOCK;
    const Decision d = AllowList::any().decide(reinterpret_cast<const sockaddr*>(&svm), sizeof svm);
    EXPECT_FALSE(d.allowed());
    EXPECT_EQ(d.reason, "not an IP destination");
    EXPECT_FALSE(AllowList::any().decide(nullptr, 0).allowed());
    SockAddr truncated = Addr("1.2.3.4", 80);
    truncated.len = 4;
    EXPECT_FALSE(AllowList::any().decide(truncated).allowed());
}

TEST(AllowListDefaultDeny, BroadEntriesDoNotReachProtectedRanges) {
    const std::vector<std::string> any = {"0.0.0.0/0:*", "[::]/0:*"};
    EXPECT_EQ(Why(any, "1.1.1.1", 443), kAllow);
    EXPECT_EQ(Why(any, "2606:4700::1111", 443), kAllow);

    EXPECT_EQ(Why(any, "127.0.0.1", 8080), kLoopback);
    EXPECT_EQ(Why(any, "127.255.255.254", 1), kLoopback);
    EXPECT_EQ(Why(any, "::1", 8080), kLoopback);
    EXPECT_EQ(Why(any, "169.254.1.1", 80), kLinkLocal);
    EXPECT_EQ(Why(any, "fe80::1", 80), kLinkLocal);
    EXPECT_EQ(Why(any, "febf:ffff::1", 80), kLinkLocal);
    EXPECT_EQ(Why(any, "fec0::1", 80), kAllow);  // just past fe80::/10
    EXPECT_EQ(Why(any, "169.254.169.254", 80), kMetadata);
    EXPECT_EQ(Why(any, "fd00:ec2::254", 80), kMetadata);
    EXPECT_EQ(Why(any, "0.0.0.0", 80), kUnspecified);
    EXPECT_EQ(Why(any, "0.1.2.3", 80), kUnspecified);
    EXPECT_EQ(Why(any, "::", 80), kUnspecified);
    EXPECT_EQ(Why(any, "1.0.0.0", 80), kAllow);

    // AllowList::any() is the same list.
    EXPECT_EQ(AllowList::any().decide(Addr("127.0.0.1", 1)).reason,
              "loopback destination not explicitly allowed");
    EXPECT_TRUE(AllowList::any().decide(Addr("8.8.8.8", 53)).allowed());
    // A broad entry that does not match at all says so.
    EXPECT_EQ(Why({"0.0.0.0/0:443"}, "127.0.0.1", 80), kNotListed);
    // Broad but partly protected ranges do not unlock either.
    EXPECT_EQ(Why({"126.0.0.0/7:*"}, "127.0.0.1", 80), kLoopback);
    EXPECT_EQ(Why({"169.254.0.0/15:*"}, "169.254.0.1", 80), kLinkLocal);
}

TEST(AllowListDefaultDeny, MappedFormsAreTheirIpv4Address) {
    const std::vector<std::string> any = {"0.0.0.0/0:*", "[::]/0:*"};
    EXPECT_EQ(Why(any, "::ffff:127.0.0.1", 80), kLoopback);
    EXPECT_EQ(Why(any, "::ffff:169.254.1.1", 80), kLinkLocal);
    EXPECT_EQ(Why(any, "::ffff:169.254.169.254", 80), kMetadata);
    EXPECT_EQ(Why(any, "::ffff:0.0.0.0", 80), kUnspecified);
    EXPECT_EQ(Why(any, "::ffff:8.8.8.8", 53), kAllow);
    // An IPv4 unlock covers the mapped form too.
    EXPECT_EQ(Why({"127.0.0.1:8080"}, "::ffff:127.0.0.1", 8080), kAllow);
    EXPECT_EQ(Why({"[::ffff:127.0.0.1]:8080"}, "127.0.0.1", 8080), kAllow);
}

TEST(AllowListDefaultDeny, ExplicitEntriesUnlockExactlyWhatTheyCover) {
    const std::vector<std::string> list = {"0.0.0.0/0:*",           "[::]/0:*",   "127.0.0.1:8080",
                                           "169.254.169.254/32:80", "[::1]:9000", "[fe80::]/64:22",
                                           "169.254.10.0/24:*"};
    EXPECT_EQ(Why(list, "127.0.0.1", 8080), kAllow);
    EXPECT_EQ(Why(list, "127.0.0.1", 8081), kLoopback);
    EXPECT_EQ(Why(list, "127.0.0.2", 8080), kLoopback);
    EXPECT_EQ(Why(list, "169.254.169.254", 80), kAllow);
    EXPECT_EQ(Why(list, "169.254.169.254", 443), kMetadata);
    EXPECT_EQ(Why(list, "::1", 9000), kAllow);
    EXPECT_EQ(Why(list, "::1", 9001), kLoopback);
    EXPECT_EQ(Why(list, "fe80::abcd", 22), kAllow);
    EXPECT_EQ(Why(list, "fe80:0:0:1::1", 22), kLinkLocal);
    EXPECT_EQ(Why(list, "169.254.10.7", 5000), kAllow);
    EXPECT_EQ(Why(list, "169.254.11.7", 5000), kLinkLocal);
    EXPECT_EQ(Why(list, "8.8.8.8", 53), kAllow);

    const Decision d = AllowList::parse(list).decide(Addr("127.0.0.1", 8080));
    EXPECT_EQ(d.entry, 2);  // the naming entry, not the broad one before it
}

// The metadata address is its own protected range: unlocking link-local leaves it denied.
TEST(AllowListDefaultDeny, MetadataNeedsItsOwnEntry) {
    EXPECT_EQ(Why({"169.254.0.0/16:*"}, "169.254.1.1", 80), kAllow);
    EXPECT_EQ(Why({"169.254.0.0/16:*"}, "169.254.169.254", 80), kMetadata);
    EXPECT_EQ(Why({"169.254.169.254:80"}, "169.254.169.254", 80), kAllow);
    EXPECT_EQ(Why({"[fd00:ec2::254]:80"}, "fd00:ec2::254", 80), kAllow);
    EXPECT_EQ(Why({"[fd00::]/8:*"}, "fd00:ec2::254", 80), kMetadata);
    EXPECT_EQ(Why({"[fd00::]/8:*"}, "fd00:ec2::253", 80), kAllow);
    EXPECT_EQ(Why({"0.0.0.0/8:*"}, "0.0.0.0", 80), kAllow);
}

TEST(AllowListCidrSet, ParseAndMatch) {
    const CidrSet set = CidrSet::parse(
        {"10.0.0.0/8", "192.168.1.5", "2001:db8::/32", "[2001:db9::1]", "[::ffff:172.16.0.0]/108"});
    ASSERT_EQ(set.cidrs().size(), 5u);
    EXPECT_EQ(set.cidrs()[1].to_string(), "192.168.1.5/32");
    EXPECT_EQ(set.cidrs()[4].to_string(), "172.16.0.0/12");
    EXPECT_TRUE(set.contains(Addr("10.9.8.7", 1)));
    EXPECT_TRUE(set.contains(Addr("::ffff:10.9.8.7", 1)));  // a dual-stack listener's peer
    EXPECT_TRUE(set.contains(Addr("192.168.1.5", 1)));
    EXPECT_FALSE(set.contains(Addr("192.168.1.6", 1)));
    EXPECT_TRUE(set.contains(Addr("2001:db8::99", 1)));
    EXPECT_TRUE(set.contains(Addr("2001:db9::1", 1)));
    EXPECT_FALSE(set.contains(Addr("2001:db9::2", 1)));
    EXPECT_TRUE(set.contains(Addr("172.20.0.1", 1)));
    // No protected ranges here: sources are what they are.
    EXPECT_TRUE(CidrSet::parse({"127.0.0.0/8"}).contains(Addr("127.0.0.1", 1)));
    EXPECT_FALSE(CidrSet().contains(Addr("10.0.0.1", 1)));
    sockaddr_vm svm{};
    svm.svm_family = AF_VSOCK;
    EXPECT_FALSE(set.contains(reinterpret_cast<const sockaddr*>(&svm), sizeof svm));
}

TEST(AllowListCidrSet, Errors) {
    EXPECT_EQ(CidrError("10.0.0.0/33"),
              "invalid source CIDR \"10.0.0.0/33\": prefix length must be 0-32 for IPv4");
    EXPECT_EQ(CidrError("10.0.0.0/8:443"),
              "invalid source CIDR \"10.0.0.0/8:443\": prefix length must be 0-32 for IPv4");
    EXPECT_EQ(CidrError("10.0.0.1/8"),
              "invalid source CIDR \"10.0.0.1/8\": host bits set beyond the /8 prefix (did you "
              "mean 10.0.0.0/8?)");
    EXPECT_EQ(CidrError("[2001:db8::/32"),
              "invalid source CIDR \"[2001:db8::/32\": missing ']' after the IPv6 address");
    EXPECT_EQ(CidrError(""),
              "invalid source CIDR \"\": empty (expected ADDRESS[/PREFIX], e.g. 10.0.0.0/8)");
    EXPECT_EQ(CidrError("example.com"),
              "invalid source CIDR \"example.com\": \"example.com\" is not an IPv4 address");
    EXPECT_EQ(ErrorFrom([] {
                  CidrSet::parse({"10.0.0.0/8", "::1/200"});
              }),
              "invalid source CIDR \"::1/200\": prefix length must be 0-128 for IPv6");
}

SockAddr VsockPeer(uint32_t cid) {
    sockaddr_vm svm{};
    svm.svm_family = AF_VSOCK;
    svm.svm_cid = cid;
    svm.svm_port = 1234;
    SockAddr a;
    std::memcpy(&a.storage, &svm, sizeof svm);
    a.len = sizeof svm;
    return a;
}

TEST(AllowListCidSet, Match) {
    const CidSet set({16, 3, 3, 88});
    EXPECT_EQ(set.cids(), (std::vector<uint32_t>{3, 16, 88}));
    EXPECT_TRUE(set.contains(3u));
    EXPECT_TRUE(set.contains(88u));
    EXPECT_FALSE(set.contains(4u));
    EXPECT_FALSE(set.contains(0u));
    EXPECT_TRUE(set.contains(VsockPeer(16)));
    EXPECT_FALSE(set.contains(VsockPeer(17)));
    EXPECT_FALSE(set.contains(Addr("10.0.0.3", 3)));  // not a vsock peer
    SockAddr truncated = VsockPeer(16);
    truncated.len = 4;
    EXPECT_FALSE(set.contains(truncated));
    EXPECT_FALSE(CidSet().contains(3u));
    EXPECT_TRUE(CidSet::any().contains(VsockPeer(12345)));
    EXPECT_TRUE(CidSet::any().matches_any());
}

}  // namespace
}  // namespace pfp
