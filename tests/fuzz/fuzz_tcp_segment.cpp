// libFuzzer entry point for cutting whole TCP packets (untrusted: the packets come from the
// stream peer). Bytes 0-1 give max_packet; the rest is one packet. segment_tcp() must not crash or
// write out of bounds, and when it cuts: every segment fits max_packet and is one packet by its own
// header's length, and the payloads add up to the original's. The same packet goes through the
// decision "route_mtu": "auto" makes before cutting (workers/route_mtus.hpp), with max_packet as
// the MTU its destination reported: it must not read out of bounds, and it cuts only a packet above
// that MTU, to that MTU.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/tcp_segment.hpp"
#include "workers/route_mtus.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

// What the injector asks of RouteMtus for a packet the framer passed (its version's fixed header
// is there), after the kernel reported max_packet for its destination.
void check_auto_decision(std::span<const uint8_t> packet, size_t max_packet) {
    using pfp::worker::RouteMtus;
    const unsigned version = packet.empty() ? 0 : packet[0] >> 4;
    if ((version != 4 || packet.size() < 20) && (version != 6 || packet.size() < 40)) return;
    RouteMtus mtus;
    const RouteMtus::Clock::time_point now{};
    const RouteMtus::Answer first = mtus.check(packet, now);
    check(first.verdict != RouteMtus::Verdict::cut);  // nothing learned yet
    mtus.learned(RouteMtus::destination(packet), max_packet, now);
    const RouteMtus::Answer a = mtus.check(packet, now);
    if (a.verdict == RouteMtus::Verdict::cut)
        check(a.mtu == max_packet && packet.size() > max_packet && max_packet >= 1280);
    if (packet.size() <= RouteMtus::kSmallest) check(a.verdict == RouteMtus::Verdict::whole);
    if (first.verdict == RouteMtus::Verdict::probe) mtus.fits(packet, now);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const size_t max_packet = size_t{data[0]} << 8 | data[1];
    const std::span<const uint8_t> packet(data + 2, size - 2);
    check_auto_decision(packet, max_packet);
    std::vector<uint8_t> out(packet.size() * 2 + 4096);
    std::vector<size_t> lengths(64);
    const size_t n = pfp::segment_tcp(packet, max_packet, out, lengths);
    if (n == 0) return 0;
    const bool v6 = (packet[0] >> 4) == 6;
    const size_t ip = v6 ? 40 : static_cast<size_t>(packet[0] & 0x0f) * 4;
    const size_t header = ip + static_cast<size_t>(packet[ip + 12] >> 4) * 4;
    size_t at = 0, payload = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* s = out.data() + at;
        check(lengths[i] > header && lengths[i] <= max_packet);
        const size_t said = v6 ? (size_t{s[4]} << 8 | s[5]) + 40 : size_t{s[2]} << 8 | s[3];
        check(said == lengths[i]);
        payload += lengths[i] - header;
        at += lengths[i];
    }
    check(payload == packet.size() - header);
    return 0;
}
