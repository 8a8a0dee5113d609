// Death tests over every worker kind's profile: each forbidden call ends the child with SIGSYS,
// and a second run of the same child under FilterMode::trap shows that the call the test names is
// the one the filter refused (not an earlier call on the way to it). The forbidden socket domains
// and getsockopt options of a kind are what its profile does not allow; the rest is the same for
// every kind. What each kind needs must keep working.
#include <fcntl.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstring>
#include <functional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sandbox_child.hpp"
#include "tests/support/require.hpp"
#include "workers/sandbox.hpp"

namespace pfp::sandbox {
namespace {

using test::locked_as;
using test::trapped_on;

// What the child takes before lock-down, as a worker does (pids and sockets cannot be had after).
struct Before {
    pid_t parent;  // the test process: stands for the supervisor
    int inet;      // an AF_INET stream socket
};

struct Case {
    size_t kind;  // index into the worker kinds
    std::string name;
    long nr;  // the syscall the filter must refuse
    std::function<long(const Before&)> call;
};

WorkerKind kind_at(size_t i) {
    return static_cast<WorkerKind>(i);
}

// gtest prints a failing parameter with this instead of its bytes.
void PrintTo(const Case& c, std::ostream* os) {
    *os << kind_name(kind_at(c.kind)) << " " << c.name << " (syscall " << c.nr << ")";
}

std::string test_name(std::string s) {
    std::replace_if(
        s.begin(), s.end(), [](char c) { return !std::isalnum(c); }, '_');
    return s;
}

std::vector<SyscallRule> production_rules(const Profile& p) {
    std::vector<SyscallRule> out;
    for (const auto& r : p.rules) {
        if (r.scope != "sanitizer") out.push_back(r);
    }
    return out;
}

// socket() domains the profile allows (argument 0 of its socket rules).
std::set<uint64_t> allowed_domains(const Profile& p) {
    std::set<uint64_t> out;
    for (const auto& r : production_rules(p)) {
        if (r.name == "socket" && r.arg_index == 0)
            out.insert(r.arg_values.begin(), r.arg_values.end());
    }
    return out;
}

// (level, optname) pairs getsockopt may read.
std::set<std::pair<uint64_t, uint64_t>> allowed_getsockopt(const Profile& p) {
    std::set<std::pair<uint64_t, uint64_t>> out;
    for (const auto& r : production_rules(p)) {
        if (r.name != "getsockopt" || r.arg_index != 1 || r.arg2_index != 2) continue;
        for (uint64_t level : r.arg_values)
            for (uint64_t opt : r.arg2_values) out.emplace(level, opt);
    }
    return out;
}

struct Named {
    int value;
    const char* name;
};
constexpr Named kDomains[] = {{AF_UNIX, "unix"},     {AF_INET, "inet"},
                              {AF_INET6, "inet6"},   {AF_VSOCK, "vsock"},
                              {AF_PACKET, "packet"}, {AF_NETLINK, "netlink"},
                              {AF_KEY, "key"},       {AF_BLUETOOTH, "bluetooth"}};
constexpr Named kLevels[] = {
    {SOL_SOCKET, "sol_socket"}, {IPPROTO_IP, "ip"}, {IPPROTO_IPV6, "ipv6"}, {IPPROTO_TCP, "tcp"}};

// The cases every kind shares: files, programs, processes, signals to others, executable memory,
// listening, socket options outside the relay's.
void add_common(size_t k, std::vector<Case>& out) {
    auto add = [&](std::string name, long nr, std::function<long(const Before&)> f) {
        out.push_back({k, std::move(name), nr, std::move(f)});
    };
    add("openat", SYS_openat,
        [](const Before&) { return ::openat(AT_FDCWD, "/etc/hostname", O_RDONLY); });
    add("open", SYS_open,
        [](const Before&) { return ::syscall(SYS_open, "/etc/hostname", O_RDONLY | O_CLOEXEC); });
    add("execve", SYS_execve, [](const Before&) {
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        return ::execve("/bin/true", argv, environ);
    });
    add("fork", SYS_clone, [](const Before&) { return static_cast<long>(::fork()); });
    add("kill_parent", SYS_kill, [](const Before& b) { return ::kill(b.parent, 0); });
    add("kill_parent_group", SYS_kill, [](const Before& b) { return ::kill(-b.parent, 0); });
    add("kill_process_group", SYS_kill, [](const Before&) { return ::kill(0, 0); });
    add("kill_everyone", SYS_kill, [](const Before&) { return ::kill(-1, 0); });
    add("kill_init", SYS_kill, [](const Before&) { return ::kill(1, 0); });
    add("tgkill_parent", SYS_tgkill,
        [](const Before& b) { return ::syscall(SYS_tgkill, b.parent, b.parent, 0); });
    // Another tgid with the child's own tid: only the tgid argument makes it forbidden.
    add("tgkill_other_tgid", SYS_tgkill,
        [](const Before& b) { return ::syscall(SYS_tgkill, b.parent, ::gettid(), 0); });
    add("tkill", SYS_tkill, [](const Before&) { return ::syscall(SYS_tkill, ::gettid(), 0); });
    add("mmap_exec", SYS_mmap, [](const Before&) {
        void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? -1L : 0L;
    });
    add("mprotect_exec", SYS_mprotect, [](const Before&) {
        void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 3L;
        return static_cast<long>(::mprotect(p, 4096, PROT_READ | PROT_EXEC));
    });
    add("bind", SYS_bind, [](const Before& b) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return ::bind(b.inet, reinterpret_cast<sockaddr*>(&a), sizeof a);
    });
    add("listen", SYS_listen, [](const Before& b) { return ::listen(b.inet, 1); });
    add("setsockopt_ip_ttl", SYS_setsockopt, [](const Before& b) {
        int ttl = 1;
        return ::setsockopt(b.inet, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
    });
    add("fcntl_dupfd", SYS_fcntl, [](const Before&) { return ::fcntl(0, F_DUPFD, 100); });
    add("ptrace", SYS_ptrace,
        [](const Before&) { return ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); });
    add("prctl", SYS_prctl,
        [](const Before&) { return ::syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0); });
    add("capset", SYS_capset, [](const Before&) {
        __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct d[2]{};
        return ::syscall(SYS_capset, &h, d);
    });
    add("unshare", SYS_unshare, [](const Before&) { return static_cast<long>(::unshare(0)); });
}

// The socket type a kind creates for its upstreams, and the one it may not: SOCK_DGRAM for the
// datagram family and kcp-client (UDP toward its server), SOCK_STREAM for the rest.
bool is_datagram(size_t k) {
    const KindRow& row = kind_row(kind_at(k));
    return row.family == KindFamily::datagram ||
           (row.family == KindFamily::tunnel && row.listen == ListenSide::tcp);
}
bool relays_no_streams(size_t k) {
    return kind_row(kind_at(k)).family == KindFamily::datagram;
}
bool is_tunnel(size_t k) {
    return kind_row(kind_at(k)).family == KindFamily::tunnel;
}
int own_type(size_t k) {
    return is_datagram(k) ? SOCK_DGRAM : SOCK_STREAM;
}

// A datagram kind relays no streams: no accept, half-close, splice or pipes. A tunnel relays
// streams through user space: no splice or pipes either, and kcp-server accepts nothing.
void add_datagram(size_t k, std::vector<Case>& out) {
    if (!relays_no_streams(k) && !is_tunnel(k)) return;
    const Profile& profile = profile_for(kind_at(k));
    auto add = [&](std::string name, long nr, std::function<long(const Before&)> f) {
        // A sanitizer build allows some of these for its runtime (pipe2): not a case there.
        for (const auto& r : profile.rules)
            if (r.name == name && r.arg_index < 0) return;
        out.push_back({k, std::move(name), nr, std::move(f)});
    };
    if (kind_row(kind_at(k)).listen != ListenSide::tcp)
        add("accept4", SYS_accept4,
            [](const Before& b) { return ::accept4(b.inet, nullptr, nullptr, SOCK_NONBLOCK); });
    // shutdown and setsockopt: add_per_kind, for every kind whose profile lacks them.
    add("pipe2", SYS_pipe2, [](const Before&) {
        int p[2];
        return static_cast<long>(::pipe2(p, O_CLOEXEC));
    });
    add("splice", SYS_splice, [](const Before& b) {
        return static_cast<long>(::splice(b.inet, nullptr, b.inet, nullptr, 1, 0));
    });
}

// The cases that follow from the kind's profile: every socket domain it does not allow, a socket
// of the other type (stream or datagram) in one it does, and for every option level an optname
// it may not read.
void add_per_kind(size_t k, std::vector<Case>& out) {
    const Profile& p = profile_for(kind_at(k));
    const auto domains = allowed_domains(p);
    for (const auto& d : kDomains) {
        if (domains.count(static_cast<uint64_t>(d.value)) != 0) continue;
        const int domain = d.value;
        out.push_back({k, std::string("socket_") + d.name, SYS_socket, [domain](const Before&) {
                           return static_cast<long>(
                               ::socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
                       }});
    }
    if (!domains.empty()) {
        const int domain = static_cast<int>(*domains.begin());
        const int other = is_datagram(k) ? SOCK_STREAM : SOCK_DGRAM;
        out.push_back(
            {k,
             is_datagram(k) ? "socket_stream_in_allowed_domain" : "socket_dgram_in_allowed_domain",
             SYS_socket, [domain, other](const Before&) {
                 return static_cast<long>(::socket(domain, other, 0));
             }});
    }
    // A kind that makes no upstream connection (the packet injector) may not connect, set even
    // keep-alive, or shut a socket down.
    auto has = [&p](std::string_view name) {
        const auto rules = production_rules(p);
        return std::any_of(rules.begin(), rules.end(),
                           [name](const SyscallRule& r) { return r.name == name; });
    };
    if (!has("connect"))
        out.push_back({k, "connect", SYS_connect, [](const Before& b) {
                           sockaddr_in a{};
                           a.sin_family = AF_INET;
                           a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                           a.sin_port = htons(9);
                           return static_cast<long>(
                               ::connect(b.inet, reinterpret_cast<sockaddr*>(&a), sizeof a));
                       }});
    if (!has("setsockopt"))
        out.push_back({k, "setsockopt_keepalive", SYS_setsockopt, [](const Before& b) {
                           int one = 1;
                           return static_cast<long>(
                               ::setsockopt(b.inet, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
                       }});
    if (!has("shutdown"))
        out.push_back({k, "shutdown", SYS_shutdown, [](const Before& b) {
                           return static_cast<long>(::shutdown(b.inet, SHUT_RDWR));
                       }});
    // Batched reads belong to the datagram, tunnel and kernel-to-stream kinds only.
    if (!has("recvmmsg"))
        out.push_back({k, "recvmmsg", SYS_recvmmsg, [](const Before& b) {
                           char byte = 0;
                           iovec iov{&byte, 1};
                           mmsghdr m{};
                           m.msg_hdr.msg_iov = &iov;
                           m.msg_hdr.msg_iovlen = 1;
                           return static_cast<long>(
                               ::recvmmsg(b.inet, &m, 1, MSG_DONTWAIT, nullptr));
                       }});
    const auto options = allowed_getsockopt(p);
    for (const auto& level : kLevels) {
        int opt = 1;
        while (options.count({static_cast<uint64_t>(level.value), static_cast<uint64_t>(opt)}) != 0)
            ++opt;
        const int lv = level.value;
        out.push_back({k, std::string("getsockopt_") + level.name + "_" + std::to_string(opt),
                       SYS_getsockopt, [lv, opt](const Before& b) {
                           int v = 0;
                           socklen_t len = sizeof v;
                           return static_cast<long>(::getsockopt(b.inet, lv, opt, &v, &len));
                       }});
    }
}

std::vector<Case> every_case() {
    std::vector<Case> out;
    for (size_t k = 0; k < kWorkerKindCount; ++k) {
        add_per_kind(k, out);
        add_common(k, out);
        add_datagram(k, out);
    }
    return out;
}

// The child: takes what it needs before lock-down, then makes the one call. A call that returns
// (allowed after all) exits 1 or 2 instead of dying.
[[noreturn]] void run_case(const Case& c, FilterMode mode) {
    const Before before{::getppid(), ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (before.inet < 0) _exit(test::kLockDownFailed);
    locked_as(kind_at(c.kind), mode, [&] { return c.call(before) < 0 ? 2 : 1; });
}

class SandboxKindDeathTest : public testing::TestWithParam<Case> {};

TEST_P(SandboxKindDeathTest, DiesOnTheNamedSyscall) {
    const Case& c = GetParam();
    // The production filter: killed.
    EXPECT_EXIT(run_case(c, FilterMode::kill), testing::KilledBySignal(SIGSYS), "");
    // The same rules with a trapping default: the refused call is the one named.
    EXPECT_EXIT(run_case(c, FilterMode::trap), testing::KilledBySignal(SIGSYS), trapped_on(c.nr));
}

INSTANTIATE_TEST_SUITE_P(EveryKind, SandboxKindDeathTest, testing::ValuesIn(every_case()),
                         [](const testing::TestParamInfo<Case>& tp) {
                             return test_name(std::string(kind_name(kind_at(tp.param.kind))) + "_" +
                                              tp.param.name);
                         });

// The trap reporter itself: a child trapped on getppid (allowed nowhere) names exactly that
// call, and a death test that expects another call fails on it.
[[noreturn]] void trapped_on_getppid() {
    locked_as(WorkerKind::tcp_forward, FilterMode::trap,
              [] { return static_cast<int>(::syscall(SYS_getppid)); });
}

TEST(SandboxTrapDeathTest, ReportsTheRefusedCallOnly) {
    EXPECT_EXIT(trapped_on_getppid(), testing::KilledBySignal(SIGSYS), trapped_on(SYS_getppid));
    EXPECT_NONFATAL_FAILURE(
        EXPECT_EXIT(trapped_on_getppid(), testing::KilledBySignal(SIGSYS), trapped_on(SYS_kill)),
        "seccomp trap: syscall=" + std::to_string(SYS_getppid));
}

// ---- What every kind needs: must not die ---------------------------------------------------

class SandboxKindWorks : public testing::TestWithParam<size_t> {};

// Sockets in every allowed domain, every allowed getsockopt, signals to itself.
TEST_P(SandboxKindWorks, AllowedCallsDoNotKill) {
    const size_t k = GetParam();
    const Profile& p = profile_for(kind_at(k));
    const auto domains = allowed_domains(p);
    const auto options = allowed_getsockopt(p);
    // Exactly the row's upstream domains: none for the injector, whose sockets are handed over.
    const std::set<uint64_t> expected(kind_row(p.kind).upstream_domains.begin(),
                                      kind_row(p.kind).upstream_domains.end());
    EXPECT_EQ(domains, expected) << kind_name(p.kind);
    EXPECT_EXIT(
        {
            const int inet = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            locked_as(kind_at(k), FilterMode::trap, [&] {
                for (uint64_t d : domains) {
                    const int fd = ::socket(static_cast<int>(d),
                                            own_type(k) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                    // An address family this kernel lacks fails with an error, not SIGSYS.
                    if (fd >= 0) ::close(fd);
                }
                if (is_datagram(k)) {
                    // A flow: a connected UDP socket, batched writes and reads.
                    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                    sockaddr_in a{};
                    a.sin_family = AF_INET;
                    a.sin_port = htons(9);
                    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return 5;
                    char byte = 0;
                    iovec iov{&byte, 1};
                    mmsghdr m{};
                    m.msg_hdr.msg_iov = &iov;
                    m.msg_hdr.msg_iovlen = 1;
                    if (::sendmmsg(fd, &m, 1, 0) != 1) return 6;
                    ::recvmmsg(fd, &m, 1, MSG_DONTWAIT, nullptr);  // ECONNREFUSED or EAGAIN
                    ::close(fd);
                }
                if (is_tunnel(k)) {
                    // Handshake nonces and conversation ids.
                    uint8_t nonce[16];
                    if (::getrandom(nonce, sizeof nonce, 0) != static_cast<ssize_t>(sizeof nonce))
                        return 7;
                }
                for (const auto& [level, opt] : options) {
                    int v = 0;
                    socklen_t len = sizeof v;
                    ::getsockopt(inet, static_cast<int>(level), static_cast<int>(opt), &v, &len);
                }
                if (::kill(::getpid(), 0) < 0) return 3;
                if (::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0) < 0) return 4;
                return 0;
            });
        },
        testing::ExitedWithCode(0), "");
}

// The injector's whole data path after lock-down: accept a stream on a handed-over listener and
// send an IP packet on a raw socket someone else opened (here: this test, as root).
TEST(SandboxPacketKindWorks, InjectorAcceptsAndSendsOnAHandedOverRawSocket) {
    const int raw = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (raw >= 0) ::close(raw);
    PFP_REQUIRE(raw < 0 ? "CAP_NET_RAW (root) to make the raw socket a supervisor would" : "");
    EXPECT_EXIT(
        {
            const int raw4 = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
            const int lst = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un a{};
            a.sun_family = AF_UNIX;
            const std::string name = "pfp-injector-" + std::to_string(::getpid());
            std::memcpy(a.sun_path + 1, name.data(), name.size());
            const socklen_t len =
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
            if (::bind(lst, reinterpret_cast<sockaddr*>(&a), len) < 0 || ::listen(lst, 1) < 0)
                _exit(5);
            const int peer = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (::connect(peer, reinterpret_cast<sockaddr*>(&a), len) < 0) _exit(6);
            locked_as(WorkerKind::stream_to_raw, FilterMode::trap, [&] {
                if (::accept4(lst, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC) < 0) return 3;
                // A UDP packet to 127.0.0.1:9 (discard), header and all.
                uint8_t pkt[28] = {0x45, 0, 0,   28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0,
                                   0,    1, 127, 0,  0, 1, 0, 9, 0,  9,  0, 8, 0,   0};
                sockaddr_in dst{};
                dst.sin_family = AF_INET;
                dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (::sendto(raw4, pkt, sizeof pkt, 0, reinterpret_cast<sockaddr*>(&dst),
                             sizeof dst) != static_cast<ssize_t>(sizeof pkt))
                    return 4;
                return 0;
            });
        },
        testing::ExitedWithCode(0), "");
}

// The kernel-to-stream readers take several netlink messages per call (recvmmsg) on the socket
// they were handed: here a NETLINK_ROUTE dump, asked for before lock-down, as a queue's packets
// wait for the reader. Allowed to both reader kinds; it reaches only fds the worker already reads
// with recvfrom and recvmsg (baseline).
TEST(SandboxPacketKindWorks, ReadersTakeSeveralNetlinkMessagesPerCall) {
    for (const WorkerKind kind : {WorkerKind::nfqueue_to_stream, WorkerKind::nflog_to_stream}) {
        EXPECT_EXIT(
            {
                const int nl = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
                struct {
                    nlmsghdr nlh;
                    rtgenmsg gen;
                } req{};
                req.nlh.nlmsg_len = sizeof req;
                req.nlh.nlmsg_type = RTM_GETLINK;
                req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
                req.gen.rtgen_family = AF_UNSPEC;
                if (nl < 0 || ::send(nl, &req, sizeof req, 0) < 0) _exit(5);
                locked_as(kind, FilterMode::trap, [&] {
                    std::vector<char> bufs(4 * 32768);
                    iovec iov[4];
                    mmsghdr m[4] = {};
                    for (int i = 0; i < 4; ++i) {
                        iov[i] = {bufs.data() + i * 32768, 32768};
                        m[i].msg_hdr.msg_iov = &iov[i];
                        m[i].msg_hdr.msg_iovlen = 1;
                    }
                    return ::recvmmsg(nl, m, 4, MSG_DONTWAIT, nullptr) >= 1 ? 0 : 3;
                });
            },
            testing::ExitedWithCode(0), "")
            << kind_name(kind);
    }
}

INSTANTIATE_TEST_SUITE_P(EveryKind, SandboxKindWorks, testing::Range(size_t{0}, kWorkerKindCount),
                         [](const testing::TestParamInfo<size_t>& tp) {
                             return test_name(std::string(kind_name(kind_at(tp.param))));
                         });

// ---- The table --------------------------------------------------------------------------------

// Calls that are only safe with their arguments checked never appear unconditionally.
TEST(SandboxProfileTable, RiskyCallsAreAlwaysArgumentChecked) {
    const std::set<std::string_view> checked = {"socket", "setsockopt", "getsockopt", "fcntl",
                                                "kill",   "tgkill",     "mmap",       "mprotect"};
    for (size_t k = 0; k < kWorkerKindCount; ++k) {
        const Profile& p = profile_for(kind_at(k));
        EXPECT_EQ(p.kind, kind_at(k));
        for (const auto& r : production_rules(p)) {
            if (checked.count(r.name) != 0) {
                EXPECT_GE(r.arg_index, 0) << kind_name(p.kind) << ": " << r.name;
            }
        }
        for (uint64_t d : allowed_domains(p)) {
            EXPECT_TRUE(d == AF_INET || d == AF_INET6 || d == AF_UNIX || d == AF_VSOCK)
                << kind_name(p.kind) << " may create sockets of domain " << d;
        }
    }
}

TEST(SandboxProfileTable, NoKindAllowsDangerousSyscalls) {
    const std::vector<std::string_view> never = {"execve",
                                                 "execveat",
                                                 "open",
                                                 "openat",
                                                 "ptrace",
                                                 "bind",
                                                 "listen",
                                                 "prctl",
                                                 "capset",
                                                 "clone",
                                                 "clone3",
                                                 "fork",
                                                 "vfork",
                                                 "seccomp",
                                                 "bpf",
                                                 "setuid",
                                                 "setgid",
                                                 "mount",
                                                 "unshare",
                                                 "setns",
                                                 "io_uring_setup",
                                                 "userfaultfd",
                                                 "process_vm_writev",
                                                 "tkill"};
    for (size_t k = 0; k < kWorkerKindCount; ++k) {
        const Profile& p = profile_for(kind_at(k));
        for (const auto& r : production_rules(p)) {
            for (auto bad : never) EXPECT_NE(r.name, bad) << kind_name(p.kind);
        }
    }
}

TEST(SandboxProfileTable, EveryRuleOfEveryKindSaysWhy) {
    for (size_t k = 0; k < kWorkerKindCount; ++k) {
        const Profile& p = profile_for(kind_at(k));
        const std::string table = describe(p);
        ASSERT_FALSE(p.rules.empty()) << kind_name(p.kind);
        for (const auto& r : p.rules) {
            EXPECT_FALSE(r.why.empty()) << kind_name(p.kind) << ": " << r.name;
            EXPECT_FALSE(r.scope.empty()) << kind_name(p.kind) << ": " << r.name;
            if (r.arg_index >= 0) {
                EXPECT_FALSE(r.arg_desc.empty()) << r.name;
            }
            EXPECT_NE(table.find("| `" + std::string(r.name) + "` |"), std::string::npos)
                << kind_name(p.kind) << ": " << r.name;
        }
    }
}

}  // namespace
}  // namespace pfp::sandbox
