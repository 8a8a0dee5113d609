// The supervisor's decisions that need no process: exit classification, backoff, permit table.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "common/address_message.hpp"
#include "supervisor/dispatch.hpp"
#include "supervisor/restart_policy.hpp"

using namespace pfp;
using namespace pfp::supervisor;
using namespace std::chrono_literals;

namespace {

int exited(int code) {
    return code << 8;
}
int signaled(int sig) {
    return sig;
}

TEST(SupervisorExit, ClassifiesStatusAndSignals) {
    EXPECT_EQ(classify_exit(signaled(SIGSYS), false).text,
              "killed by signal SIGSYS (seccomp violation)");
    EXPECT_EQ(classify_exit(signaled(SIGSYS), false).cls, ExitClass::failure);
    EXPECT_EQ(classify_exit(signaled(SIGKILL), false).text, "killed by signal SIGKILL");
    EXPECT_EQ(classify_exit(exited(1), false).text, "exited with status 1");
    EXPECT_EQ(classify_exit(exited(1), false).cls, ExitClass::failure);
    EXPECT_EQ(classify_exit(exited(78), false).cls, ExitClass::fatal);
    EXPECT_EQ(classify_exit(exited(77), false).cls, ExitClass::fatal);
    EXPECT_EQ(classify_exit(exited(0), true).cls, ExitClass::stopped);
    EXPECT_EQ(classify_exit(exited(0), false).cls, ExitClass::failure);
    EXPECT_EQ(classify_exit(signaled(SIGKILL), true).cls, ExitClass::stopped);
}

TEST(SupervisorBackoff, DoublesFrom100msTo30sAndResetsAfterHealthyRun) {
    policy::RestartPolicy p;  // defaults: 100 ms doubling to 30 s, healthy after 60 s
    p.max_failures = 20;
    Backoff b(p);
    std::vector<long> delays;
    for (int i = 0; i < 11; ++i) delays.push_back(b.failed(1s)->count());
    EXPECT_EQ(delays, (std::vector<long>{100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000,
                                         30000}));
    EXPECT_EQ(b.failed(61s)->count(), 100) << "a healthy run starts the sequence again";
    EXPECT_EQ(b.consecutive_failures(), 1);
}

TEST(SupervisorBackoff, CrashLoopAfterMaxFailures) {
    policy::RestartPolicy p;
    p.max_failures = 3;
    Backoff b(p);
    EXPECT_TRUE(b.failed(0ms));
    EXPECT_TRUE(b.failed(0ms));
    EXPECT_TRUE(b.failed(0ms));
    EXPECT_FALSE(b.failed(0ms));
}

ipc::Message msg(ipc::Type t, std::string payload = "") {
    ipc::Message m;
    m.type = t;
    m.payload = std::move(payload);
    return m;
}

TEST(SupervisorDispatch, PermitTable) {
    using S = WorkerProcess::State;
    EXPECT_TRUE(permit(S::starting, msg(ipc::Type::ready)).allowed);
    EXPECT_EQ(permit(S::running, msg(ipc::Type::ready)).reason, "READY not allowed while running");
    EXPECT_EQ(permit(S::starting, msg(ipc::Type::ready, "x")).reason,
              "READY with a payload of 1 bytes");
    EXPECT_TRUE(permit(S::running, msg(ipc::Type::stats, std::string(ipc::kStreamStatsSize, '\0')))
                    .allowed);
    EXPECT_TRUE(permit(S::draining, msg(ipc::Type::stats, std::string(ipc::kStreamStatsSize, '\0')))
                    .allowed);
    EXPECT_FALSE(
        permit(S::starting, msg(ipc::Type::stats, std::string(ipc::kStreamStatsSize, '\0')))
            .allowed);
    EXPECT_FALSE(
        permit(S::running, msg(ipc::Type::stats, std::string(ipc::kStreamStatsSize - 1, '\0')))
            .allowed);
    // Each family's STATS has its own size: a packet worker sending a stream worker's is refused.
    const auto packet_stats = [](size_t n) { return msg(ipc::Type::stats, std::string(n, '\0')); };
    EXPECT_TRUE(
        permit(S::running, packet_stats(ipc::kPacketStatsSize), KindFamily::packet).allowed);
    EXPECT_FALSE(
        permit(S::running, packet_stats(ipc::kStreamStatsSize), KindFamily::packet).allowed);
    EXPECT_FALSE(
        permit(S::running, packet_stats(ipc::kPacketStatsSize), KindFamily::stream).allowed);
    EXPECT_EQ(permit(S::running, msg(ipc::Type::handover)).reason,
              "a worker may not send HANDOVER");
    EXPECT_EQ(permit(S::running, msg(ipc::Type::drain)).reason, "a worker may not send DRAIN");
    // A forged address set would steer its siblings' upstreams: never from a worker, in any state.
    const std::string addresses = ipc::encode_addresses({parse_endpoint("tcp:10.0.0.1:443").addr});
    for (const S state : {S::starting, S::running, S::draining}) {
        EXPECT_EQ(permit(state, msg(ipc::Type::addresses, addresses)).reason,
                  "a worker may not send ADDRESSES");
    }
    ipc::Message with_fd = msg(ipc::Type::ready);
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ::close(p[1]);
    with_fd.fds.emplace_back(p[0]);
    EXPECT_EQ(permit(S::starting, with_fd).reason, "a worker never sends file descriptors");
}

}  // namespace
