// The real pf-proxy-worker given a HANDOVER by the test, as the supervisor would (fd 3 is one end
// of a SOCK_SEQPACKET socketpair): a handover that does not match the kind's row — a wrong role, a
// missing, extra or mistyped fd, a capability the kind does not name — is refused with one line
// naming the fd and its role, exit 78 (never restarted), and the worker never says READY. A
// resource short at setup is exit 75, which pf-proxyd retries until the proxy serves.
#include "common/handover.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "common/ipc.hpp"
#include "harness.hpp"
#include "tests/support/require.hpp"

using namespace pfp::test;
using pfp::Handover;
using pfp::unique_fd;

namespace {

struct WorkerRun {
    int status = -1;  // wait status
    bool ready = false;
    std::string err;  // its stderr
};

// Starts the worker, sends `h` with `fds`, and collects what happens: READY (then it is told the
// supervisor is gone, and drains), or its exit. `in_child` runs after fork, before exec.
WorkerRun run_worker(const Handover& h, const std::vector<int>& fds,
                     const std::function<void()>& in_child = {}) {
    int sp[2], errp[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0 ||
        ::pipe2(errp, O_CLOEXEC) != 0)
        return {};
    const std::string worker = bin_dir() + "/pf-proxy-worker";
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(sp[1], 3);  // dup2 clears close-on-exec on the copy
        ::dup2(errp[1], 2);
        if (in_child) in_child();
        ::execl(worker.c_str(), "pf-proxy-worker", "pf-proxy-worker: test", nullptr);
        _exit(127);
    }
    ::close(sp[1]);
    ::close(errp[1]);
    unique_fd control(sp[0]), err(errp[0]);
    WorkerRun r;
    pfp::ipc::send(control.get(), pfp::ipc::Type::handover, h.to_json(), fds);
    pollfd p{control.get(), POLLIN, 0};
    if (::poll(&p, 1, 20'000) == 1) {
        try {
            auto m = pfp::ipc::receive(control.get(), pfp::ipc::kMaxFromWorker);
            r.ready = m && m->type == pfp::ipc::Type::ready;
        } catch (const std::exception&) {
        }
    }
    control.reset();  // the "supervisor" is gone: a running worker drains and exits
    char buf[4096];
    for (ssize_t n; (n = ::read(err.get(), buf, sizeof buf)) > 0;)
        r.err.append(buf, static_cast<size_t>(n));
    ::waitpid(pid, &r.status, 0);
    return r;
}

uint16_t listening_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

unique_fd tcp_listener() {
    unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd.get(), 16);
    return fd;
}

// A tcp-forward handover for `listener`, exactly as pf-proxyd builds it.
Handover tcp_forward(int listener) {
    Handover h;
    h.proxy = "t";
    h.kind = pfp::WorkerKind::tcp_forward;
    h.generation = 1;
    h.fds = {{pfp::FdRole::stream_listener,
              "tcp:127.0.0.1:" + std::to_string(listening_port(listener))}};
    pfp::StreamOptions o;
    o.upstream = "tcp:127.0.0.1:9";
    h.options = o;
    return h;
}

void become_nobody() {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
        _exit(126);
}

// nobody, holding `cap` permitted, inheritable and ambient: what an exec then starts with.
void become_nobody_with(int cap) {
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) _exit(126);
    become_nobody();
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    data[cap / 32].permitted = data[cap / 32].effective = data[cap / 32].inheritable =
        1U << (cap % 32);
    if (::syscall(SYS_capset, &hdr, data) != 0) _exit(126);
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) _exit(126);
}

int exit_code(int status) {
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

// One line, naming what the worker refused.
void expect_refused(const WorkerRun& r, const std::string& line) {
    EXPECT_FALSE(r.ready) << r.err;
    EXPECT_EQ(exit_code(r.status), 78) << r.err;
    EXPECT_NE(r.err.find("t/0: handover refused: " + line + "\n"), std::string::npos) << r.err;
}

TEST(Handover, MatchingHandoverIsServedAsNobody) {
    unique_fd l = tcp_listener();
    WorkerRun r = run_worker(tcp_forward(l.get()), {l.get()}, become_nobody);
    EXPECT_TRUE(r.ready) << r.err;
    EXPECT_EQ(exit_code(r.status), 0) << r.err;
}

TEST(Handover, WrongRoleInTheTableIsRefused) {
    unique_fd l = tcp_listener();
    Handover h = tcp_forward(l.get());
    h.fds[0].role = pfp::FdRole::datagram_socket;
    expect_refused(run_worker(h, {l.get()}),
                   "fd #0 (datagram socket " + h.fds[0].endpoint +
                       ") has the wrong role: kind tcp-forward takes a listener there");
}

TEST(Handover, SocketThatIsNotWhatItsRoleSaysIsRefused) {
    unique_fd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    unique_fd l = tcp_listener();
    Handover h = tcp_forward(l.get());
    expect_refused(run_worker(h, {udp.get()}),
                   "fd #0 (listener " + h.fds[0].endpoint +
                       "): expected a listening AF_INET SOCK_STREAM socket, got AF_INET "
                       "SOCK_DGRAM");
}

TEST(Handover, MissingFdIsRefused) {
    unique_fd l = tcp_listener();
    Handover h = tcp_forward(l.get());
    expect_refused(run_worker(h, {}), "fd #0 (listener " + h.fds[0].endpoint + ") did not arrive");
}

TEST(Handover, MissingTableEntryIsRefused) {
    unique_fd l = tcp_listener();
    Handover h = tcp_forward(l.get());
    h.fds.clear();
    expect_refused(run_worker(h, {}),
                   "fd #0 (listener) is missing: kind tcp-forward takes listener");
}

TEST(Handover, ExtraFdIsRefused) {
    unique_fd l = tcp_listener(), other = tcp_listener();
    Handover h = tcp_forward(l.get());
    expect_refused(run_worker(h, {l.get(), other.get()}),
                   "fd #1 arrived but the handover lists no fd for it (kind tcp-forward takes "
                   "listener)");
    h.fds.push_back(h.fds[0]);
    expect_refused(
        run_worker(h, {l.get(), other.get()}),
        "fd #1 (listener " + h.fds[0].endpoint + ") is extra: kind tcp-forward takes listener");
}

TEST(Handover, CapabilityTheKindDoesNotNameIsRefused) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root, to start a worker with a capability");
    unique_fd l = tcp_listener();
    WorkerRun r =
        run_worker(tcp_forward(l.get()), {l.get()}, [] { become_nobody_with(CAP_NET_RAW); });
    expect_refused(r, "the worker holds CAP_NET_RAW, which kind tcp-forward does not name");
}

// A worker whose setup runs out of file descriptors exits 75; pf-proxyd restarts it with backoff
// (it used to mark the proxy failed for good), and once the limit allows, the proxy serves.
TEST(Handover, SetupShortOfFdsIsRetriedUntilTheProxyServes) {
    TempDir dir;
    const std::string flag = dir.path() + "/short";
    dir.write("short", "");
    // Fds 0-3 and the listener fill a limit of 6 with epoll; signalfd then has none left.
    const std::string wrapper =
        dir.write("worker.sh", "#!/bin/sh\n[ -e " + flag + " ] && ulimit -n 6\nexec " + bin_dir() +
                                   "/pf-proxy-worker \"$@\"\n");
    ::chmod(wrapper.c_str(), 0755);
    const uint16_t up = free_port(), listen = free_port();
    EchoServer echo(up);
    Daemon d("{\"proxies\": [" + tcp_proxy_json("short", listen, up) + "]}", {"--worker", wrapper});
    ASSERT_TRUE(d.wait_log("exited with status 75 (a resource was short at setup)", 20s, 2))
        << d.log();
    EXPECT_NE(d.log().find("setup failed (will be retried): signalfd: Too many open files"),
              std::string::npos)
        << d.log();
    EXPECT_EQ(d.log().find("failed:"), std::string::npos) << "the proxy was given up\n" << d.log();
    ::unlink(flag.c_str());
    ASSERT_TRUE(d.wait_log("proxy \"short\" worker 0", 20s)) << d.log();
    ASSERT_TRUE(d.wait_ready(30s)) << d.log();
    unique_fd c = connect_tcp(listen);
    ASSERT_TRUE(c);
    ASSERT_TRUE(write_all(c.get(), "ping", 4));
    char buf[4];
    ASSERT_TRUE(read_exact(c.get(), buf, 4)) << d.log();
    EXPECT_EQ(std::string(buf, 4), "ping");
}

}  // namespace
