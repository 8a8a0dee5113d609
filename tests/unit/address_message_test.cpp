// The ADDRESSES message: what the supervisor encodes the worker decodes unchanged, in order, and
// anything malformed is a protocol error, never a partial set.
#include "common/address_message.hpp"

#include <gtest/gtest.h>

#include "common/ipc.hpp"

namespace pfp::ipc {
namespace {

std::vector<std::string> texts(const std::vector<SockAddr>& v) {
    std::vector<std::string> out;
    for (const SockAddr& a : v) out.push_back(format_sockaddr(a));
    return out;
}

std::string message(const std::string& payload) {
    try {
        decode_addresses(payload);
    } catch (const protocol_error& e) {
        return e.what();
    }
    return "<valid>";
}

TEST(AddressMessage, RoundTripKeepsOrderPortsAndScope) {
    const std::vector<SockAddr> in{
        parse_endpoint("tcp:[2001:db8::1]:443").addr, parse_endpoint("tcp:10.0.0.1:443").addr,
        parse_endpoint("tcp:[fe80::1%1]:53").addr, parse_endpoint("tcp:192.0.2.7:8080").addr};
    const std::string payload = encode_addresses(in);
    EXPECT_EQ(payload.size(), 2 + 4 * kAddressEntrySize);
    EXPECT_EQ(texts(decode_addresses(payload)), texts(in));
}

TEST(AddressMessage, MalformedPayloadsAreProtocolErrors) {
    const std::string one = encode_addresses({parse_endpoint("tcp:10.0.0.1:443").addr});
    EXPECT_EQ(message(one), "<valid>");
    EXPECT_EQ(message(""), "ADDRESSES shorter than its count");
    EXPECT_EQ(message(std::string("\0\0", 2)), "ADDRESSES with 0 addresses");
    EXPECT_EQ(message(std::string("\0\x41", 2)), "ADDRESSES with 65 addresses");
    EXPECT_EQ(message(one + "x"), "ADDRESSES of 26 bytes for 1 addresses");
    EXPECT_EQ(message(one.substr(0, one.size() - 1)), "ADDRESSES of 24 bytes for 1 addresses");
    std::string bad = one;
    bad[2] = 5;
    EXPECT_EQ(message(bad), "ADDRESSES entry 0: family 5");
    bad = one;
    bad[2 + 10] = 1;
    EXPECT_EQ(message(bad), "ADDRESSES entry 0: IPv4 with bytes past its address");
    bad = one;
    bad[2 + 17] = bad[2 + 18] = 0;
    EXPECT_EQ(message(bad), "ADDRESSES entry 0: port 0");
}

TEST(AddressMessage, OnlyIpAddressesAndABoundedCountAreEncoded) {
    EXPECT_THROW(encode_addresses({}), std::invalid_argument);
    EXPECT_THROW(encode_addresses({parse_endpoint("unix:/run/x.sock").addr}),
                 std::invalid_argument);
    std::vector<SockAddr> many(kMaxAddresses + 1, parse_endpoint("tcp:10.0.0.1:1").addr);
    EXPECT_THROW(encode_addresses(many), std::invalid_argument);
    many.pop_back();
    EXPECT_EQ(decode_addresses(encode_addresses(many)).size(), kMaxAddresses);
    EXPECT_LE(2 + kMaxAddresses * kAddressEntrySize, kMaxToWorker);
}

}  // namespace
}  // namespace pfp::ipc
