#pragma once
// What a stream-to-raw injector with "route_mtu": "auto" knows of its routes' MTUs, per
// destination address. The kernel refuses a raw packet above its route's device MTU (EMSGSIZE)
// and, with IP_RECVERR / IPV6_RECVERR, reports that MTU on the socket's error queue; a send with
// MSG_PROBE asks the same question without sending. So a large TCP packet to a destination not
// known here is probed once, and the answer kept: the MTU to cut to, or the largest packet that
// went whole. Answers expire after ten minutes (as the kernel's own path MTUs do), so a route
// that changed is asked again; a route whose MTU shrank before that shows as one refused packet,
// whose report is learned like a probe's.
//
// A fixed table, one entry per slot (a colliding destination replaces the older one): a stream
// that names many destinations costs probes, never memory. Data path code: no allocation, no
// exceptions.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

namespace pfp::worker {

class RouteMtus {
  public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::chrono::minutes kLifetime{10};
    // Below this no packet is looked up: IPv6's minimum MTU, which every route to be cut for has.
    static constexpr size_t kSmallest = 1280;

    enum class Verdict {
        whole,  // send it as it is: small, not TCP, known to fit, or too big with no way to cut
        cut,    // cut it to `mtu`
        probe,  // not known: ask the kernel with MSG_PROBE
    };
    struct Answer {
        Verdict verdict;
        size_t mtu = 0;
    };

    // `packet` is an IPv4 or IPv6 packet whose fixed header the framer checked.
    Answer check(std::span<const uint8_t> packet, Clock::time_point now) const noexcept;
    // A probe of this packet passed: packets to its destination up to its size go whole.
    void fits(std::span<const uint8_t> packet, Clock::time_point now) noexcept;
    // The kernel reported `mtu` for the route to this destination (4 or 16 address bytes).
    void learned(std::span<const uint8_t> address, size_t mtu, Clock::time_point now) noexcept;

    // The destination address bytes of a checked packet (4 for IPv4, 16 for IPv6).
    static std::span<const uint8_t> destination(std::span<const uint8_t> packet) noexcept;

  private:
    struct Entry {
        std::array<uint8_t, 16> address{};
        uint8_t length = 0;  // 0: empty
        uint32_t mtu = 0;    // 0: not learned
        uint32_t fits = 0;   // the largest packet that went whole
        Clock::time_point since{};
    };
    static constexpr size_t kSlots = 256;

    const Entry* find(std::span<const uint8_t> address, Clock::time_point now) const noexcept;
    Entry& slot(std::span<const uint8_t> address, Clock::time_point now) noexcept;
    static size_t index(std::span<const uint8_t> address) noexcept;

    std::array<Entry, kSlots> entries_{};
};

}  // namespace pfp::worker
