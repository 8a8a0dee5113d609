// libFuzzer entry point for the injecting side's packet filters (untrusted: the packets come from
// the stream peer). Byte 0 picks which rules are on; the rest is one packet. filter_packet() must
// not crash or read out of bounds, and its verdict must agree with each rule on its own: a packet
// that passes every rule passes each one alone, a packet dropped for a reason is dropped by that
// rule alone, and with no rule on nothing is dropped.
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/packet_filter.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

pfp::PacketAddress ip(const char* text) {
    auto a = pfp::parse_ip_address(text);
    check(a.has_value());
    return *a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t rules = data[0];
    const std::span<const uint8_t> packet(data + 1, size - 1);

    pfp::PacketFilter dst, src, reserved, ports;
    dst.add_destination(ip("10.0.0.5"));
    dst.add_destination(ip("fd00::5"));
    src.add_source(ip("192.0.2.7"));
    src.add_source(ip("2001:db8::7"));
    reserved.drop_reserved = true;
    for (const auto& r : pfp::kOysterSourcePorts) ports.add_source_ports(r);

    pfp::PacketFilter all;
    if (rules & 1)
        all.destinations = dst.destinations, all.destination_count = dst.destination_count;
    if (rules & 2) all.sources = src.sources, all.source_count = src.source_count;
    if (rules & 4) all.drop_reserved = true;
    if (rules & 8)
        all.source_ports = ports.source_ports, all.source_port_count = ports.source_port_count;

    const pfp::DropReason verdict = pfp::filter_packet(all, packet);
    check(pfp::filter_packet(all, packet) == verdict);  // pure
    check(pfp::drop_reason_name(verdict) != "?");
    if ((rules & 15) == 0) check(verdict == pfp::DropReason::none);
    const pfp::PacketFilter* alone[] = {&dst, &src, &reserved, &ports};
    for (int i = 0; i < 4; ++i) {
        if (!(rules & (1 << i))) continue;
        const pfp::DropReason single = pfp::filter_packet(*alone[i], packet);
        if (verdict == pfp::DropReason::none) check(single == pfp::DropReason::none);
        if (single != pfp::DropReason::none && single != pfp::DropReason::malformed)
            check(verdict != pfp::DropReason::none);
    }
    if (verdict == pfp::DropReason::destination) check(pfp::filter_packet(dst, packet) == verdict);
    if (verdict == pfp::DropReason::source) check(pfp::filter_packet(src, packet) == verdict);
    if (verdict == pfp::DropReason::reserved)
        check(pfp::filter_packet(reserved, packet) == verdict);
    if (verdict == pfp::DropReason::port) check(pfp::filter_packet(ports, packet) == verdict);
    return 0;
}
