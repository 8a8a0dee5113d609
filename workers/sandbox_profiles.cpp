// What each worker kind may do after lock-down: the syscalls (with argument checks) of its family,
// with the socket domains and capabilities its row in the kind table names, each with its reason.
// docs/security.md shows describe() of every profile and a unit test keeps the two equal.
#include <cap-ng.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "common/socket_util.hpp"
#include "workers/sandbox.hpp"

namespace pfp::sandbox {
namespace {

// socket() type values a stream kind may pass: SOCK_STREAM with any of the two flag bits.
const std::vector<uint64_t> kStreamTypes = {SOCK_STREAM, SOCK_STREAM | SOCK_NONBLOCK,
                                            SOCK_STREAM | SOCK_CLOEXEC,
                                            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC};

// socket() type values a datagram kind may pass: SOCK_DGRAM with any of the two flag bits.
const std::vector<uint64_t> kDatagramTypes = {SOCK_DGRAM, SOCK_DGRAM | SOCK_NONBLOCK,
                                              SOCK_DGRAM | SOCK_CLOEXEC,
                                              SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC};

// What every worker does after lock-down: the event loop, its control socket to the supervisor,
// memory management by libc, time, its own exit and abort().
std::vector<SyscallRule> baseline_rules() {
    return {
        {.name = "read", .why = "control socket, relayed data, timerfd expirations"},
        {.name = "write", .why = "relayed data, stderr"},
        {.name = "readv", .why = "scatter reads (libc stdio, relayed data)"},
        {.name = "writev", .why = "gather writes (libc stdio, relayed data)"},
        {.name = "recvmsg", .why = "control messages from the supervisor"},
        {.name = "sendmsg",
         .why = "READY/STATUS/LOG messages to the supervisor; udp-forward's segmented "
                "(UDP_SEGMENT) datagram runs"},
        {.name = "recvfrom", .why = "recv() (glibc implements it with recvfrom)"},
        {.name = "sendto", .why = "send() (glibc implements it with sendto)"},
        {.name = "close", .why = "closing finished connections and pipes"},
        {.name = "epoll_wait", .why = "the event loop"},
        {.name = "epoll_pwait", .why = "the event loop (libc may use the pwait form)"},
        {.name = "epoll_ctl", .why = "registering and removing fds in the event loop"},
        {.name = "timerfd_settime", .why = "arming timers created before lock-down"},
        {.name = "timerfd_gettime", .why = "reading the remaining time of a timer"},
        {.name = "clock_gettime", .why = "timestamps (when the vDSO falls back to the syscall)"},
        {.name = "clock_nanosleep", .why = "short back-off sleeps"},
        {.name = "rt_sigreturn", .why = "returning from a signal handler"},
        {.name = "rt_sigprocmask", .why = "libc blocks signals around abort() and raise()"},
        {.name = "brk", .why = "malloc heap growth"},
        {.name = "mmap",
         .why = "malloc of large blocks; never executable memory",
         .arg_index = 2,
         .arg_values = {0},
         .arg_desc = "prot without PROT_EXEC",
         .arg_mask = PROT_EXEC},
        {.name = "mprotect",
         .why = "malloc arena setup; never executable memory",
         .arg_index = 2,
         .arg_values = {0},
         .arg_desc = "prot without PROT_EXEC",
         .arg_mask = PROT_EXEC},
        {.name = "munmap", .why = "free() of large blocks"},
        {.name = "mremap", .why = "realloc() of large blocks"},
        {.name = "madvise", .why = "free() returns memory to the kernel"},
        {.name = "futex", .why = "libc locks (stdio, malloc)"},
        {.name = "exit", .why = "thread exit"},
        {.name = "exit_group", .why = "process exit"},
        {.name = "getpid", .why = "logging, abort() (raise)"},
        {.name = "gettid", .why = "abort() (raise)"},
        {.name = "restart_syscall", .why = "kernel restarts an interrupted sleep"},
        {.name = "fstat", .why = "stdio sizes its buffer on first use"},
        {.name = "newfstatat", .why = "glibc fstat() (AT_EMPTY_PATH form)"},
        {.name = "fcntl",
         .why = "toggling O_NONBLOCK",
         .arg_index = 1,
         .arg_values = {F_GETFL, F_SETFL},
         .arg_desc = "cmd F_GETFL or F_SETFL"},
        {.name = "kill",
         .why = "signals to itself only: never the supervisor or a sibling (same uid)",
         .arg_index = 0,
         .arg_values = {kSelfPid},
         .arg_desc = "pid is the worker's own"},
        {.name = "tgkill",
         .why = "abort() raises SIGABRT on itself; no other process",
         .arg_index = 0,
         .arg_values = {kSelfPid},
         .arg_desc = "tgid is the worker's own"},
    };
}

// socket() for a kind's upstream: only its row's domains, only the one socket type.
SyscallRule upstream_socket_rule(const KindRow& row, const std::vector<uint64_t>& types,
                                 std::string_view type_name) {
    std::string domain_desc = "domain ";
    std::vector<uint64_t> domains;
    for (int d : row.upstream_domains) {
        if (!domains.empty()) domain_desc += " or ";
        domain_desc += family_name(d);
        domains.push_back(static_cast<uint64_t>(d));
    }
    domain_desc += ", type " + std::string(type_name) + " (+NONBLOCK/CLOEXEC)";
    return {.name = "socket",
            .why = row.upstream_why,
            .arg_index = 0,
            .arg_values = domains,
            .arg_desc = domain_desc,
            .arg2_index = 1,
            .arg2_values = types};
}

// getsockopt(SO_ERROR) only: the outcome of a non-blocking connect.
SyscallRule connect_result_rule() {
    return {.name = "getsockopt",
            .why = "result of a non-blocking connect",
            .arg_index = 1,
            .arg_values = {SOL_SOCKET},
            .arg_desc = "level SOL_SOCKET, optname SO_ERROR",
            .arg2_index = 2,
            .arg2_values = {SO_ERROR}};
}

// Every stream kind: the relay of workers/stream_relay.cpp (accept, connect, splice through
// pipes, copy fallback, half-close) with the upstream socket families of the kind's row.
Profile stream_profile(const KindRow& row) {
    Profile p{
        .kind = row.kind,
        .rules =
            {
                {.name = "accept4", .why = "clients on the handed-over listener"},
                upstream_socket_rule(row, kStreamTypes, "SOCK_STREAM"),
                {.name = "connect", .why = row.connect_why},
                {.name = "setsockopt",
                 .why = "keep-alive on a connection (no SO_LINGER, buffer sizes or others)",
                 .arg_index = 1,
                 .arg_values = {SOL_SOCKET},
                 .arg_desc = "level SOL_SOCKET, optname SO_KEEPALIVE",
                 .arg2_index = 2,
                 .arg2_values = {SO_KEEPALIVE}},
                {.name = "setsockopt",
                 .why = "TCP_NODELAY and keep-alive timing (no TCP_CONGESTION, TCP_ULP or others)",
                 .arg_index = 1,
                 .arg_values = {IPPROTO_TCP},
                 .arg_desc = "level IPPROTO_TCP, optname TCP_NODELAY, TCP_KEEPIDLE, TCP_KEEPINTVL "
                             "or TCP_KEEPCNT",
                 .arg2_index = 2,
                 .arg2_values = {TCP_NODELAY, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT}},
                connect_result_rule(),
                {.name = "getsockname", .why = "local address of a connection (logging)"},
                {.name = "getpeername", .why = "client address (logging, PROXY header)"},
                {.name = "shutdown",
                 .why = "half-close: pass a FIN on to the other side; never the shared listener",
                 .arg_index = 0,
                 .arg_values = {kListenerFd},
                 .arg_desc = "fd is not the handed-over listener",
                 .arg_not_equal = true},
                {.name = "splice", .why = "zero-copy relay: socket -> pipe -> socket"},
                {.name = "pipe2", .why = "pipes for splice, taken while data flows"},
                {.name = "fcntl",
                 .why = "sizing splice pipes",
                 .arg_index = 1,
                 .arg_values = {F_SETPIPE_SZ, F_GETPIPE_SZ},
                 .arg_desc = "cmd F_SETPIPE_SZ or F_GETPIPE_SZ"},
            },
        .capabilities = {row.capabilities.begin(), row.capabilities.end()},
        .capabilities_why = row.capabilities_why,
    };
    if (reads_original_dst(row)) {
        // SO_ORIGINAL_DST is 80 at both levels (linux/netfilter_ipv4.h, ip6_tables.h).
        constexpr uint64_t kSoOriginalDst = 80;
        p.rules.push_back({.name = "getsockopt",
                           .why = "original destination of a redirected client (IPv4)",
                           .arg_index = 1,
                           .arg_values = {IPPROTO_IP},
                           .arg_desc = "level SOL_IP, optname SO_ORIGINAL_DST",
                           .arg2_index = 2,
                           .arg2_values = {kSoOriginalDst}});
        p.rules.push_back({.name = "getsockopt",
                           .why = "original destination of a redirected client (IPv6)",
                           .arg_index = 1,
                           .arg_values = {IPPROTO_IPV6},
                           .arg_desc = "level SOL_IPV6, optname IP6T_SO_ORIGINAL_DST",
                           .arg2_index = 2,
                           .arg2_values = {kSoOriginalDst}});
    }
    return p;
}

// Every datagram kind: the forwarder of workers/udp_forward.cpp (a UDP socket per client flow,
// batched reads and writes); nothing to accept, splice, shut down or tune.
Profile datagram_profile(const KindRow& row) {
    return Profile{
        .kind = row.kind,
        .rules =
            {
                upstream_socket_rule(row, kDatagramTypes, "SOCK_DGRAM"),
                {.name = "connect", .why = row.connect_why},
                {.name = "recvmmsg", .why = "batched reads of datagrams"},
                {.name = "sendmmsg", .why = "batched writes of datagrams"},
            },
        .capabilities = {row.capabilities.begin(), row.capabilities.end()},
        .capabilities_why = row.capabilities_why,
    };
}

// The kernel-to-stream readers (workers/nfqueue_sender.cpp, nflog_sender.cpp). The nfqueue reader
// keeps CAP_NET_ADMIN, with which a netlink socket would reach nf_tables, conntrack and ipset: so
// each may create only the one stream socket of its upstream's family (never AF_NETLINK), and has
// no setsockopt, ioctl, bind or accept. Reading the queue or group (recvmmsg, several messages per
// call) and sending verdicts (send, baseline) use the handed-over socket; the nflog reader keeps no
// capability, so the kernel refuses whatever it sends there.
Profile netlink_reader_profile(const KindRow& row) {
    return Profile{
        .kind = row.kind,
        .rules =
            {
                upstream_socket_rule(row, kStreamTypes, "SOCK_STREAM"),
                {.name = "connect", .why = row.connect_why},
                connect_result_rule(),
                {.name = "shutdown",
                 .why = "the stream's read side, so nothing the peer sends is ever read; never "
                        "the netlink socket",
                 .arg_index = 0,
                 .arg_values = {kListenerFd},
                 .arg_desc = "fd is not the handed-over netlink socket",
                 .arg_not_equal = true},
                {.name = "recvmmsg",
                 .why = "several queued packets (netlink messages) per read; no fd that recvfrom "
                        "and recvmsg do not already reach"},
            },
        .capabilities = {row.capabilities.begin(), row.capabilities.end()},
        .capabilities_why = row.capabilities_why,
    };
}

// The packet family's injector (workers/raw_injector.cpp): it accepts one stream at a time and
// sends on the raw sockets it was given (sendto is in the baseline). It creates no socket and sets
// no option: the supervisor opened and bound the raw sockets.
Profile packet_profile(const KindRow& row) {
    if (row.fds.front() == FdRole::nfqueue || row.fds.front() == FdRole::nflog)
        return netlink_reader_profile(row);
    return Profile{
        .kind = row.kind,
        .rules = {{.name = "accept4", .why = "the packet stream, one at a time"},
                  {.name = "sendmmsg",
                   .why = "the packets of one stream read, injected in batches"}},
        .capabilities = {row.capabilities.begin(), row.capabilities.end()},
        .capabilities_why = row.capabilities_why,
    };
}

// The KCP tunnel (workers/kcp_client.cpp, kcp_server.cpp): TCP on one side, KCP over UDP on the
// other. Both read getrandom(2) for handshake nonces and conversation ids; neither opens a file
// (OpenSSL is warmed up before lock-down), pipes or splices.
Profile tunnel_profile(const KindRow& row) {
    const bool client = row.listen == ListenSide::tcp;
    Profile p{
        .kind = row.kind,
        .rules =
            {
                {.name = "getrandom",
                 .why = "handshake nonces and conversation ids (the kernel's random source)"},
                {.name = "connect", .why = row.connect_why},
                {.name = "shutdown",
                 .why = "half-close: pass a tunnelled FIN on to the TCP side; never the "
                        "handed-over socket",
                 .arg_index = 0,
                 .arg_values = {kListenerFd},
                 .arg_desc = "fd is not the handed-over socket",
                 .arg_not_equal = true},
            },
        .capabilities = {row.capabilities.begin(), row.capabilities.end()},
        .capabilities_why = row.capabilities_why,
    };
    if (client) {
        p.rules.push_back({.name = "accept4", .why = "clients on the handed-over listener"});
        p.rules.push_back(upstream_socket_rule(row, kDatagramTypes, "SOCK_DGRAM"));
        p.rules.push_back({.name = "setsockopt",
                           .why = "socket_buffer: the size of a conversation's UDP socket buffers",
                           .arg_index = 1,
                           .arg_values = {SOL_SOCKET},
                           .arg_desc = "level SOL_SOCKET, optname SO_RCVBUF or SO_SNDBUF",
                           .arg2_index = 2,
                           .arg2_values = {SO_RCVBUF, SO_SNDBUF}});
        p.rules.push_back(
            {.name = "recvmmsg", .why = "batched reads of a conversation's datagrams"});
        p.rules.push_back(
            {.name = "sendmmsg", .why = "batched writes of a conversation's datagrams"});
    } else {
        p.rules.push_back(upstream_socket_rule(row, kStreamTypes, "SOCK_STREAM"));
        p.rules.push_back(connect_result_rule());
        p.rules.push_back({.name = "setsockopt",
                           .why = "TCP_NODELAY on an upstream connection (no other option)",
                           .arg_index = 1,
                           .arg_values = {IPPROTO_TCP},
                           .arg_desc = "level IPPROTO_TCP, optname TCP_NODELAY",
                           .arg2_index = 2,
                           .arg2_values = {TCP_NODELAY}});
        p.rules.push_back({.name = "recvmmsg", .why = "batched reads of datagrams"});
        p.rules.push_back({.name = "sendmmsg", .why = "batched writes of datagrams"});
    }
    return p;
}

// The family's syscalls for one row; a family without a worker body has no profile yet.
Profile family_profile(const KindRow& row) {
    switch (row.family) {
        case KindFamily::stream:
            return stream_profile(row);
        case KindFamily::datagram:
            return datagram_profile(row);
        case KindFamily::packet:
            return packet_profile(row);
        case KindFamily::tunnel:
            return tunnel_profile(row);
    }
    throw std::invalid_argument("no sandbox profile for the " +
                                std::string(kind_family_name(row.family)) + " family of kind " +
                                std::string(row.name));
}

// Baseline + the kind's additions (+ the sanitizer runtime's calls in sanitizer builds).
Profile finish(Profile kind_profile) {
    const std::string_view kind = kind_name(kind_profile.kind);
    std::vector<SyscallRule> rules = baseline_rules();
    for (auto& r : rules) r.scope = "baseline";
    for (auto& r : kind_profile.rules) {
        r.scope = kind;
        rules.push_back(std::move(r));
    }
#if defined(PFPROXY_SANITIZE) && PFPROXY_SANITIZE
    for (const auto& r : sanitizer_runtime_rules()) rules.push_back(r);
#endif
    kind_profile.rules = std::move(rules);
    return kind_profile;
}

std::string escape_cell(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '|') out += '\\';
        out += c;
    }
    return out;
}

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// "a0 in {2, 10}", "(a2 & 0x4) == 0", "a0 == getpid()": the exact check, as code.
std::string render_check(int index, const std::vector<uint64_t>& values, uint64_t mask) {
    const std::string arg = "a" + std::to_string(index);
    const std::string lhs = mask ? "(" + arg + " & " + hex(mask) + ")" : arg;
    auto value = [](uint64_t v) {
        if (v == kSelfPid) return std::string("getpid()");
        if (v == kListenerFd) return std::string("listener fd");
        return std::to_string(v);
    };
    if (values.size() == 1) return lhs + " == " + value(values[0]);
    std::string out = lhs + " in {";
    for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + value(values[i]);
    return out + "}";
}

}  // namespace

const std::vector<SyscallRule>& sanitizer_runtime_rules() {
    static const std::vector<SyscallRule> rules = [] {
        // Measured with GCC 12's libasan/libubsan: a locked-down probe under strace (allocation
        // churn, ASan heap-overflow/use-after-free/SEGV reports, recoverable and fatal UBSan
        // reports, abort(), normal exit; see docs/security.md). Everything else the runtime
        // did is in the baseline. Reports symbolize in-process (libbacktrace): /proc/self/maps
        // and the ELF files of every module. Flags are pinned to the values the runtime passes.
        constexpr std::string_view why = "sanitizer runtime (sanitizer builds only)";
        std::vector<SyscallRule> r = {
            {.name = "open",  // /proc/self/maps (module list), /proc/self/cmdline, environ
             .why = why,
             .arg_index = 1,
             .arg_values = {O_RDONLY},
             .arg_desc = "flags O_RDONLY"},
            {.name = "openat",  // ELF and separate debug files of loaded modules
             .why = why,
             .arg_index = 2,
             .arg_values = {O_RDONLY | O_CLOEXEC},
             .arg_desc = "flags O_RDONLY|O_CLOEXEC"},
            {.name = "readlink", .why = why},  // /proc/self/exe, library symlinks
            {.name = "ioctl",                  // isatty(stderr): colour the report or not
             .why = why,
             .arg_index = 1,
             .arg_values = {TCGETS},
             .arg_desc = "request TCGETS"},
            {.name = "fcntl",  // symbolizer marks its fds close-on-exec
             .why = why,
             .arg_index = 1,
             .arg_values = {F_SETFD},
             .arg_desc = "cmd F_SETFD"},
            {.name = "pipe2", .why = why},  // probing whether memory is readable (UBSan dumps)
            {.name = "sigaltstack",         // abort() and error reports query the alt stack
             .why = why,
             .arg_index = 0,
             .arg_values = {0},
             .arg_desc = "query only (ss NULL)"},
            // A thread the thread relay starts: the runtime reads the new thread's CPU mask.
            {.name = "sched_getaffinity", .why = why},
        };
        for (auto& rule : r) rule.scope = "sanitizer";
        return r;
    }();
    return rules;
}

uint64_t thread_clone_flags() {
    // glibc 2.34+ nptl (sysdeps/nptl/pthread_create.c, create_thread): a thread in this process
    // sharing memory, files, fs and signal handlers, with its own TLS and tid bookkeeping.
    return CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SYSVSEM | CLONE_SIGHAND | CLONE_THREAD |
           CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
}

const std::vector<SyscallRule>& thread_relay_rules() {
    static const std::vector<SyscallRule> rules = [] {
        // Measured with glibc 2.36's pthread_create/join/exit under strace: besides these it
        // maps the stack (mmap, mprotect of the guard page, both without PROT_EXEC), blocks
        // signals around clone (rt_sigprocmask), waits in futex and frees the stack with madvise
        // and munmap, all in the baseline. The threads do not allocate (their buffers come from
        // the loop thread), so no malloc arena is made in them.
        std::vector<SyscallRule> r = {
            {.name = "clone",
             .why = "pthread_create: a relay thread in this process; a fork (no CLONE_THREAD), a "
                    "new namespace or any other flag is killed",
             .arg_index = 0,
             .arg_values = {thread_clone_flags()},
             .arg_desc = "flags exactly glibc's pthread flags (CLONE_VM|FS|FILES|SYSVSEM|"
                         "SIGHAND|THREAD|SETTLS|PARENT_SETTID|CHILD_CLEARTID)"},
            {.name = "clone3",
             .why = "its flags sit in memory seccomp cannot read: refused with ENOSYS, so glibc "
                    "falls back to clone (as Chromium's sandbox does)",
             .fail_errno = ENOSYS},
            {.name = "set_robust_list", .why = "a new thread registers its robust futex list"},
            {.name = "rseq", .why = "a new thread registers its restartable sequences area"},
        };
        for (auto& rule : r) rule.scope = "thread-relay";
        return r;
    }();
    return rules;
}

Profile with_thread_relay(const Profile& profile) {
    Profile out = profile;
    for (const auto& r : thread_relay_rules()) out.rules.push_back(r);
    return out;
}

const Profile& profile_for(WorkerKind kind) {
    // Built once per kind, on first use (before lock-down).
    static const std::array<Profile, kWorkerKindCount> profiles = [] {
        std::array<Profile, kWorkerKindCount> all{};
        for (const KindRow& row : kind_table())
            all[static_cast<size_t>(row.kind)] = finish(family_profile(row));
        return all;
    }();
    const auto i = static_cast<size_t>(kind);
    if (i >= kWorkerKindCount)
        throw std::invalid_argument("no sandbox profile for worker kind " + std::to_string(i));
    return profiles[i];
}

std::string describe_rules(std::span<const SyscallRule> rules) {
    std::string out = "| syscall | allowed when | set | why |\n|---|---|---|---|\n";
    for (const auto& r : rules) {
        std::string when = "always";
        if (r.fail_errno != 0) {
            when = std::string("never: fails with ") +
                   (r.fail_errno == ENOSYS ? "ENOSYS" : std::to_string(r.fail_errno));
        } else if (r.arg_index >= 0) {
            std::string code =
                r.arg_not_equal
                    ? "a" + std::to_string(r.arg_index) + " != " +
                          (r.arg_values.at(0) == kListenerFd ? std::string("listener fd")
                                                             : std::to_string(r.arg_values.at(0)))
                    : render_check(r.arg_index, r.arg_values, r.arg_mask);
            if (r.arg2_index >= 0) code += " and " + render_check(r.arg2_index, r.arg2_values, 0);
            when = escape_cell(r.arg_desc) + " (`" + code + "`)";
        }
        out += "| `" + std::string(r.name) + "` | " + when + " | " + escape_cell(r.scope) + " | " +
               escape_cell(r.why) + " |\n";
    }
    return out;
}

std::string describe(const Profile& profile) {
    std::string caps;
    for (int cap : profile.capabilities) {
        const char* name = capng_capability_to_name(static_cast<unsigned>(cap));
        if (!caps.empty()) caps += ", ";
        std::string upper = name ? name : "#" + std::to_string(cap);
        for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        caps += "CAP_" + upper;
    }
    if (caps.empty()) caps = "none";
    return describe_rules(profile.rules) + "\nCapabilities kept: " + caps + " (" +
           std::string(profile.capabilities_why) + ").\n";
}

}  // namespace pfp::sandbox
