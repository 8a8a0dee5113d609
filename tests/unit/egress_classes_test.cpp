// Every protected address class, in every spelling a destination header or a dual-stack socket can
// give it (IPv4, IPv4-mapped, NAT64 /96 and /48, 6to4, IPv4-compatible), stays denied under the
// default "any" list and under a broad list, and opens only for an entry that names it.
#include <gtest/gtest.h>

#include "common/allow_list.hpp"

namespace pfp {
namespace {

Decision decide(const AllowList& l, const std::string& endpoint) {
    return l.decide(parse_endpoint(endpoint).addr);
}

struct Case {
    const char* destination;
    const char* reason;
};

// Destination (as a tcp: endpoint) and the reason it is denied.
const Case kProtectedCases[] = {
    {"tcp:127.0.0.1:80", "loopback destination not explicitly allowed"},
    {"tcp:[::ffff:127.0.0.1]:80", "loopback destination not explicitly allowed"},
    {"tcp:[::127.0.0.1]:80", "unspecified destination not explicitly allowed"},
    {"tcp:[64:ff9b::7f00:1]:80", "loopback destination not explicitly allowed"},
    {"tcp:[64:ff9b:1:7f00:0:100::]:80", "loopback destination not explicitly allowed"},
    {"tcp:[2002:7f00:1::1]:80", "loopback destination not explicitly allowed"},
    {"tcp:[::1]:80", "loopback destination not explicitly allowed"},
    {"tcp:0.0.0.0:80", "unspecified destination not explicitly allowed"},
    {"tcp:[::]:80", "unspecified destination not explicitly allowed"},
    {"tcp:169.254.1.1:80", "link-local destination not explicitly allowed"},
    {"tcp:[fe80::1]:80", "link-local destination not explicitly allowed"},
    {"tcp:169.254.169.254:80", "metadata address not explicitly allowed"},
    {"tcp:[64:ff9b::a9fe:a9fe]:80", "metadata address not explicitly allowed"},
    {"tcp:[2002:a9fe:a9fe::1]:80", "metadata address not explicitly allowed"},
    {"tcp:[fd00:ec2::254]:80", "metadata address not explicitly allowed"},
    {"tcp:100.100.100.200:80", "metadata address not explicitly allowed"},
    {"tcp:168.63.129.16:80", "metadata address not explicitly allowed"},
    {"tcp:224.0.0.1:80", "multicast destination not explicitly allowed"},
    {"tcp:[ff02::1]:80", "multicast destination not explicitly allowed"},
    {"tcp:255.255.255.255:80", "reserved or broadcast destination not explicitly allowed"},
    {"tcp:240.0.0.1:80", "reserved or broadcast destination not explicitly allowed"},
};

TEST(EgressClasses, ProtectedUnderTheDefaultAndUnderABroadList) {
    const AllowList any = AllowList::any();
    const AllowList broad = AllowList::parse({"0.0.0.0/0:*", "[::]/0:*"});
    for (const Case& c : kProtectedCases) {
        for (const AllowList* l : {&any, &broad}) {
            const Decision d = decide(*l, c.destination);
            EXPECT_FALSE(d.allowed()) << c.destination;
            EXPECT_EQ(d.reason, c.reason) << c.destination;
        }
    }
}

TEST(EgressClasses, PublicDestinationsInEveryFormPass) {
    const AllowList any = AllowList::any();
    for (const char* dest :
         {"tcp:93.184.216.34:443", "tcp:[::ffff:93.184.216.34]:443", "tcp:[64:ff9b::5db8:d822]:443",
          "tcp:[2002:5db8:d822::1]:443", "tcp:[2001:db8::1]:443"})
        EXPECT_TRUE(decide(any, dest).allowed()) << dest;
}

TEST(EgressClasses, PortZeroIsProtected) {
    const AllowList any = AllowList::any();
    EXPECT_EQ(decide(any, "tcp:93.184.216.34:1").reason, "allowed");
    SockAddr a = parse_endpoint("tcp:93.184.216.34:1").addr;
    reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = 0;
    EXPECT_EQ(any.decide(a).reason, "port 0 not explicitly allowed");
    EXPECT_TRUE(AllowList::parse({"93.184.216.34/32:0"}).decide(a).allowed());
}

TEST(EgressClasses, AnEntryInsideTheProtectedRangeOpensIt) {
    EXPECT_TRUE(
        decide(AllowList::parse({"127.0.0.1/32:80"}), "tcp:[::ffff:127.0.0.1]:80").allowed());
    EXPECT_TRUE(
        decide(AllowList::parse({"169.254.169.254/32:80"}), "tcp:169.254.169.254:80").allowed());
    EXPECT_TRUE(
        decide(AllowList::parse({"[64:ff9b::]/96:80"}), "tcp:[64:ff9b::a9fe:a9fe]:80").allowed());
    // The IPv4 entry does not open the NAT64 form: that is another host (the translator).
    EXPECT_FALSE(decide(AllowList::parse({"169.254.169.254/32:80", "[::]/0:*"}),
                        "tcp:[64:ff9b::a9fe:a9fe]:80")
                     .allowed());
}

TEST(EgressClasses, TheHostsOwnAddressesAreProtected) {
    AllowList any = AllowList::any();
    const auto own = IpAddress::from_sockaddr(parse_endpoint("tcp:10.1.2.3:1").addr.get(),
                                              parse_endpoint("tcp:10.1.2.3:1").addr.len);
    ASSERT_TRUE(own);
    any.protect_host_addresses({*own});
    EXPECT_EQ(decide(any, "tcp:10.1.2.3:22").reason,
              "the host's own address not explicitly allowed");
    EXPECT_EQ(decide(any, "tcp:[::ffff:10.1.2.3]:22").reason,
              "the host's own address not explicitly allowed");
    EXPECT_EQ(decide(any, "tcp:[2002:a01:203::1]:22").reason,
              "the host's own address not explicitly allowed");
    EXPECT_TRUE(decide(any, "tcp:10.1.2.4:22").allowed());
    AllowList named = AllowList::parse({"10.1.2.3/32:22"});
    named.protect_host_addresses({*own});
    EXPECT_TRUE(decide(named, "tcp:10.1.2.3:22").allowed());
}

}  // namespace
}  // namespace pfp
