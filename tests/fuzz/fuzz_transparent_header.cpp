// libFuzzer entry point for the transparent destination header reader (untrusted: it arrives from
// the vsock peer). Byte 0 picks the format (high bit: oyster-v4) and where the rest is split into
// two reads; the decoder must give the same answer for that split, one read and byte-at-a-time,
// never consume more than it is fed, and a decoded destination must encode back to the same bytes.
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "common/allow_list.hpp"
#include "common/transparent_header.hpp"

namespace {

using pfp::TransparentHeaderDecoder;
using Status = TransparentHeaderDecoder::Status;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

bool one_line(std::string_view s) {
    return !s.empty() && s.find('\n') == std::string_view::npos;
}

bool same_destination(const TransparentHeaderDecoder& a, const TransparentHeaderDecoder& b) {
    return a.destination().len == b.destination().len &&
           std::memcmp(&a.destination().storage, &b.destination().storage,
                       sizeof a.destination().storage) == 0;
}

bool is_mapped(const pfp::SockAddr& a) {
    if (a.family() != AF_INET6) return false;
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(sin6->sin6_addr.s6_addr, kPrefix, sizeof kPrefix) == 0;
}

void check_done(const TransparentHeaderDecoder& d, pfp::TransparentHeaderFormat format,
                const uint8_t* header, size_t total) {
    const pfp::SockAddr& dst = d.destination();
    check(d.header_bytes() == total);
    if (format == pfp::TransparentHeaderFormat::oyster_v4) {
        check(total == pfp::kTransparentHeaderOysterSize);
        check(dst.family() == AF_INET && dst.len == sizeof(sockaddr_in));
    } else if (dst.family() == AF_INET) {
        check(total == pfp::kTransparentHeaderV4Size && dst.len == sizeof(sockaddr_in));
    } else {
        check(dst.family() == AF_INET6 && dst.len == sizeof(sockaddr_in6));
        check(total == pfp::kTransparentHeaderV6Size);
    }
    const auto again = pfp::encode_transparent_header(format, dst.get(), dst.len);
    check(again.has_value());
    if (!is_mapped(dst)) {
        check(again->size == total && std::memcmp(again->data(), header, total) == 0);
    } else {
        // Sent as IPv4 instead: same port, and the address is the mapped one's last 4 octets.
        check(again->size == pfp::kTransparentHeaderV4Size);
        check(again->bytes[0] == 0x04 && std::memcmp(&again->bytes[1], header + 1, 4) == 0);
        check(std::memcmp(&again->bytes[5], header + 17, 2) == 0);
    }
    // The egress check on the decoded destination: never throws, and loopback stays denied.
    const pfp::Decision decision = pfp::AllowList::any().decide(dst);
    check(!decision.reason.empty());
    uint16_t port = 0;
    const auto ip = pfp::IpAddress::from_sockaddr(dst.get(), dst.len, &port);
    check(ip.has_value());
    if (!ip->v6 && ip->bytes[0] == 127) check(!decision.allowed());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t control = data[0];
    const auto format = (control & 0x80) ? pfp::TransparentHeaderFormat::oyster_v4
                                         : pfp::TransparentHeaderFormat::standard;
    ++data;
    --size;
    const size_t split = (control & 0x7f) % (size + 1);

    // Two reads, split where byte 0 says.
    TransparentHeaderDecoder d(format);
    const auto first = d.feed(data, split);
    check(first.consumed <= split);
    check(first.status == d.status());
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
    check(total <= size);

    // One read.
    TransparentHeaderDecoder whole(format);
    const auto r = whole.feed(data, size);
    check(r.status == d.status() && r.consumed == total);

    // A byte at a time.
    TransparentHeaderDecoder bytes(format);
    size_t fed = 0;
    while (fed < size && bytes.status() == Status::need_more) {
        check(bytes.feed(data + fed, 1).consumed == 1);
        ++fed;
    }
    check(bytes.status() == d.status() && fed == total);

    switch (d.status()) {
        case Status::done:
            check(same_destination(d, whole) && same_destination(d, bytes));
            check_done(d, format, data, total);
            check(d.error().empty() && d.eof().empty() && d.status() == Status::done);
            break;
        case Status::error:
            check(format == pfp::TransparentHeaderFormat::standard && total == 1);
            check(one_line(d.error()) && d.error() == whole.error());
            check(d.eof() == d.error());
            break;
        case Status::need_more: {
            check(total == size);
            const std::string_view msg = d.eof();
            check(one_line(msg) && msg.starts_with("short transparent header"));
            check(d.status() == Status::error && d.error() == msg);
            break;
        }
    }
    return 0;
}
