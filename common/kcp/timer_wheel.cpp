#include "common/kcp/timer_wheel.hpp"

#include <algorithm>
#include <stdexcept>

#include "common/kcp/segment.hpp"

namespace pfp::kcp {

TimerWheel::TimerWheel(size_t capacity, uint32_t now, uint32_t tick_ms, size_t slots)
    : tick_(tick_ms), now_(now), entries_(capacity), slots_(slots) {
    // Powers of two keep the bucket of a time continuous across the u32 clock's wrap.
    auto pow2 = [](uint64_t v) { return v != 0 && (v & (v - 1)) == 0; };
    if (!pow2(tick_ms) || !pow2(slots))
        throw std::invalid_argument("timer wheel: tick and slot count must be powers of two");
}

void TimerWheel::unlink(Id id) noexcept {
    Entry& e = entries_[id];
    auto& bucket = slots_[e.slot];
    const Id last = bucket.back();
    bucket[e.index] = last;
    entries_[last].index = e.index;
    bucket.pop_back();
    e.armed = false;
    --armed_;
}

void TimerWheel::schedule(Id id, uint32_t deadline) {
    if (id >= entries_.size()) return;
    if (entries_[id].armed) unlink(id);
    // A past deadline goes into the current bucket, which the next expire() sweeps first.
    if (diff32(deadline, now_) < 0) deadline = now_;
    Entry& e = entries_[id];
    e.deadline = deadline;
    e.slot = static_cast<uint32_t>(slot_of(deadline));
    e.index = static_cast<uint32_t>(slots_[e.slot].size());
    e.armed = true;
    slots_[e.slot].push_back(id);
    ++armed_;
}

void TimerWheel::cancel(Id id) noexcept {
    if (scheduled(id)) unlink(id);
}

void TimerWheel::expire(uint32_t now, std::vector<Id>& due) {
    if (diff32(now, now_) < 0) return;  // the clock never runs backwards here
    // Sweep each bucket from the last time's to now's, at most one whole turn.
    const uint64_t crossed = (uint64_t{now_ % tick_} + static_cast<uint32_t>(now - now_)) / tick_;
    const uint64_t span = std::min<uint64_t>(crossed + 1, slots_.size());
    size_t slot = slot_of(now_);
    for (uint64_t i = 0; i < span; ++i, slot = (slot + 1) % slots_.size()) {
        auto& bucket = slots_[slot];
        for (size_t j = 0; j < bucket.size();) {
            const Id id = bucket[j];
            if (diff32(entries_[id].deadline, now) <= 0) {
                unlink(id);  // moves the bucket's last entry to j
                due.push_back(id);
            } else {
                ++j;
            }
        }
    }
    now_ = now;
}

std::optional<uint32_t> TimerWheel::next_expiry() const noexcept {
    if (armed_ == 0) return std::nullopt;
    size_t slot = slot_of(now_);
    for (size_t i = 0; i < slots_.size(); ++i, slot = (slot + 1) % slots_.size()) {
        const auto& bucket = slots_[slot];
        if (bucket.empty()) continue;
        std::optional<uint32_t> best;
        for (const Id id : bucket)
            if (!best || diff32(entries_[id].deadline, *best) < 0) best = entries_[id].deadline;
        // An entry of a later turn makes this an early answer (the bucket's end), never a late one.
        const uint32_t bucket_end = now_ - now_ % tick_ + static_cast<uint32_t>(i + 1) * tick_;
        return diff32(*best, bucket_end) < 0 ? *best : bucket_end;
    }
    return std::nullopt;
}

}  // namespace pfp::kcp
