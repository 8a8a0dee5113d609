#include "common/address_message.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/ipc.hpp"

namespace pfp::ipc {

std::string encode_addresses(const std::vector<SockAddr>& addresses) {
    if (addresses.empty() || addresses.size() > kMaxAddresses)
        throw std::invalid_argument("an address set of " + std::to_string(addresses.size()) +
                                    " addresses (1-" + std::to_string(kMaxAddresses) + ")");
    std::string out;
    out.reserve(2 + addresses.size() * kAddressEntrySize);
    const uint16_t count = htons(static_cast<uint16_t>(addresses.size()));
    out.append(reinterpret_cast<const char*>(&count), sizeof count);
    for (const SockAddr& a : addresses) {
        char entry[kAddressEntrySize] = {};
        uint16_t port = 0;
        uint32_t scope = 0;
        if (a.family() == AF_INET && a.len >= sizeof(sockaddr_in)) {
            const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
            entry[0] = 4;
            std::memcpy(entry + 1, &in->sin_addr, 4);
            port = in->sin_port;
        } else if (a.family() == AF_INET6 && a.len >= sizeof(sockaddr_in6)) {
            const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
            entry[0] = 6;
            std::memcpy(entry + 1, &in6->sin6_addr, 16);
            port = in6->sin6_port;
            scope = htonl(in6->sin6_scope_id);
        } else {
            throw std::invalid_argument("not an IPv4 or IPv6 address: " + format_sockaddr(a));
        }
        std::memcpy(entry + 17, &port, 2);
        std::memcpy(entry + 19, &scope, 4);
        out.append(entry, sizeof entry);
    }
    return out;
}

std::vector<SockAddr> decode_addresses(const std::string& payload) {
    if (payload.size() < 2) throw protocol_error("ADDRESSES shorter than its count");
    uint16_t count = 0;
    std::memcpy(&count, payload.data(), 2);
    count = ntohs(count);
    if (count == 0 || count > kMaxAddresses)
        throw protocol_error("ADDRESSES with " + std::to_string(count) + " addresses");
    if (payload.size() != 2 + count * kAddressEntrySize)
        throw protocol_error("ADDRESSES of " + std::to_string(payload.size()) + " bytes for " +
                             std::to_string(count) + " addresses");
    std::vector<SockAddr> out;
    out.reserve(count);
    for (size_t i = 0; i < count; ++i) {
        const char* e = payload.data() + 2 + i * kAddressEntrySize;
        uint16_t port = 0;
        uint32_t scope = 0;
        std::memcpy(&port, e + 17, 2);
        std::memcpy(&scope, e + 19, 4);
        if (port == 0) throw protocol_error("ADDRESSES entry " + std::to_string(i) + ": port 0");
        SockAddr a;
        if (e[0] == 4) {
            if (scope != 0 || std::any_of(e + 5, e + 17, [](char c) { return c != 0; }))
                throw protocol_error("ADDRESSES entry " + std::to_string(i) +
                                     ": IPv4 with bytes past its address");
            auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
            in->sin_family = AF_INET;
            std::memcpy(&in->sin_addr, e + 1, 4);
            in->sin_port = port;
            a.len = sizeof(sockaddr_in);
        } else if (e[0] == 6) {
            auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
            in6->sin6_family = AF_INET6;
            std::memcpy(&in6->sin6_addr, e + 1, 16);
            in6->sin6_port = port;
            in6->sin6_scope_id = ntohl(scope);
            a.len = sizeof(sockaddr_in6);
        } else {
            throw protocol_error("ADDRESSES entry " + std::to_string(i) + ": family " +
                                 std::to_string(static_cast<unsigned char>(e[0])));
        }
        out.push_back(a);
    }
    return out;
}

}  // namespace pfp::ipc
