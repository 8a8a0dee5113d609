#include "workers/route_mtus.hpp"

#include <algorithm>
#include <cstring>

#include "common/tcp_segment.hpp"

namespace pfp::worker {

std::span<const uint8_t> RouteMtus::destination(std::span<const uint8_t> packet) noexcept {
    return (packet[0] >> 4) == 4 ? packet.subspan(16, 4) : packet.subspan(24, 16);
}

size_t RouteMtus::index(std::span<const uint8_t> address) noexcept {
    uint32_t h = 2166136261u;  // FNV-1a: the slot of an address the stream's peer chose
    for (const uint8_t b : address) h = (h ^ b) * 16777619u;
    return h % kSlots;
}

const RouteMtus::Entry* RouteMtus::find(std::span<const uint8_t> address,
                                        Clock::time_point now) const noexcept {
    const Entry& e = entries_[index(address)];
    if (e.length != address.size() || std::memcmp(e.address.data(), address.data(), e.length) != 0)
        return nullptr;
    return now - e.since < kLifetime ? &e : nullptr;
}

RouteMtus::Entry& RouteMtus::slot(std::span<const uint8_t> address,
                                  Clock::time_point now) noexcept {
    Entry& e = entries_[index(address)];
    if (find(address, now) != &e) {
        e = Entry{};
        std::copy(address.begin(), address.end(), e.address.begin());
        e.length = static_cast<uint8_t>(address.size());
        e.since = now;
    }
    return e;
}

RouteMtus::Answer RouteMtus::check(std::span<const uint8_t> packet,
                                   Clock::time_point now) const noexcept {
    if (packet.size() <= kSmallest || !carries_tcp(packet)) return {Verdict::whole};
    const Entry* e = find(destination(packet), now);
    if (!e) return {Verdict::probe};
    if (e->mtu != 0) {
        if (packet.size() <= e->mtu) return {Verdict::whole};
        // A route below IPv6's minimum would cut a 64 KiB packet into more segments than a batch
        // holds: such a packet goes whole, and is refused.
        return e->mtu < kSmallest ? Answer{Verdict::whole} : Answer{Verdict::cut, e->mtu};
    }
    return packet.size() <= e->fits ? Answer{Verdict::whole} : Answer{Verdict::probe};
}

void RouteMtus::fits(std::span<const uint8_t> packet, Clock::time_point now) noexcept {
    Entry& e = slot(destination(packet), now);
    if (e.mtu != 0) return;  // a later probe cannot pass a smaller MTU already reported
    e.fits = std::max(e.fits, static_cast<uint32_t>(packet.size()));
}

void RouteMtus::learned(std::span<const uint8_t> address, size_t mtu,
                        Clock::time_point now) noexcept {
    if (mtu == 0 || (address.size() != 4 && address.size() != 16)) return;
    Entry& e = slot(address, now);
    e.mtu = static_cast<uint32_t>(std::min<size_t>(mtu, UINT32_MAX));
    e.fits = 0;
    e.since = now;
}

}  // namespace pfp::worker
