#pragma once
// The datagram forwarder's flows: one connected upstream socket per client address, in a table of
// fixed capacity. Flows are ordered by their last datagram (either direction), so the least
// recently active one is at the tail: it is the first to expire, and the one evicted when the table
// is full and nothing has expired. Slots live in a deque (stable addresses: epoll keeps pointers to
// them) and are reused, never freed, so a stale epoll event reaches a live object.
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "common/event_loop.hpp"
#include "common/unique_fd.hpp"
#include "workers/flow_key.hpp"

namespace pfp::worker {

struct Flow;

// Who handles a flow's upstream socket becoming readable (or reporting an ICMP error).
class FlowOwner {
  public:
    virtual void upstream_ready(Flow& f) = 0;

  protected:
    ~FlowOwner() = default;
};

struct Flow final : EventSource {
    static constexpr uint32_t kNone = UINT32_MAX;
    FlowOwner* owner = nullptr;
    FlowKey client;
    unique_fd upstream;
    Clock::time_point last{};  // last datagram either way
    uint32_t slot = kNone;
    uint32_t newer = kNone, older = kNone;  // activity order
    void on_event(uint32_t) override {
        if (upstream) owner->upstream_ready(*this);
    }
};

class FlowTable {
  public:
    explicit FlowTable(size_t capacity) : capacity_(capacity) {}

    size_t size() const { return index_.size(); }
    size_t capacity() const { return capacity_; }
    bool full() const { return index_.size() >= capacity_; }

    Flow* find(const FlowKey& k);
    // A new flow for `k`, most recently active; the table must not be full. Its fd is the
    // caller's to set.
    Flow& insert(const FlowKey& k, Clock::time_point now);
    void touch(Flow& f, Clock::time_point now);  // a datagram passed: most recently active
    void remove(Flow& f);                        // closes its socket, frees the slot
    Flow* least_recent();                        // nullptr when empty
    Flow* most_recent();

  private:
    void unlink(Flow& f);
    void push_front(Flow& f);

    size_t capacity_;
    std::deque<Flow> slots_;
    std::vector<uint32_t> free_;
    std::unordered_map<FlowKey, uint32_t, FlowKeyHash> index_;
    uint32_t newest_ = Flow::kNone, oldest_ = Flow::kNone;
};

}  // namespace pfp::worker
