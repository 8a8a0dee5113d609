// libFuzzer entry point for DNS answers, the one input of the supervisor's resolver a remote
// party writes: each input is parsed by c-ares as an A and as an AAAA reply (the parser its
// getaddrinfo uses for answers), and the addresses found go through what the supervisor does with
// them — family interleaving and the ADDRESSES message to the workers, which must decode to the
// same set. Any crash, sanitizer report or mismatch is a finding.
#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/address_message.hpp"
#include "common/address_order.hpp"
#include "common/ipc.hpp"

namespace {

constexpr int kMaxTtls = 64;

void check_round_trip(const std::vector<pfp::SockAddr>& found) {
    if (found.empty()) return;
    std::vector<pfp::SockAddr> ordered = pfp::interleave_families(found);
    if (ordered.size() != found.size()) __builtin_trap();
    if (ordered.size() > pfp::ipc::kMaxAddresses) ordered.resize(pfp::ipc::kMaxAddresses);
    const auto back = pfp::ipc::decode_addresses(pfp::ipc::encode_addresses(ordered));
    if (back.size() != ordered.size()) __builtin_trap();
    for (size_t i = 0; i < back.size(); ++i)
        if (back[i].len != ordered[i].len ||
            std::memcmp(&back[i].storage, &ordered[i].storage, ordered[i].len) != 0)
            __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const int init = ares_library_init(ARES_LIB_INIT_ALL);
    (void)init;
    if (size > 65535) return 0;
    std::vector<pfp::SockAddr> found;
    const int len = static_cast<int>(size);

    ares_addrttl v4[kMaxTtls];
    int n4 = kMaxTtls;
    hostent* host = nullptr;
    if (ares_parse_a_reply(data, len, &host, v4, &n4) == ARES_SUCCESS) {
        for (int i = 0; i < n4 && i < kMaxTtls; ++i) {
            pfp::SockAddr a;
            auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
            in->sin_family = AF_INET;
            in->sin_addr = v4[i].ipaddr;
            in->sin_port = htons(443);
            a.len = sizeof *in;
            found.push_back(a);
        }
    }
    if (host) ares_free_hostent(host);

    ares_addr6ttl v6[kMaxTtls];
    int n6 = kMaxTtls;
    host = nullptr;
    if (ares_parse_aaaa_reply(data, len, &host, v6, &n6) == ARES_SUCCESS) {
        for (int i = 0; i < n6 && i < kMaxTtls; ++i) {
            pfp::SockAddr a;
            auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
            in6->sin6_family = AF_INET6;
            std::memcpy(&in6->sin6_addr, &v6[i].ip6addr, 16);
            in6->sin6_port = htons(443);
            a.len = sizeof *in6;
            found.push_back(a);
        }
    }
    if (host) ares_free_hostent(host);
    check_round_trip(found);
    return 0;
}
