// libFuzzer entry point for the PROXY protocol v2 reader (untrusted: a later feature may accept
// PROXY headers from clients) and the encoder. Byte 0 says where the rest is split into two reads;
// the decoder must give the same answer for that split, one read and byte-at-a-time, never
// consume more than it is fed or more than 536 bytes, and decoded addresses must encode back.
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "common/proxy_protocol.hpp"

namespace {

using pfp::ProxyHeaderDecoder;
using Status = ProxyHeaderDecoder::Status;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

bool one_line(std::string_view s) {
    return !s.empty() && s.find('\n') == std::string_view::npos;
}

bool same(const pfp::SockAddr& a, const pfp::SockAddr& b) {
    return a.len == b.len && std::memcmp(&a.storage, &b.storage, sizeof a.storage) == 0;
}

bool same_header(const pfp::ProxyHeader& a, const pfp::ProxyHeader& b) {
    return a.command == b.command && a.family_protocol == b.family_protocol && a.size == b.size &&
           same(a.source, b.source) && same(a.destination, b.destination);
}

bool is_mapped(const pfp::SockAddr& a) {
    if (a.family() != AF_INET6) return false;
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(sin6->sin6_addr.s6_addr, kPrefix, sizeof kPrefix) == 0;
}

void check_done(const pfp::ProxyHeader& h, const uint8_t* header, size_t total) {
    check(total >= pfp::kProxyV2FixedSize && total <= pfp::kProxyV2MaxSize);
    check(h.size == total);
    check(total == pfp::kProxyV2FixedSize + ((size_t{header[14]} << 8) | header[15]));
    check(std::memcmp(header, pfp::kProxyV2Signature.data(), 12) == 0);
    check((header[12] >> 4) == 2);
    check(h.command == pfp::ProxyCommand::local || h.command == pfp::ProxyCommand::proxy);
    check(h.family_protocol == header[13]);
    if (!h.has_addresses()) {
        check(h.destination.len == 0);
        check(h.command == pfp::ProxyCommand::local || (h.family_protocol >> 4) == 0 ||
              (h.family_protocol >> 4) == 3);
        return;
    }
    check(h.command == pfp::ProxyCommand::proxy);
    const int family = (h.family_protocol >> 4) == 1 ? AF_INET : AF_INET6;
    check(h.source.family() == family && h.destination.family() == family);
    check(h.source.len == (family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)));
    check(h.destination.len == h.source.len);

    // Encode the addresses again: the same bytes up to the length field and the address block.
    if (is_mapped(h.source) || is_mapped(h.destination)) return;  // folded to IPv4 on purpose
    const pfp::ProxyHeaderBytes again = pfp::encode_proxy_v2(h.source, h.destination);
    const size_t block = family == AF_INET ? 12 : 36;
    check(again.size == pfp::kProxyV2FixedSize + block);
    check(std::memcmp(again.data(), header, 13) == 0);
    check(again.bytes[13] == (family == AF_INET ? pfp::kProxyTcp4 : pfp::kProxyTcp6));
    check(again.bytes[14] == 0 && again.bytes[15] == block);
    check(std::memcmp(again.data() + 16, header + 16, block) == 0);

    ProxyHeaderDecoder round;
    const auto r = round.feed(again.span());
    check(r.status == Status::done && r.consumed == again.size);
    check(same(round.header().source, h.source) && same(round.header().destination, h.destination));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t control = data[0];
    ++data;
    --size;
    const size_t split = control % (size + 1);

    // Two reads, split where byte 0 says.
    ProxyHeaderDecoder d;
    const auto first = d.feed(data, split);
    check(first.consumed <= split);
    size_t total = first.consumed;
    if (first.status == Status::need_more) {
        check(first.consumed == split);
        const auto second = d.feed(data + split, size - split);
        check(second.consumed <= size - split);
        total += second.consumed;
    } else {
        const auto second = d.feed(data + split, size - split);
        check(second.consumed == 0 && second.status == first.status);
    }
    check(total <= size && total <= pfp::kProxyV2MaxSize);
    check(d.header_bytes() == total);

    // One read.
    ProxyHeaderDecoder whole;
    const auto r = whole.feed(data, size);
    check(r.status == d.status() && r.consumed == total);

    // A byte at a time.
    ProxyHeaderDecoder bytes;
    size_t fed = 0;
    while (fed < size && bytes.status() == Status::need_more) {
        check(bytes.feed(data + fed, 1).consumed == 1);
        ++fed;
    }
    check(bytes.status() == d.status() && fed == total);

    switch (d.status()) {
        case Status::done:
            check(same_header(d.header(), whole.header()));
            check(same_header(d.header(), bytes.header()));
            check_done(d.header(), data, total);
            check(d.error().empty() && d.eof().empty());
            break;
        case Status::error:
            check(one_line(d.error()) && d.error() == whole.error() && d.error() == bytes.error());
            check(d.eof() == d.error());
            break;
        case Status::need_more: {
            check(total == size);
            const std::string_view msg = d.eof();
            check(one_line(msg) && msg.starts_with("short PROXY header"));
            check(d.status() == Status::error);
            break;
        }
    }
    return 0;
}
