#pragma once
// One timer for every session of a worker (docs/kcp-tunnel.md, "KCP", Time): each session is
// scheduled at its next_deadline(), and the worker's loop sleeps until next_expiry() and then
// takes the due sessions from expire(). A hashed wheel of `slots` buckets of `tick` ms: schedule
// and cancel are O(1), expire touches only the buckets the clock passed, and a deadline beyond one
// turn of the wheel simply waits in its bucket for later turns.
//
// Times are the worker's u32 millisecond clock, compared with wrap-around (deadlines must lie
// within 2^31 ms of now). Data path: no exceptions after construction (beyond allocation when a
// bucket grows), no I/O.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace pfp::kcp {

class TimerWheel {
  public:
    using Id = uint32_t;  // the caller's session index, < capacity

    TimerWheel(size_t capacity, uint32_t now, uint32_t tick_ms = 1, size_t slots = 4096);

    // (Re)schedules id at `deadline`; a deadline in the past fires at the next expire().
    void schedule(Id id, uint32_t deadline);
    void cancel(Id id) noexcept;
    bool scheduled(Id id) const noexcept { return id < entries_.size() && entries_[id].armed; }

    // Appends every id whose deadline is <= now to `due` (each once; they are no longer scheduled).
    void expire(uint32_t now, std::vector<Id>& due);
    // The earliest time anything may be due: exact for the nearest bucket's entries, or earlier.
    // Nothing if no id is scheduled.
    std::optional<uint32_t> next_expiry() const noexcept;
    size_t size() const noexcept { return armed_; }

  private:
    struct Entry {
        uint32_t deadline = 0;
        uint32_t slot = 0;
        uint32_t index = 0;  // position in slots_[slot]
        bool armed = false;
    };
    size_t slot_of(uint32_t time) const noexcept { return (time / tick_) % slots_.size(); }
    void unlink(Id id) noexcept;

    uint32_t tick_;
    uint32_t now_;  // the last expire()'s time: buckets before it have been swept
    std::vector<Entry> entries_;
    std::vector<std::vector<Id>> slots_;
    size_t armed_ = 0;
};

}  // namespace pfp::kcp
