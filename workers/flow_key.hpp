#pragma once
// A datagram client's address as the flow table keys it: the sockaddr recvmsg filled in, checked
// and normalised (no flow label, no padding), so the same client always maps to the same flow and
// a reply goes back to exactly the address the request came from. The data path's only parser of
// untrusted address bytes; tests/fuzz/fuzz_flow_key.cpp runs it on arbitrary input.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace pfp::worker {

struct FlowKey {
    union {
        sockaddr_in v4;
        sockaddr_in6 v6;
    } addr{};
    socklen_t len = 0;  // sizeof v4 or sizeof v6

    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr); }
    int family() const { return addr.v4.sin_family; }
    bool operator==(const FlowKey& o) const;
};

// nullopt for anything but a complete AF_INET or AF_INET6 address with a non-zero port (a UDP
// peer always has one); `len` as recvmsg reported it, which may exceed or fall short of the
// family's size.
std::optional<FlowKey> flow_key(const sockaddr* sa, socklen_t len);

struct FlowKeyHash {
    size_t operator()(const FlowKey& k) const noexcept;
};

// "127.0.0.1:5353", "[::1]:53": for log lines.
std::string flow_key_text(const FlowKey& k);

}  // namespace pfp::worker
