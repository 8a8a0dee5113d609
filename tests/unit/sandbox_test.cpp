// The sandbox as it runs: every death test forks, runs the real lock_down() in the child and then
// makes its calls. What the tcp-forward loop needs must keep working; the lock-down leaves the
// state /proc shows; bad profiles are loud errors; docs/security.md shows the table. The forbidden
// calls of every kind are in sandbox_kinds_test.cpp.
#include "workers/sandbox.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox_child.hpp"
#include "tests/support/require.hpp"

namespace pfp::sandbox {
namespace {

#if defined(PFPROXY_SANITIZE) && PFPROXY_SANITIZE
constexpr bool kSanitizerBuild = true;
#else
constexpr bool kSanitizerBuild = false;
#endif

using test::kLockDownFailed;

// In the death-test child: lock down as a tcp-forward worker, run `body`, leave with its result.
template <typename Body>
[[noreturn]] void locked(Body body, FilterMode mode = FilterMode::kill) {
    test::locked_as(WorkerKind::tcp_forward, mode, body);
}

// Sanitizer builds admit read-only opens with the exact flags the symbolizer uses, nothing more.
TEST(SandboxTcpForwardDeathTest, SymbolizerOpenOnlyInSanitizerBuilds) {
    auto cloexec_open = [] { return ::openat(AT_FDCWD, "/etc/hostname", O_RDONLY | O_CLOEXEC); };
    if (kSanitizerBuild) {
        EXPECT_EXIT(locked([=] { return cloexec_open() >= 0 ? 0 : 1; }), testing::ExitedWithCode(0),
                    "");
    } else {
        EXPECT_EXIT(locked([=] { return cloexec_open(); }, FilterMode::trap),
                    testing::KilledBySignal(SIGSYS), test::trapped_on(SYS_openat));
    }
    EXPECT_EXIT(
        locked([] { return ::openat(AT_FDCWD, "/tmp", O_RDWR | O_CLOEXEC); }, FilterMode::trap),
        testing::KilledBySignal(SIGSYS), test::trapped_on(SYS_openat));
}

// ---- What the worker needs: must not die ----------------------------------------------------

TEST(SandboxTcpForwardDeathTest, InetSocketsWork) {
    EXPECT_EXIT(locked([] {
                    int v4 = ::socket(AF_INET, SOCK_STREAM, 0);
                    int v4nb = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                    return v4 >= 0 && v4nb >= 0 ? 0 : 1;
                }),
                testing::ExitedWithCode(0), "");
}

TEST(SandboxTcpForwardDeathTest, Inet6SocketWorks) {
    PFP_REQUIRE(::access("/proc/net/if_inet6", F_OK) == 0 ? "" : "IPv6 in this kernel");
    EXPECT_EXIT(locked([] {
                    int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                    return fd >= 0 ? 0 : 1;
                }),
                testing::ExitedWithCode(0), "");
}

TEST(SandboxTcpForwardDeathTest, PipeSpliceWorks) {
    EXPECT_EXIT(
        locked([] {
            int a[2], b[2];
            if (::pipe2(a, O_NONBLOCK | O_CLOEXEC) < 0) return 1;
            if (::pipe2(b, O_NONBLOCK | O_CLOEXEC) < 0) return 2;
            if (::fcntl(a[1], F_SETPIPE_SZ, 256 * 1024) < 256 * 1024) return 3;
            if (::fcntl(a[1], F_GETPIPE_SZ) < 256 * 1024) return 4;
            int fl = ::fcntl(b[0], F_GETFL);
            if (fl < 0 || ::fcntl(b[0], F_SETFL, fl & ~O_NONBLOCK) < 0) return 5;
            const char msg[] = "through the pipes";
            if (::write(a[1], msg, sizeof msg) != sizeof msg) return 6;
            if (::splice(a[0], nullptr, b[1], nullptr, sizeof msg, SPLICE_F_NONBLOCK) != sizeof msg)
                return 7;
            char got[sizeof msg] = {};
            if (::read(b[0], got, sizeof got) != sizeof got) return 8;
            if (std::memcmp(got, msg, sizeof msg) != 0) return 9;
            for (int fd : {a[0], a[1], b[0], b[1]}) ::close(fd);
            return 0;
        }),
        testing::ExitedWithCode(0), "");
}

TEST(SandboxTcpForwardDeathTest, LargeAllocationsWork) {
    EXPECT_EXIT(locked([] {
                    std::vector<std::string> keep;
                    for (int i = 0; i < 20000; ++i) {
                        keep.emplace_back(static_cast<size_t>(i % 4096 + 1), 'x');
                        if (keep.size() > 512) keep.erase(keep.begin());
                    }
                    for (size_t mib : {1, 16, 64, 256}) {
                        auto* p = static_cast<char*>(std::malloc(mib << 20));
                        if (!p) return 1;
                        std::memset(p, 1, mib << 20);
                        p = static_cast<char*>(std::realloc(p, (mib << 20) * 2));  // mremap
                        if (!p || p[(mib << 20) - 1] != 1) return 2;
                        std::free(p);
                    }
                    void* z = std::calloc(1 << 20, 8);
                    std::free(z);
                    return z ? 0 : 3;
                }),
                testing::ExitedWithCode(0), "");
}

// A TCP relay hop on loopback with every call the tcp-forward loop makes after lock-down.
int relay_round_trip(int listener, int ep) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 10;
    int up = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (up < 0) return 11;
    if (::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 && errno != EINPROGRESS)
        return 12;
    auto wait_for = [ep](int fd, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return false;
        epoll_event out{};
        const bool ok = ::epoll_wait(ep, &out, 1, 5000) == 1 && out.data.fd == fd;
        ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        return ok;
    };
    if (!wait_for(listener, EPOLLIN)) return 13;
    sockaddr_in peer{};
    len = sizeof peer;
    int down =
        ::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (down < 0) return 14;
    if (!wait_for(up, EPOLLOUT)) return 15;
    int err = -1;
    len = sizeof err;
    if (::getsockopt(up, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) return 16;
    int one = 1;
    if (::setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) return 17;
    if (::setsockopt(down, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0) return 18;
    sockaddr_in local{}, remote{};
    socklen_t l1 = sizeof local, l2 = sizeof remote;
    if (::getsockname(up, reinterpret_cast<sockaddr*>(&local), &l1) < 0) return 19;
    if (::getpeername(down, reinterpret_cast<sockaddr*>(&remote), &l2) < 0) return 20;
    if (local.sin_port != remote.sin_port) return 21;

    // Echo through a pipe with splice: up -> down (socket) -> pipe -> down -> up.
    int p[2];
    if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return 22;
    const char msg[] = "relayed";
    if (::send(up, msg, sizeof msg, MSG_NOSIGNAL) != sizeof msg) return 23;
    if (!wait_for(down, EPOLLIN)) return 24;
    if (::splice(down, nullptr, p[1], nullptr, 4096, SPLICE_F_NONBLOCK) != sizeof msg) return 25;
    if (::splice(p[0], nullptr, down, nullptr, sizeof msg, SPLICE_F_NONBLOCK) != sizeof msg)
        return 26;
    if (!wait_for(up, EPOLLIN)) return 27;
    char got[sizeof msg] = {};
    if (::recv(up, got, sizeof got, MSG_DONTWAIT) != sizeof got) return 28;
    if (std::memcmp(got, msg, sizeof msg) != 0) return 29;
    if (::shutdown(up, SHUT_WR) < 0) return 30;
    if (!wait_for(down, EPOLLIN) || ::recv(down, got, sizeof got, MSG_DONTWAIT) != 0) return 31;
    for (int fd : {up, down, p[0], p[1]}) ::close(fd);
    return 0;
}

TEST(SandboxTcpForwardDeathTest, TcpRelayHopWorks) {
    EXPECT_EXIT(
        {
            // Like the worker: the listener and the epoll set exist before lock-down.
            int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
                ::listen(listener, 8) < 0)
                _exit(98);
            int ep = ::epoll_create1(EPOLL_CLOEXEC);
            locked([=] { return relay_round_trip(listener, ep); });
        },
        testing::ExitedWithCode(0), "");
}

TEST(SandboxTcpForwardDeathTest, ControlSocketTimersAndStdioWork) {
    EXPECT_EXIT(
        {
            int sv[2];
            if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) _exit(98);
            int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
            locked([=] {
                char byte = 'R';
                iovec iov{&byte, 1};
                msghdr msg{};
                msg.msg_iov = &iov;
                msg.msg_iovlen = 1;
                if (::sendmsg(sv[0], &msg, MSG_NOSIGNAL) != 1) return 1;
                byte = 0;
                if (::recvmsg(sv[1], &msg, 0) != 1 || byte != 'R') return 2;
                itimerspec its{};
                its.it_value.tv_nsec = 1000000;
                if (::timerfd_settime(tfd, 0, &its, nullptr) < 0) return 3;
                if (::timerfd_gettime(tfd, &its) < 0) return 4;
                uint64_t expirations = 0;
                if (::read(tfd, &expirations, sizeof expirations) != sizeof expirations) return 5;
                timespec ts{0, 1000000};
                if (::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr) != 0) return 6;
                if (::clock_gettime(CLOCK_MONOTONIC, &ts) < 0) return 7;
                if (::kill(::getpid(), 0) < 0) return 8;
                if (::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0) < 0) return 9;
                std::printf("sandbox: stdio works after lock-down\n");
                return std::fflush(stdout) == 0 ? 0 : 10;
            });
        },
        testing::ExitedWithCode(0), "");
}

TEST(SandboxTcpForwardDeathTest, AbortRaisesSigabrt) {
    EXPECT_EXIT(locked([] {
                    std::abort();
                    return 0;
                }),
                testing::KilledBySignal(SIGABRT), "");
}

TEST(SandboxTcpForwardDeathTest, LogModeDoesNotKill) {
    EXPECT_EXIT(
        locked([] { return ::socket(AF_UNIX, SOCK_STREAM, 0) >= 0 ? 0 : 1; }, FilterMode::log),
        testing::ExitedWithCode(0), "");
}

// ---- State after lock-down: /proc/self/status ------------------------------------------------

uint64_t status_field(std::string_view status, std::string_view key, bool* found) {
    const std::string needle = "\n" + std::string(key) + ":";
    const auto pos = status.find(needle);
    if (pos == std::string_view::npos) return *found = false, 0;
    const std::string rest(status.substr(pos + needle.size(), 32));
    const int base = key.substr(0, 3) == "Cap" ? 16 : 10;
    return std::strtoull(rest.c_str(), nullptr, base);
}

// Bit set per failed check, so the exit code says which one.
int check_status(int fd, bool expect_no_bounding) {
    std::string text = "\n";
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
        text.append(buf, static_cast<size_t>(n));
    bool found = true;
    int failed = 0;
    if (status_field(text, "CapEff", &found) != 0) failed |= 1;
    if (status_field(text, "CapPrm", &found) != 0) failed |= 2;
    if (status_field(text, "CapAmb", &found) != 0) failed |= 4;
    if (status_field(text, "CapInh", &found) != 0) failed |= 8;
    if (status_field(text, "NoNewPrivs", &found) != 1) failed |= 16;
    if (status_field(text, "Seccomp", &found) != 2) failed |= 32;
    if (expect_no_bounding && status_field(text, "CapBnd", &found) != 0) failed |= 64;
    if (!found) failed |= 128;
    return failed;
}

bool have_effective_cap(int cap) {
    std::ifstream in("/proc/self/status");
    std::stringstream ss;
    ss << "\n" << in.rdbuf();
    bool found = true;
    return (status_field(ss.str(), "CapEff", &found) >> cap) & 1;
}

TEST(SandboxLockDownDeathTest, ProcStatusShowsLockedState) {
    // Root (CAP_SETPCAP) also loses the bounding set; an unprivileged run cannot lower it.
    const bool expect_no_bounding = have_effective_cap(CAP_SETPCAP);
    EXPECT_EXIT(
        {
            // Opened before lock-down (openat is forbidden after); the kernel renders the text
            // at read time, so it shows the locked-down state.
            int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
            if (fd < 0) _exit(98);
            locked([=] { return check_status(fd, expect_no_bounding); });
        },
        testing::ExitedWithCode(0), "");
}

// Child: drop to a profile that keeps CAP_NET_BIND_SERVICE; only that bit may remain.
[[noreturn]] void drop_keeping_bind_service() {
    const Profile keep{.kind = WorkerKind::tcp_forward,
                       .rules = {},
                       .capabilities = {CAP_NET_BIND_SERVICE},
                       .capabilities_why = "test"};
    try {
        drop_capabilities(keep);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        _exit(kLockDownFailed);
    }
    std::ifstream in("/proc/self/status");
    std::stringstream ss;
    ss << "\n" << in.rdbuf();
    const std::string s = ss.str();
    bool found = true;
    const uint64_t bind_bit = uint64_t{1} << CAP_NET_BIND_SERVICE;
    int failed = 0;
    if (status_field(s, "CapEff", &found) != bind_bit) failed |= 1;
    if (status_field(s, "CapPrm", &found) != bind_bit) failed |= 2;
    if (status_field(s, "CapAmb", &found) != 0) failed |= 4;
    if (status_field(s, "CapInh", &found) != 0) failed |= 8;
    if (status_field(s, "CapBnd", &found) != 0) failed |= 16;
    if (!found) failed |= 32;
    _exit(failed);
}

TEST(SandboxCapsDeathTest, KeepsOnlyTheProfilesCapabilities) {
    PFP_REQUIRE(have_effective_cap(CAP_NET_BIND_SERVICE) && have_effective_cap(CAP_SETPCAP)
                    ? ""
                    : "CAP_NET_BIND_SERVICE and CAP_SETPCAP (run as root)");
    EXPECT_EXIT(drop_keeping_bind_service(), testing::ExitedWithCode(0), "");
}

// ---- Errors are loud --------------------------------------------------------------------------

// Runs install_seccomp on a bad profile in a child; exits 0 when it threw naming `expect`.
[[noreturn]] void expect_install_throws(const Profile& bad, const char* expect) {
    try {
        install_seccomp(bad);
    } catch (const std::runtime_error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        _exit(std::strstr(e.what(), expect) ? 0 : 2);
    }
    _exit(1);
}

TEST(SandboxSeccompDeathTest, UnknownSyscallIsAnErrorNamingIt) {
    const Profile bad{.kind = WorkerKind::tcp_forward,
                      .rules = {{.name = "no_such_syscall", .why = "typo"}},
                      .capabilities = {},
                      .capabilities_why = ""};
    EXPECT_EXIT(expect_install_throws(bad, "no_such_syscall"), testing::ExitedWithCode(0),
                "no_such_syscall");
}

TEST(SandboxSeccompDeathTest, MalformedArgumentCheckIsAnError) {
    const Profile bad{.kind = WorkerKind::tcp_forward,
                      .rules = {{.name = "socket", .why = "x", .arg_index = 7, .arg_values = {1}}},
                      .capabilities = {},
                      .capabilities_why = ""};
    EXPECT_EXIT(expect_install_throws(bad, "socket"), testing::ExitedWithCode(0), "socket");
}

// ---- The table and its documentation ----------------------------------------------------------

std::vector<SyscallRule> production_rules(const Profile& p) {
    std::vector<SyscallRule> out;
    for (const auto& r : p.rules) {
        if (r.scope != "sanitizer") out.push_back(r);
    }
    return out;
}

TEST(SandboxProfile, TcpForwardKeepsNoCapabilities) {
    EXPECT_TRUE(profile_for(WorkerKind::tcp_forward).capabilities.empty());
}

TEST(SandboxProfile, SanitizerRulesOnlyInSanitizerBuilds) {
    const auto& p = profile_for(WorkerKind::tcp_forward);
    const size_t sanitizer_rules = p.rules.size() - production_rules(p).size();
    EXPECT_EQ(sanitizer_rules, kSanitizerBuild ? sanitizer_runtime_rules().size() : 0u);
    for (const auto& r : sanitizer_runtime_rules()) {
        EXPECT_EQ(r.why, "sanitizer runtime (sanitizer builds only)") << r.name;
        EXPECT_NE(r.name, "ptrace") << "LeakSanitizer runs with detect_leaks=0 instead";
    }
}

#ifdef PFPROXY_SOURCE_DIR
std::string read_doc() {
    std::ifstream in(std::string(PFPROXY_SOURCE_DIR) + "/docs/security.md");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The text right after `<!-- marker -->` must be exactly `expected`.
void expect_doc_section(const std::string& doc, const std::string& marker,
                        const std::string& expected) {
    const std::string tag = "<!-- " + marker + " -->\n";
    const auto pos = doc.find(tag);
    ASSERT_NE(pos, std::string::npos) << "docs/security.md lacks " << tag;
    EXPECT_EQ(doc.substr(pos + tag.size(), expected.size()), expected)
        << "docs/security.md is out of date; paste this after " << tag << expected;
}

TEST(SandboxProfile, DocsShowTheSameTable) {
    const std::string doc = read_doc();
    ASSERT_FALSE(doc.empty()) << "cannot read docs/security.md";
    for (size_t k = 0; k < kWorkerKindCount; ++k) {
        const Profile& p = profile_for(static_cast<WorkerKind>(k));
        Profile production = p;
        production.rules = production_rules(p);
        expect_doc_section(doc, "profile:" + std::string(kind_name(p.kind)), describe(production));
    }
    expect_doc_section(doc, "profile:sanitizer-runtime", describe_rules(sanitizer_runtime_rules()));
    expect_doc_section(doc, "profile:thread-relay", describe_rules(thread_relay_rules()));
}
#endif

}  // namespace
}  // namespace pfp::sandbox
