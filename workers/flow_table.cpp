#include "workers/flow_table.hpp"

#include <stdexcept>

namespace pfp::worker {

Flow* FlowTable::find(const FlowKey& k) {
    const auto it = index_.find(k);
    return it == index_.end() ? nullptr : &slots_[it->second];
}

Flow& FlowTable::insert(const FlowKey& k, Clock::time_point now) {
    if (full()) throw std::logic_error("flow table: insert into a full table");
    uint32_t slot;
    if (!free_.empty()) {
        slot = free_.back();
        free_.pop_back();
    } else {
        slot = static_cast<uint32_t>(slots_.size());
        slots_.emplace_back();
    }
    Flow& f = slots_[slot];
    f.client = k;
    f.slot = slot;
    f.last = now;
    index_.emplace(k, slot);
    push_front(f);
    return f;
}

void FlowTable::touch(Flow& f, Clock::time_point now) {
    f.last = now;
    if (newest_ == f.slot) return;
    unlink(f);
    push_front(f);
}

void FlowTable::remove(Flow& f) {
    unlink(f);
    index_.erase(f.client);
    f.upstream.reset();  // closing the only reference also takes it out of epoll
    free_.push_back(f.slot);
}

Flow* FlowTable::least_recent() {
    return oldest_ == Flow::kNone ? nullptr : &slots_[oldest_];
}

Flow* FlowTable::most_recent() {
    return newest_ == Flow::kNone ? nullptr : &slots_[newest_];
}

void FlowTable::unlink(Flow& f) {
    if (f.newer != Flow::kNone)
        slots_[f.newer].older = f.older;
    else
        newest_ = f.older;
    if (f.older != Flow::kNone)
        slots_[f.older].newer = f.newer;
    else
        oldest_ = f.newer;
    f.newer = f.older = Flow::kNone;
}

void FlowTable::push_front(Flow& f) {
    f.older = newest_;
    f.newer = Flow::kNone;
    if (newest_ != Flow::kNone) slots_[newest_].newer = f.slot;
    newest_ = f.slot;
    if (oldest_ == Flow::kNone) oldest_ = f.slot;
}

}  // namespace pfp::worker
