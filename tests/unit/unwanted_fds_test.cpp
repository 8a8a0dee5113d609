// The supervisor never takes fds from a worker, and never blocks on one a worker sends anyway:
// the kernel refuses them where it can (SO_PASSRIGHTS), and whatever still arrives is defused
// (SO_LINGER {1, 0}: close returns at once) before it is closed.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.hpp"
#include "common/fd_passing.hpp"
#include "common/ipc.hpp"
#include "tests/support/require.hpp"

namespace pfp {
namespace {

struct Pair {
    unique_fd a, b;
    Pair() {
        int sp[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        a.reset(sp[0]);
        b.reset(sp[1]);
    }
};

TEST(UnwantedFds, KernelRefusesThemWhereItCan) {
    Pair p;
    PFP_REQUIRE(refuse_passed_fds(p.a.get()) ? "" : "SO_PASSRIGHTS (Linux 6.16)");
    int sock[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sock), 0);
    unique_fd x(sock[0]), y(sock[1]);
    EXPECT_THROW(ipc::send(p.b.get(), ipc::Type::stats, "", {x.get()}), system_error);
    // Without fds the channel still works.
    ipc::send(p.b.get(), ipc::Type::ready, "");
    auto m = ipc::receive(p.a.get(), ipc::kMaxFromWorker, 0);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type, ipc::Type::ready);
}

TEST(UnwantedFds, ThoseThatArriveAreDefusedBeforeTheyClose) {
    Pair p;  // no SO_PASSRIGHTS: the fallback path
    int sock[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sock), 0);
    unique_fd kept(sock[0]), peer(sock[1]);
    const linger slow{1, 60};
    ASSERT_EQ(::setsockopt(kept.get(), SOL_SOCKET, SO_LINGER, &slow, sizeof slow), 0);
    ipc::send(p.b.get(), ipc::Type::stats, "", {kept.get()});
    EXPECT_THROW(ipc::receive(p.a.get(), ipc::kMaxFromWorker, 0), ipc::protocol_error);
    // The receiver's copy is gone; the socket they shared no longer lingers.
    linger now{};
    socklen_t len = sizeof now;
    ASSERT_EQ(::getsockopt(kept.get(), SOL_SOCKET, SO_LINGER, &now, &len), 0);
    EXPECT_EQ(now.l_onoff, 1);
    EXPECT_EQ(now.l_linger, 0);
}

}  // namespace
}  // namespace pfp
