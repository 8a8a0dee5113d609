// A worker's STATS are believed only as far as a worker could have made them: totals never go
// down (so never wrap), grow no faster than any worker could, and never claim more open
// connections than it may hold. Anything else is a protocol violation (the worker is killed).
#include <gtest/gtest.h>

#include "supervisor/supervisor.hpp"

namespace pfp::supervisor {
namespace {

using std::chrono::seconds;

ipc::StreamStats stats(uint64_t accepted, uint64_t active, uint64_t up, uint64_t down) {
    ipc::StreamStats s;
    s.accepted = accepted;
    s.active = active;
    s.bytes_up = up;
    s.bytes_down = down;
    return s;
}

TEST(WorkerStats, GrowthAWorkerCanMakeIsBelieved) {
    EXPECT_EQ(implausible_stats({}, stats(10, 3, 1 << 20, 1 << 30), seconds(1), 100), "");
    EXPECT_EQ(implausible_stats(stats(10, 3, 5, 5), stats(10, 0, 5, 5), seconds(1), 100), "");
    // 100 GiB in one second is a lot, but less than the bound.
    EXPECT_EQ(implausible_stats({}, stats(1, 1, uint64_t{100} << 30, 0), seconds(1), 100), "");
}

TEST(WorkerStats, CountersThatGoDownOrWrapAreRefused) {
    EXPECT_EQ(implausible_stats(stats(10, 0, 500, 0), stats(9, 0, 500, 0), seconds(1), 100),
              "accepted went down from 10 to 9");
    EXPECT_EQ(implausible_stats(stats(1, 0, UINT64_MAX - 5, 0), stats(1, 0, 3, 0), seconds(1), 100),
              "bytes_up went down from 18446744073709551610 to 3");
}

TEST(WorkerStats, AbsurdDeltasAreRefused) {
    EXPECT_EQ(implausible_stats({}, stats(1, 0, 0, UINT64_MAX), seconds(1), 100),
              "bytes_down grew by 18446744073709551615 in 2 s");
    EXPECT_EQ(implausible_stats({}, stats(uint64_t{1} << 40, 0, 0, 0), seconds(0), 100),
              "accepted grew by 1099511627776 in 1 s");
}

TEST(WorkerStats, MoreActiveThanPossibleIsRefused) {
    EXPECT_EQ(implausible_stats({}, stats(500, 101, 0, 0), seconds(1), 100),
              "active 101 is more than the worker can hold");
    EXPECT_EQ(implausible_stats({}, stats(2, 3, 0, 0), seconds(1), 100),
              "active 3 is more than the worker can hold");
}

}  // namespace
}  // namespace pfp::supervisor
