// What pf-proxyd tells systemd over NOTIFY_SOCKET (a fake one the test listens on): READY=1
// with a STATUS= summary, RELOADING=1 then READY=1 around a reload (a refused one too),
// WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1; and that workers see none of it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "activation_env.hpp"
#include "harness.hpp"

using namespace pfp::test;

namespace {

std::string policy(uint16_t listen, uint16_t upstream, const std::string& extra = "") {
    return "{\"proxies\": [{\"name\": \"web\", \"listen\": \"tcp:127.0.0.1:" +
           std::to_string(listen) +
           "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream) + "\"" + extra + "}]}";
}

TEST(Notify, ReadyReloadingWatchdogAndStopping) {
    const uint16_t port = free_port(), upstream = free_port();
    NotifySocket notify;
    ActivationEnv env;
    env.notify_socket(notify.path());
    auto hook = env.hook();
    Daemon d(policy(port, upstream), {}, 0, [hook] {
        hook();
        ::setenv("WATCHDOG_USEC", "200000", 1);  // 200 ms: pings every 100 ms
        ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    });
    int ready = notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); });
    ASSERT_GE(ready, 0) << notify.dump() << d.log();
    EXPECT_EQ(notify.messages()[static_cast<size_t>(ready)].value("STATUS"),
              "1 of 1 proxies running, 0 active connections, policy generation 1");

    // Ping after ping while nothing else happens: the supervisor's idle loop feeds the watchdog
    // (no rate is asserted; each ping only has to come).
    int ping = ready;
    for (int i = 0; i < 5 && ping >= 0; ++i) {
        ping = notify.wait_for([](const NotifyMessage& m) { return m.has("WATCHDOG=1"); }, 20s,
                               static_cast<size_t>(ping) + 1);
    }
    EXPECT_GE(ping, 0) << notify.dump();

    // A reload that changes the proxy: RELOADING=1, then READY=1 once generation 2 is up.
    std::ofstream(d.policy_path()) << policy(port, upstream, ", \"idle_timeout\": \"1m\"");
    size_t from = notify.messages().size();
    d.signal(SIGHUP);
    int reloading =
        notify.wait_for([](const NotifyMessage& m) { return m.has("RELOADING=1"); }, 20s, from);
    ASSERT_GE(reloading, 0) << notify.dump();
    EXPECT_FALSE(notify.messages()[static_cast<size_t>(reloading)].value("MONOTONIC_USEC").empty());
    int again = notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); }, 20s,
                                static_cast<size_t>(reloading) + 1);
    ASSERT_GE(again, 0) << notify.dump();
    EXPECT_NE(
        notify.messages()[static_cast<size_t>(again)].value("STATUS").find("policy generation 2"),
        std::string::npos)
        << notify.dump();

    // A refused reload still ends the RELOADING state with READY=1.
    std::ofstream(d.policy_path()) << "{\"proxies\": 5}";
    from = notify.messages().size();
    d.signal(SIGHUP);
    reloading =
        notify.wait_for([](const NotifyMessage& m) { return m.has("RELOADING=1"); }, 20s, from);
    ASSERT_GE(reloading, 0) << notify.dump();
    again = notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); }, 20s,
                            static_cast<size_t>(reloading) + 1);
    EXPECT_GE(again, 0) << notify.dump();

    // Workers inherit nothing of the service manager's interface.
    const auto workers = d.workers();
    ASSERT_FALSE(workers.empty());
    int checked = 0;
    for (pid_t w : workers) {
        std::vector<std::string> env_of_w;
        try {
            env_of_w = environ_of(w);
        } catch (const std::exception&) {
            continue;  // a worker of the drained generation that has just exited
        }
        ++checked;
        for (const auto& e : env_of_w) {
            EXPECT_FALSE(e.starts_with("NOTIFY_SOCKET=") || e.starts_with("WATCHDOG_") ||
                         e.starts_with("LISTEN_"))
                << e;
        }
    }

    EXPECT_GT(checked, 0);

    from = notify.messages().size();
    d.signal(SIGTERM);
    EXPECT_GE(
        notify.wait_for([](const NotifyMessage& m) { return m.has("STOPPING=1"); }, 20s, from), 0)
        << notify.dump();
    int status = d.wait_exit(20s);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Notify, NoWatchdogWithoutWatchdogUsec) {
    const uint16_t port = free_port(), upstream = free_port();
    NotifySocket notify;
    ActivationEnv env;
    env.notify_socket(notify.path());
    Daemon d(policy(port, upstream), {}, 0, env.hook());
    ASSERT_GE(notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); }), 0)
        << notify.dump();
    // The daemon's whole life, bounded by events rather than a time window: a reload (RELOADING=1,
    // READY=1), then SIGTERM (STOPPING=1) and its exit. No WATCHDOG=1 anywhere in it.
    size_t from = notify.messages().size();
    d.signal(SIGHUP);
    const int reloading =
        notify.wait_for([](const NotifyMessage& m) { return m.has("RELOADING=1"); }, 20s, from);
    ASSERT_GE(reloading, 0) << notify.dump();
    ASSERT_GE(notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); }, 20s,
                              static_cast<size_t>(reloading) + 1),
              0)
        << notify.dump();
    from = notify.messages().size();
    d.signal(SIGTERM);
    ASSERT_GE(
        notify.wait_for([](const NotifyMessage& m) { return m.has("STOPPING=1"); }, 20s, from), 0)
        << notify.dump();
    const int status = d.wait_exit(20s);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    notify.drain();
    for (const auto& m : notify.messages()) EXPECT_FALSE(m.has("WATCHDOG=1")) << notify.dump();
}

}  // namespace
