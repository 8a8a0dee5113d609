// systemd socket activation and the FD store, against the real pf-proxyd: the test plays the
// service manager (sockets at fds 3, 4, ... with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, and a
// NOTIFY_SOCKET that receives READY=1, STOPPING=1 and the listeners pf-proxyd stores).
// AF_VSOCK listeners really bind here, but nothing connects to one (no vsock loopback).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "activation_env.hpp"
#include "harness.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr size_t kBytes = 4 << 20;

std::string q(const std::string& s) {
    return "\"" + s + "\"";
}

std::string tcp(uint16_t port) {
    return "tcp:127.0.0.1:" + std::to_string(port);
}

// One policy entry. `family` empty: a listener pf-proxyd opens itself.
std::string proxy(const std::string& name, const std::string& listen, const std::string& family,
                  uint16_t upstream_port) {
    return "{\"name\": " + q(name) + ", \"listen\": " + q(listen) +
           (family.empty() ? "" : ", \"listen_family\": " + q(family)) +
           ", \"upstream\": " + q(tcp(upstream_port)) + "}";
}

std::string policy(const std::vector<std::string>& proxies) {
    std::string list;
    for (const auto& p : proxies) list += (list.empty() ? "" : ", ") + p;
    return "{\"user\": \"nobody\", \"proxies\": [" + list + "]}";
}

// Sends kBytes through `fd` and checks that exactly the same bytes come back.
void expect_echo(int fd, uint64_t seed, const std::string& what) {
    ASSERT_GE(fd, 0) << what << ": no connection";
    Transfer t = send_and_receive(fd, kBytes, seed);
    EXPECT_TRUE(t.ok) << what;
    EXPECT_EQ(t.received, kBytes) << what;
    EXPECT_EQ(t.received_hash, t.sent_hash) << what;
}

unique_fd connect_tcp6_loopback(uint16_t port) {
    unique_fd s(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    set_timeouts(s.get(), 30s);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return unique_fd();
    return s;
}

bool has_fdname(const NotifyMessage& m, const std::string& name) {
    return m.has("FDNAME=" + name);
}

// Waits until only this process holds socket `ino`.
bool wait_sole_holder(ino_t ino, std::chrono::milliseconds timeout = 20s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    do {
        if (holders_of_socket(ino) == std::vector<pid_t>{::getpid()}) return true;
        std::this_thread::sleep_for(20ms);
    } while (std::chrono::steady_clock::now() < end);
    return false;
}

// The index of the first message from `from` on that stores (FDSTORE=1) or removes
// (FDSTOREREMOVE=1) `name`; -1 after the timeout.
int wait_store_message(NotifySocket& n, const std::string& what, const std::string& name,
                       size_t from = 0, std::chrono::milliseconds timeout = 20s) {
    return n.wait_for(
        [&](const NotifyMessage& m) { return m.has(what + "=1") && has_fdname(m, name); }, timeout,
        from);
}

// pf-proxyd must fail at start-up with exit status 1 and exactly this one error line, leaving
// no process behind and no other holder of the passed socket.
void expect_start_failure(Daemon& d, const std::string& message, ino_t passed,
                          uint16_t self_opened_port) {
    const int status = d.wait_exit();
    ASSERT_NE(status, -1) << "pf-proxyd still runs\n" << d.log();
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status << "\n" << d.log();
    EXPECT_EQ(WEXITSTATUS(status), 1) << d.log();
    const auto errors = lines_with(d.log(), " error: ");
    ASSERT_EQ(errors.size(), 1u) << d.log();
    EXPECT_EQ(message_of(errors[0]), message) << d.log();
    EXPECT_TRUE(lines_with(d.log(), " worker 0 (pid ").empty()) << d.log();
    EXPECT_TRUE(lines_with(d.log(), "proxies ready").empty()) << d.log();
    EXPECT_TRUE(processes_with_cmdline(d.policy_path()).empty());
    EXPECT_EQ(holders_of_socket(passed), std::vector<pid_t>{::getpid()});
    // The proxy before the failing one had opened its own listener: it is closed again.
    unique_fd c;
    EXPECT_EQ(try_connect_tcp(self_opened_port, c), ECONNREFUSED);
}

class Activation : public ::testing::Test {
  protected:
    void SetUp() override {
        upstream_port = free_port();
        own_port = free_port();
    }
    TempDir dir;
    uint16_t upstream_port = 0, own_port = 0;
};

// ---- Socket activation ------------------------------------------------------------------------

TEST_F(Activation, TcpUnixAndVsockListenersFromSystemdBesideASelfOpenedOne) {
    EchoServer server(upstream_port);
    const uint16_t web_port = free_port();
    const std::string unix_path = dir.path() + "/local.sock";
    uint32_t vsock_port = 0;
    unique_fd web = listen_tcp(web_port);
    unique_fd local = listen_unix(unix_path);
    unique_fd guest = listen_vsock_any(vsock_port);
    unique_fd spare = listen_tcp(free_port());

    ActivationEnv env;
    env.pass(web.get(), "web").pass(local.get(), "local").pass(guest.get(), "guest");
    env.pass(spare.get(), "spare");
    Daemon d(policy({proxy("web", "systemd:web", "tcp", upstream_port),
                     proxy("local", "systemd:local", "unix", upstream_port),
                     proxy("guest", "systemd:guest", "vsock", upstream_port),
                     proxy("own", tcp(own_port), "", upstream_port)}),
             {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const std::string log = d.log();

    // Each activated proxy logs where its socket really listens.
    EXPECT_EQ(lines_with(log, "proxy \"web\": tcp-forward systemd:web (" + tcp(web_port) + ") -> " +
                                  tcp(upstream_port))
                  .size(),
              1u)
        << log;
    EXPECT_EQ(lines_with(log, "proxy \"local\": vsock-to-ip systemd:local (unix:" + unix_path +
                                  ") -> " + tcp(upstream_port))
                  .size(),
              1u)
        << log;
    EXPECT_EQ(lines_with(log, "proxy \"guest\": vsock-to-ip systemd:guest (vsock:any:" +
                                  std::to_string(vsock_port) + ") -> " + tcp(upstream_port))
                  .size(),
              1u)
        << log;
    EXPECT_EQ(lines_with(log, "proxy \"own\": tcp-forward " + tcp(own_port) + " -> ").size(), 1u)
        << log;

    // The fd no proxy names: a warning, and it does not stop the others.
    const auto unused = lines_with(log, "passed by systemd is not used by any proxy");
    ASSERT_EQ(unused.size(), 1u) << log;
    EXPECT_NE(unused[0].find(" warning: "), std::string::npos) << unused[0];
    EXPECT_EQ(message_of(unused[0]),
              "fd 6 (FileDescriptorName=spare) passed by systemd is not used by any proxy");

    // Bytes go through the activated TCP and Unix listeners and the self-opened one.
    {
        unique_fd c = connect_tcp(web_port, 30s);
        expect_echo(c.get(), 1, "systemd:web (tcp)");
    }
    {
        unique_fd c = connect_unix(unix_path, 30s);
        expect_echo(c.get(), 2, "systemd:local (unix)");
    }
    {
        unique_fd c = connect_tcp(own_port, 30s);
        expect_echo(c.get(), 3, "own (self-opened tcp)");
    }

    // Each worker holds the very socket systemd passed, and only its own proxy's.
    struct Expect {
        std::string name;
        ino_t ino;
    };
    const std::vector<Expect> passed = {{"web", socket_inode(web.get())},
                                        {"local", socket_inode(local.get())},
                                        {"guest", socket_inode(guest.get())}};
    for (const auto& p : passed) {
        const pid_t w = worker_of(d, p.name);
        ASSERT_GT(w, 0) << p.name << "\n" << log;
        EXPECT_TRUE(
            d.wait_log("proxy \"" + p.name + "\" worker 0 (pid " + std::to_string(w) + ") ready"))
            << log;
        for (const auto& other : passed) {
            EXPECT_EQ(fds_of_socket(w, other.ino).size(), p.name == other.name ? 1u : 0u)
                << "worker of " << p.name << " and the socket of " << other.name;
        }
        EXPECT_TRUE(fds_of_socket(w, socket_inode(spare.get())).empty()) << p.name;
        // sd_listen_fds unset the variables: no worker inherits them.
        for (const auto& var : environ_of(w)) {
            EXPECT_NE(var.rfind("LISTEN_", 0), 0u) << "worker of " << p.name << ": " << var;
        }
    }
    // The supervisor keeps the passed sockets (a reload may hand them out again).
    for (const auto& p : passed) EXPECT_FALSE(fds_of_socket(d.pid(), p.ino).empty()) << p.name;
}

// ---- Sockets that do not fit ------------------------------------------------------------------

TEST_F(Activation, TcpListenerWhereTheProxyNeedsVsockIsRefused) {
    unique_fd passed = listen_tcp(free_port());
    ActivationEnv env;
    env.pass(passed.get(), "guest");
    Daemon d(policy({proxy("own", tcp(own_port), "", upstream_port),
                     proxy("g", "systemd:guest", "vsock", upstream_port)}),
             {}, 0, env.hook());
    expect_start_failure(d,
                         "fd 3 (FileDescriptorName=guest) passed by systemd is AF_INET "
                         "SOCK_STREAM; proxy \"g\" (vsock-to-ip) needs a listening vsock stream "
                         "socket (ListenStream=vsock::PORT)",
                         socket_inode(passed.get()), own_port);
}

TEST_F(Activation, UnixListenerWhereTheProxyNeedsTcpIsRefused) {
    unique_fd other = listen_tcp(free_port());
    unique_fd passed = listen_unix(dir.path() + "/web.sock");
    ActivationEnv env;
    env.pass(other.get(), "other").pass(passed.get(), "web");
    Daemon d(policy({proxy("own", tcp(own_port), "", upstream_port),
                     proxy("w", "systemd:web", "tcp", upstream_port)}),
             {}, 0, env.hook());
    expect_start_failure(d,
                         "fd 4 (FileDescriptorName=web) passed by systemd is AF_UNIX SOCK_STREAM; "
                         "proxy \"w\" (tcp-forward) needs a listening TCP socket (ListenStream=)",
                         socket_inode(passed.get()), own_port);
}

TEST_F(Activation, BoundButNotListeningSocketIsRefused) {
    unique_fd passed = bound_tcp(free_port());
    ActivationEnv env;
    env.pass(passed.get(), "web");
    Daemon d(policy({proxy("own", tcp(own_port), "", upstream_port),
                     proxy("w", "systemd:web", "tcp", upstream_port)}),
             {}, 0, env.hook());
    expect_start_failure(d,
                         "fd 3 (FileDescriptorName=web) passed by systemd is not listening "
                         "(Accept=yes passes connections, not listeners); proxy \"w\" "
                         "(tcp-forward) needs a listening TCP socket (ListenStream=)",
                         socket_inode(passed.get()), own_port);
}

TEST_F(Activation, NameNoPassedSocketHasIsRefused) {
    unique_fd passed = listen_tcp(free_port());
    ActivationEnv env;
    env.pass(passed.get(), "web");
    Daemon d(policy({proxy("own", tcp(own_port), "", upstream_port),
                     proxy("x", "systemd:nosuch", "tcp", upstream_port)}),
             {}, 0, env.hook());
    expect_start_failure(d,
                         "proxy \"x\": systemd passed no socket named nosuch (set "
                         "FileDescriptorName=nosuch in its .socket unit)",
                         socket_inode(passed.get()), own_port);
}

TEST_F(Activation, NoSocketsPassedAtAllIsTheMissingNameError) {
    unique_fd unrelated = listen_tcp(free_port());
    Daemon d(policy({proxy("own", tcp(own_port), "", upstream_port),
                     proxy("x", "systemd:web", "tcp", upstream_port)}),
             {}, 0, ActivationEnv().hook());
    expect_start_failure(d,
                         "proxy \"x\": systemd passed no socket named web (set "
                         "FileDescriptorName=web in its .socket unit)",
                         socket_inode(unrelated.get()), own_port);
}

// ---- FD store ---------------------------------------------------------------------------------

class FdStore : public Activation {
  protected:
    // Runs pf-proxyd on `pol` under a NOTIFY_SOCKET, as systemd would start it the first time,
    // until SIGTERM stopped it. Checks what it tells the service manager about the listener of
    // proxy `name`: FDSTOREREMOVE, then FDSTORE with exactly one fd, which the worker accepts
    // on, then READY=1 with a STATUS=; STOPPING=1 on SIGTERM, exit status 0, and the listener
    // still in the store afterwards (that is what the store is for). Returns it (borrowed from
    // the store), or -1.
    int store_and_stop(const std::string& pol, const std::string& name,
                       const std::function<unique_fd()>& connect) {
        ActivationEnv env;
        env.notify_socket(notify.path());
        Daemon d(pol, {}, 0, env.hook());
        EXPECT_TRUE(d.wait_ready()) << d.log();
        const std::string fdname = "pfp-store." + name;

        const int removed = wait_store_message(notify, "FDSTOREREMOVE", fdname);
        EXPECT_GE(removed, 0) << notify.dump();
        if (removed < 0) return -1;
        EXPECT_TRUE(notify.messages()[static_cast<size_t>(removed)].fds.empty());
        const int store =
            wait_store_message(notify, "FDSTORE", fdname, static_cast<size_t>(removed) + 1);
        EXPECT_GE(store, 0) << notify.dump();
        if (store < 0) return -1;
        const int ready = notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); },
                                          20s, static_cast<size_t>(store) + 1);
        EXPECT_GE(ready, 0) << notify.dump();
        if (ready < 0) return -1;
        for (int i = 0; i < store; ++i)
            EXPECT_FALSE(notify.messages()[static_cast<size_t>(i)].has("READY=1")) << notify.dump();
        EXPECT_FALSE(notify.messages()[static_cast<size_t>(ready)].value("STATUS").empty())
            << notify.dump();

        // Exactly one fd, which the store now holds: a listening stream socket.
        EXPECT_EQ(notify.messages()[static_cast<size_t>(store)].fds.size(), 1u) << notify.dump();
        const auto in_store = notify.stored(fdname);
        EXPECT_EQ(in_store.size(), 1u) << notify.dump();
        if (in_store.size() != 1) return -1;
        const int stored = in_store[0];
        const ino_t ino = socket_inode(stored);
        EXPECT_EQ(int_option(stored, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
        EXPECT_EQ(int_option(stored, SOL_SOCKET, SO_ACCEPTCONN), 1);
        // It is the socket the worker accepts on; the worker has no notify socket of its own.
        const pid_t w = worker_of(d, name);
        EXPECT_GT(w, 0) << d.log();
        if (w > 0) {
            EXPECT_EQ(fds_of_socket(w, ino).size(), 1u);
            for (const auto& var : environ_of(w)) {
                EXPECT_NE(var.rfind("NOTIFY_SOCKET=", 0), 0u) << var;
                EXPECT_NE(var.rfind("LISTEN_", 0), 0u) << var;
            }
        }
        {
            unique_fd c = connect();
            expect_echo(c.get(), 10, "first pf-proxyd");
        }

        d.signal(SIGTERM);
        EXPECT_GE(notify.wait_for([](const NotifyMessage& m) { return m.has("STOPPING=1"); }, 20s,
                                  static_cast<size_t>(ready) + 1),
                  0)
            << notify.dump();
        const int status = d.wait_exit();
        EXPECT_NE(status, -1) << d.log();
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << d.log();
        notify.drain();
        EXPECT_EQ(notify.stored(fdname), std::vector<int>{stored}) << notify.dump();
        EXPECT_TRUE(wait_sole_holder(ino)) << "another process still holds the stored listener";
        return stored;
    }

    // With pf-proxyd gone and the store still listening, a client connects and its bytes wait
    // in the backlog; systemd starts a new pf-proxyd with the store's fds (named as stored),
    // which takes the listener over: the client's bytes come back, and new clients are served.
    void restart(const std::string& pol, const std::string& name, const std::string& listen,
                 const std::function<unique_fd()>& connect) {
        const std::string fdname = "pfp-store." + name;
        ASSERT_EQ(notify.stored(fdname).size(), 1u) << notify.dump();
        const int stored = notify.stored(fdname)[0];
        const ino_t ino = socket_inode(stored);
        const std::string payload(64 << 10, 'q');
        unique_fd queued = connect();
        ASSERT_TRUE(queued) << "the stored listener did not take the connection";
        ASSERT_TRUE(write_all(queued.get(), payload.data(), payload.size()));
        ::shutdown(queued.get(), SHUT_WR);

        const size_t mark = notify.messages().size();
        ActivationEnv env;
        notify.pass_store(env);
        env.notify_socket(notify.path());
        Daemon d(pol, {}, 0, env.hook());
        ASSERT_TRUE(d.wait_ready()) << d.log();
        EXPECT_EQ(lines_with(d.log(), "proxy \"" + name + "\": reusing the listener on " + listen +
                                          " from systemd's FD store")
                      .size(),
                  1u)
            << d.log();
        EXPECT_TRUE(lines_with(d.log(), "not used by any proxy").empty()) << d.log();
        EXPECT_TRUE(lines_with(d.log(), "dropping").empty()) << d.log();

        std::string back;
        EXPECT_TRUE(read_to_eof(queued.get(), back)) << d.log();
        EXPECT_EQ(back.size(), payload.size());
        EXPECT_TRUE(back == payload) << "the queued connection's bytes did not come back";

        const pid_t w = worker_of(d, name);
        ASSERT_GT(w, 0) << d.log();
        EXPECT_EQ(fds_of_socket(w, ino).size(), 1u) << "the worker does not accept on it";
        {
            unique_fd c = connect();
            expect_echo(c.get(), 11, "restarted pf-proxyd");
        }
        // The reused listener stays in the store as it is: neither removed nor stored again.
        ASSERT_GE(
            notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); }, 20s, mark), 0)
            << notify.dump();
        notify.drain();
        for (size_t i = mark; i < notify.messages().size(); ++i)
            EXPECT_FALSE(has_fdname(notify.messages()[i], fdname)) << notify.dump();
        EXPECT_EQ(notify.stored(fdname), std::vector<int>{stored});
    }

    NotifySocket notify;
};

TEST_F(FdStore, TcpListenerKeepsQueuedConnectionsAcrossARestart) {
    EchoServer server(upstream_port);
    const std::string pol = policy({proxy("fwd", tcp(own_port), "", upstream_port)});
    const auto connect = [this] { return connect_tcp(own_port, 30s); };
    const int stored = store_and_stop(pol, "fwd", connect);
    ASSERT_GE(stored, 0);
    ASSERT_FALSE(HasFailure());
    // Bound where the policy says.
    EXPECT_EQ(int_option(stored, SOL_SOCKET, SO_DOMAIN), AF_INET);
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(stored, reinterpret_cast<sockaddr*>(&a), &len), 0);
    EXPECT_EQ(ntohs(a.sin_port), own_port);
    EXPECT_EQ(ntohl(a.sin_addr.s_addr), INADDR_LOOPBACK);

    restart(pol, "fwd", tcp(own_port), connect);
}

TEST_F(FdStore, UnixListenerKeepsQueuedConnectionsAcrossARestart) {
    EchoServer server(upstream_port);
    const std::string path = dir.path() + "/in.sock";
    const std::string pol = policy({proxy("sock", "unix:" + path, "", upstream_port)});
    const auto connect = [&path] { return connect_unix(path, 30s); };
    const int stored = store_and_stop(pol, "sock", connect);
    ASSERT_GE(stored, 0);
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ(int_option(stored, SOL_SOCKET, SO_DOMAIN), AF_UNIX);
    sockaddr_un a{};
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(stored, reinterpret_cast<sockaddr*>(&a), &len), 0);
    EXPECT_STREQ(a.sun_path, path.c_str());

    restart(pol, "sock", "unix:" + path, connect);
}

TEST_F(FdStore, StoredListenerOfAProxyNoLongerInThePolicyIsDropped) {
    EchoServer server(upstream_port);
    const uint16_t old_port = free_port();
    unique_fd old = listen_tcp(old_port);
    const ino_t old_ino = socket_inode(old.get());
    notify.put("pfp-store.old", std::move(old));  // left by an earlier pf-proxyd
    ActivationEnv env;
    notify.pass_store(env);
    env.notify_socket(notify.path());
    Daemon d(policy({proxy("fwd", tcp(own_port), "", upstream_port)}), {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();

    const auto dropped = lines_with(d.log(), "dropping the stored listener pfp-store.old");
    ASSERT_EQ(dropped.size(), 1u) << d.log();
    EXPECT_EQ(message_of(dropped[0]),
              "dropping the stored listener pfp-store.old (fd 3): the policy has no such proxy");
    EXPECT_TRUE(lines_with(d.log(), "not used by any proxy").empty()) << d.log();
    const int removed = wait_store_message(notify, "FDSTOREREMOVE", "pfp-store.old");
    ASSERT_GE(removed, 0) << notify.dump();
    EXPECT_TRUE(notify.messages()[static_cast<size_t>(removed)].fds.empty());
    // The store let it go, pf-proxyd closed its copy and no worker got one: it is closed.
    EXPECT_TRUE(notify.stored("pfp-store.old").empty());
    EXPECT_TRUE(holders_of_socket(old_ino).empty()) << d.log();
    EXPECT_TRUE(wait_refused(old_port));

    // The proxy that is in the policy opened and stored its own listener.
    const int store = wait_store_message(notify, "FDSTORE", "pfp-store.fwd");
    ASSERT_GE(store, 0) << notify.dump();
    EXPECT_EQ(notify.stored("pfp-store.fwd").size(), 1u);
    unique_fd c = connect_tcp(own_port, 30s);
    expect_echo(c.get(), 20, "fwd");
}

TEST_F(FdStore, StoredListenerOnAnotherAddressIsReplacedByANewOne) {
    EchoServer server(upstream_port);
    const uint16_t old_port = free_port();
    unique_fd old = listen_tcp(old_port);
    const ino_t old_ino = socket_inode(old.get());
    notify.put("pfp-store.fwd", std::move(old));  // the policy moved fwd to another port
    ActivationEnv env;
    notify.pass_store(env);
    env.notify_socket(notify.path());
    Daemon d(policy({proxy("fwd", tcp(own_port), "", upstream_port)}), {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_TRUE(lines_with(d.log(), "reusing").empty()) << d.log();
    EXPECT_EQ(lines_with(d.log(),
                         "dropping the stored listener pfp-store.fwd (fd 3): it does not "
                         "listen on tcp:127.0.0.1:" +
                             std::to_string(own_port) + " any more")
                  .size(),
              1u)
        << d.log();

    // The old entry leaves the store, the new listener on the policy's port enters it.
    const int removed = wait_store_message(notify, "FDSTOREREMOVE", "pfp-store.fwd");
    ASSERT_GE(removed, 0) << notify.dump();
    const int store =
        wait_store_message(notify, "FDSTORE", "pfp-store.fwd", static_cast<size_t>(removed) + 1);
    ASSERT_GE(store, 0) << notify.dump();
    const auto in_store = notify.stored("pfp-store.fwd");
    ASSERT_EQ(in_store.size(), 1u) << notify.dump();
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(in_store[0], reinterpret_cast<sockaddr*>(&a), &len), 0);
    EXPECT_EQ(ntohs(a.sin_port), own_port);
    EXPECT_NE(socket_inode(in_store[0]), old_ino);

    EXPECT_TRUE(holders_of_socket(old_ino).empty()) << "pf-proxyd kept the outdated listener";
    EXPECT_TRUE(wait_refused(old_port));
    unique_fd c = connect_tcp(own_port, 30s);
    expect_echo(c.get(), 30, "fwd");
}

TEST_F(FdStore, FirecrackerVsockListenerKeepsQueuedConnectionsAcrossARestart) {
    EchoServer server(upstream_port);
    const std::string uds = dir.path() + "/v.sock";
    const std::string listen = "fc-vsock:" + uds + ":5000";
    const std::string pol = policy({proxy("fc", listen, "", upstream_port)});
    // Firecracker connects to PATH_PORT for a guest's connection to host port PORT.
    const auto connect = [&uds] { return connect_unix(uds + "_5000", 30s); };
    const int stored = store_and_stop(pol, "fc", connect);
    ASSERT_GE(stored, 0);
    ASSERT_FALSE(HasFailure());
    sockaddr_un a{};
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(stored, reinterpret_cast<sockaddr*>(&a), &len), 0);
    EXPECT_EQ(std::string(a.sun_path), uds + "_5000");

    restart(pol, "fc", listen, connect);
}

TEST_F(FdStore, AbstractUnixListenerKeepsQueuedConnectionsAcrossARestart) {
    EchoServer server(upstream_port);
    const std::string name =
        "@pfp-activation-test-" + std::to_string(::getpid()) + "-" + std::to_string(own_port);
    const std::string pol = policy({proxy("abs", "unix:" + name, "", upstream_port)});
    const auto connect = [&name] { return connect_unix(name, 30s); };
    ASSERT_GE(store_and_stop(pol, "abs", connect), 0);
    ASSERT_FALSE(HasFailure());
    restart(pol, "abs", "unix:" + name, connect);
}

TEST_F(FdStore, Ipv6TcpListenerKeepsQueuedConnectionsAcrossARestart) {
    EchoServer server(upstream_port);
    const std::string listen = "tcp:[::1]:" + std::to_string(own_port);
    const std::string pol = policy({proxy("v6", listen, "", upstream_port)});
    const auto connect = [this] { return connect_tcp6_loopback(own_port); };
    const int stored = store_and_stop(pol, "v6", connect);
    ASSERT_GE(stored, 0);
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ(int_option(stored, SOL_SOCKET, SO_DOMAIN), AF_INET6);
    restart(pol, "v6", listen, connect);
}

// Nothing can connect to a vsock listener on this host: the store round trip is checked by
// which socket the new worker holds.
TEST_F(FdStore, VsockListenerIsStoredAndReused) {
    uint32_t port = 0;
    listen_vsock_any(port);  // a port the kernel considers free, closed again
    const std::string listen = "vsock:any:" + std::to_string(port);
    const std::string pol = policy({proxy("guest", listen, "", upstream_port)});
    ino_t ino = 0;
    {
        ActivationEnv env;
        env.notify_socket(notify.path());
        Daemon d(pol, {}, 0, env.hook());
        ASSERT_TRUE(d.wait_ready()) << d.log();
        ASSERT_GE(wait_store_message(notify, "FDSTORE", "pfp-store.guest"), 0) << notify.dump();
        const auto in_store = notify.stored("pfp-store.guest");
        ASSERT_EQ(in_store.size(), 1u) << notify.dump();
        EXPECT_EQ(int_option(in_store[0], SOL_SOCKET, SO_DOMAIN), AF_VSOCK);
        EXPECT_EQ(int_option(in_store[0], SOL_SOCKET, SO_ACCEPTCONN), 1);
        ino = socket_inode(in_store[0]);
        const pid_t w = worker_of(d, "guest");
        ASSERT_GT(w, 0) << d.log();
        EXPECT_EQ(fds_of_socket(w, ino).size(), 1u);
        d.signal(SIGTERM);
        const int status = d.wait_exit();
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << d.log();
    }
    ASSERT_TRUE(wait_sole_holder(ino));
    ActivationEnv env;
    notify.pass_store(env);
    env.notify_socket(notify.path());
    Daemon d(pol, {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_TRUE(d.wait_log("proxy \"guest\": reusing the listener on " + listen +
                           " from systemd's FD store"))
        << d.log();
    const pid_t w = worker_of(d, "guest");
    ASSERT_GT(w, 0) << d.log();
    EXPECT_EQ(fds_of_socket(w, ino).size(), 1u) << "the new worker does not hold the stored one";
}

// ---- Reloads ----------------------------------------------------------------------------------

TEST_F(FdStore, ProxyRemovedByAReloadLeavesTheStore) {
    EchoServer server(upstream_port);
    const uint16_t gone_port = free_port();
    ActivationEnv env;
    env.notify_socket(notify.path());
    Daemon d(policy({proxy("fwd", tcp(own_port), "", upstream_port),
                     proxy("gone", tcp(gone_port), "", upstream_port)}),
             {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const int stored = wait_store_message(notify, "FDSTORE", "pfp-store.gone");
    ASSERT_GE(stored, 0) << notify.dump();
    ASSERT_EQ(notify.stored("pfp-store.gone").size(), 1u);

    ASSERT_TRUE(d.rewrite_policy(policy({proxy("fwd", tcp(own_port), "", upstream_port)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("reload: proxy \"gone\" removed")) << d.log();
    EXPECT_GE(wait_store_message(notify, "FDSTOREREMOVE", "pfp-store.gone",
                                 static_cast<size_t>(stored) + 1),
              0)
        << notify.dump();
    EXPECT_TRUE(notify.stored("pfp-store.gone").empty());
    // With the store's copy gone too, clients are refused rather than queued for nobody.
    EXPECT_TRUE(wait_refused(gone_port)) << d.log();
    // The proxy that stays is left alone in the store.
    notify.drain();
    for (size_t i = static_cast<size_t>(stored) + 1; i < notify.messages().size(); ++i)
        EXPECT_FALSE(has_fdname(notify.messages()[i], "pfp-store.fwd")) << notify.dump();
    EXPECT_EQ(notify.stored("pfp-store.fwd").size(), 1u);
    unique_fd c = connect_tcp(own_port, 30s);
    expect_echo(c.get(), 40, "fwd");
}

TEST_F(Activation, PassedSocketNoProxyUsedIsTakenByAProxyAReloadAdds) {
    EchoServer server(upstream_port);
    const uint16_t spare_port = free_port();
    unique_fd spare = listen_tcp(spare_port);
    ActivationEnv env;
    env.pass(spare.get(), "spare");
    Daemon d(policy({proxy("own", tcp(own_port), "", upstream_port)}), {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_TRUE(
        d.wait_log("fd 3 (FileDescriptorName=spare) passed by systemd is not used by any "
                   "proxy"))
        << d.log();

    ASSERT_TRUE(d.rewrite_policy(policy({proxy("own", tcp(own_port), "", upstream_port),
                                         proxy("late", "systemd:spare", "tcp", upstream_port)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("reload: proxy \"late\" added")) << d.log();
    ASSERT_TRUE(d.wait_log("proxies ready", 20s, 2)) << d.log();
    const pid_t w = worker_of(d, "late");
    ASSERT_GT(w, 0) << d.log();
    EXPECT_EQ(fds_of_socket(w, socket_inode(spare.get())).size(), 1u);
    unique_fd c = connect_tcp(spare_port, 30s);
    expect_echo(c.get(), 50, "late (systemd:spare)");
}

// ---- Store consistency across refused reloads, and socket files of reused listeners -----------

// A reload that changes fwd's port and is then refused (another proxy's socket is missing) must
// leave the store as it was: the running fwd still listens on the old port and a restart should
// find that listener in the store. The refused reload's clean-up instead removes pfp-store.fwd
// (ListenerSource::release of the listener the reload had opened and stored under the same name).
TEST_F(FdStore, RefusedReloadLeavesTheRunningListenerInTheStore) {
    EchoServer server(upstream_port);
    ActivationEnv env;
    env.notify_socket(notify.path());
    Daemon d(policy({proxy("fwd", tcp(own_port), "", upstream_port)}), {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_GE(wait_store_message(notify, "FDSTORE", "pfp-store.fwd"), 0) << notify.dump();
    const pid_t w = worker_of(d, "fwd");
    ASSERT_GT(w, 0);

    ASSERT_TRUE(d.rewrite_policy(policy({proxy("fwd", tcp(free_port()), "", upstream_port),
                                         proxy("x", "systemd:nosuch", "tcp", upstream_port)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("refused: proxy \"x\": systemd passed no socket named nosuch"))
        << d.log();
    ASSERT_GE(notify.wait_for([](const NotifyMessage& m) { return m.has("READY=1"); }, 20s, 1), 0)
        << notify.dump();
    notify.drain();
    // fwd still runs on its old listener, and that listener is what the store holds.
    const auto in_store = notify.stored("pfp-store.fwd");
    ASSERT_EQ(in_store.size(), 1u) << notify.dump();
    EXPECT_EQ(fds_of_socket(w, socket_inode(in_store[0])).size(), 1u) << notify.dump();
    unique_fd c = connect_tcp(own_port, 30s);
    expect_echo(c.get(), 60, "fwd after the refused reload");
}

// The socket file's mode comes from the policy: a restart that reuses the stored Unix listener
// under a policy with another socket_mode must apply it (here 0600 -> 0666), as opening a new
// listener would. The reuse path keeps the file as the earlier pf-proxyd left it.
TEST_F(FdStore, ReusedUnixListenerGetsThePolicysSocketMode) {
    EchoServer server(upstream_port);
    const std::string path = dir.path() + "/in.sock";
    const auto with_mode = [&](const std::string& mode) {
        return "{\"user\": \"nobody\", \"proxies\": [{\"name\": \"sock\", \"listen\": " +
               q("unix:" + path) + ", \"socket_mode\": " + q(mode) +
               ", \"upstream\": " + q(tcp(upstream_port)) + "}]}";
    };
    const auto connect = [&path] { return connect_unix(path, 30s); };
    ASSERT_GE(store_and_stop(with_mode("0600"), "sock", connect), 0);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600u);

    ActivationEnv env;
    notify.pass_store(env);
    env.notify_socket(notify.path());
    Daemon d(with_mode("0666"), {}, 0, env.hook());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_TRUE(d.wait_log("reusing the listener on unix:" + path)) << d.log();
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0666u);
}

}  // namespace
