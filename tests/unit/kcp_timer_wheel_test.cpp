// The worker's one timer for all KCP sessions (common/kcp/timer_wheel.hpp): every id fires once,
// not before its deadline and at the first expire() at or after it, across rescheduling,
// cancelling, deadlines beyond one turn of the wheel, long sleeps and the u32 clock's wrap; checked
// against a plain list of deadlines on a seeded random schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "common/kcp/segment.hpp"
#include "common/kcp/timer_wheel.hpp"

namespace pfp::kcp {
namespace {

TEST(KcpTimerWheel, FiresOnceAtOrAfterTheDeadline) {
    TimerWheel w(8, 1000);
    w.schedule(1, 1010);
    w.schedule(2, 1005);
    w.schedule(3, 1010 + 5000);  // beyond one turn of 4096 ms
    EXPECT_EQ(w.next_expiry(), 1005u);
    std::vector<TimerWheel::Id> due;
    w.expire(1004, due);
    EXPECT_TRUE(due.empty());
    w.expire(1005, due);
    EXPECT_EQ(due, (std::vector<TimerWheel::Id>{2}));
    due.clear();
    w.expire(1020, due);
    EXPECT_EQ(due, (std::vector<TimerWheel::Id>{1}));
    due.clear();
    w.expire(5500, due);  // id 3 shares a bucket with 1010 + 4096 but is not due
    EXPECT_TRUE(due.empty());
    EXPECT_TRUE(w.scheduled(3));
    w.expire(6010, due);
    EXPECT_EQ(due, (std::vector<TimerWheel::Id>{3}));
    EXPECT_EQ(w.size(), 0u);
    EXPECT_FALSE(w.next_expiry());
}

TEST(KcpTimerWheel, RescheduleCancelAndPastDeadlines) {
    TimerWheel w(4, 0);
    w.schedule(0, 50);
    w.schedule(0, 20);  // replaces
    w.schedule(1, 30);
    w.cancel(1);
    w.cancel(1);        // twice is fine
    w.schedule(9, 10);  // beyond capacity: ignored
    std::vector<TimerWheel::Id> due;
    w.expire(100, due);
    EXPECT_EQ(due, (std::vector<TimerWheel::Id>{0}));
    due.clear();
    w.schedule(2, 50);  // already past: fires at the next expire
    EXPECT_LE(diff32(*w.next_expiry(), 100), 1);
    w.expire(100, due);
    EXPECT_EQ(due, (std::vector<TimerWheel::Id>{2}));
    EXPECT_THROW(TimerWheel(1, 0, 3, 16), std::invalid_argument);
}

TEST(KcpTimerWheel, AgreesWithAPlainListOnARandomScheduleAcrossTheWrap) {
    constexpr size_t kIds = 200;
    std::mt19937 rng(11);
    uint32_t now = UINT32_MAX - 20000;
    TimerWheel w(kIds, now, 4, 256);  // 4 ms ticks, 1024 ms a turn: long deadlines wait turns
    std::map<TimerWheel::Id, uint32_t> model;
    std::vector<TimerWheel::Id> due;
    for (int step = 0; step < 20000; ++step) {
        const TimerWheel::Id id = rng() % kIds;
        switch (rng() % 4) {
            case 0:
            case 1: {
                const uint32_t deadline = now + rng() % (rng() % 8 == 0 ? 10000 : 60);
                w.schedule(id, deadline);
                model[id] = deadline;
                break;
            }
            case 2:
                w.cancel(id);
                model.erase(id);
                break;
            case 3: {
                // Sleep until the wheel's next expiry (never past a due deadline), or a while.
                const auto next = w.next_expiry();
                std::optional<uint32_t> truth;
                for (const auto& [i, d] : model)
                    if (!truth || diff32(d, *truth) < 0) truth = d;
                ASSERT_EQ(next.has_value(), truth.has_value());
                if (next) {
                    ASSERT_LE(diff32(*next, *truth), 0) << "would sleep past a deadline";
                }
                now += next && diff32(*next, now) > 0 ? static_cast<uint32_t>(diff32(*next, now))
                                                      : rng() % 3000;
                due.clear();
                w.expire(now, due);
                std::vector<TimerWheel::Id> expect;
                for (auto it = model.begin(); it != model.end();) {
                    if (diff32(it->second, now) <= 0) {
                        expect.push_back(it->first);
                        it = model.erase(it);
                    } else {
                        ++it;
                    }
                }
                std::sort(due.begin(), due.end());
                ASSERT_EQ(due, expect) << "at step " << step;
                break;
            }
        }
        ASSERT_EQ(w.size(), model.size());
    }
    EXPECT_LT(now, UINT32_MAX - 20000);  // the clock wrapped
}

}  // namespace
}  // namespace pfp::kcp
