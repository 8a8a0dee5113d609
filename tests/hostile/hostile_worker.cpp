// The hook of the test-only hostile worker (pf-proxy-worker-hostile, never installed): the real
// worker, locked down as usual, then running one attack chosen by the test through the
// environment, as code an attacker controls would. It reports each attempt's outcome on stderr
// ("hostile: ATTACK: RESULT") and keeps serving afterwards if it is still alive.
//   PFPROXY_HOSTILE_PROXY  only the workers of this proxy attack
//   PFPROXY_HOSTILE        the attack
//   PFPROXY_HOSTILE_ARG    its target (a pid, a port, a path)
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/handover.hpp"
#include "common/ipc.hpp"

namespace {

void report(const std::string& attack, const std::string& result) {
    const std::string line = "hostile: " + attack + ": " + result + "\n";
    (void)!::write(2, line.data(), line.size());
}

std::string outcome(int r) {
    return r < 0 ? std::string("refused: ") + std::strerror(errno) : "succeeded";
}

// Raw message on the control channel, bypassing ipc::send's own checks.
int send_raw(int control_fd, uint16_t type, const std::string& payload, int fd = -1) {
    std::string buf(12, '\0');
    const uint32_t magic = pfp::ipc::kMagic, len = static_cast<uint32_t>(payload.size());
    const uint16_t nfds = fd >= 0 ? 1 : 0;
    std::memcpy(buf.data(), &magic, 4);
    std::memcpy(buf.data() + 4, &type, 2);
    std::memcpy(buf.data() + 6, &nfds, 2);
    std::memcpy(buf.data() + 8, &len, 4);
    buf += payload;
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    return static_cast<int>(::sendmsg(control_fd, &msg, MSG_NOSIGNAL));
}

// A stream socket connected to the pathname Unix socket `path`, each step reported.
int unix_connect(const std::string& attack, const std::string& path) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    report(attack, "socket " + outcome(s));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
    report(attack, "connect " + outcome(::connect(s, reinterpret_cast<sockaddr*>(&un), sizeof un)));
    return s;
}

std::string stats_payload(uint64_t accepted) {
    pfp::ipc::StreamStats s;
    s.accepted = accepted;
    return pfp::ipc::encode_stats(s);
}

// Packet-family STATS that no worker could report (ARG names which), after a plausible first
// report for "decrease". 777777 marks each impossible value, so a test can look for it.
void packet_stats(int control_fd, const std::string& attack, const std::string& which) {
    pfp::ipc::PacketStats s;
    s.packets_in = 5;
    if (which == "decrease") {
        s.packets_in = 888888;
        report(attack, "first " + outcome(send_raw(control_fd, 4, pfp::ipc::encode_stats(s))));
        s.packets_in = 777777;
    } else if (which == "growth") {
        s.packets_in = uint64_t{1} << 40;  // a trillion packets in the first second
    } else if (which == "out-exceeds-in") {
        s.packets_out = 777777;
    } else if (which == "verdicts") {
        s.verdicts_drop = 777777;
    } else if (which == "cut-exceeds-out") {
        s.packets_cut = 777777;
    }
    report(attack, which + " " + outcome(send_raw(control_fd, 4, pfp::ipc::encode_stats(s))));
}

// A TCP socket with unsent data (the peer never reads). SO_LINGER, which would make its close
// block, is what the filter no longer allows (the "linger-option" attack).
int stuffed_socket(uint16_t port) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return -1;
    ::fcntl(s, F_SETFL, O_NONBLOCK);
    static char junk[65536];
    while (::send(s, junk, sizeof junk, MSG_NOSIGNAL) > 0) {
    }
    return s;
}

// An nfnetlink_log UNBIND of `group` sent on the handed-over netlink socket (fd 4), then the
// kernel's answer: its ACK is queued before sendto returns, behind any packets already there.
std::string nflog_unbind(uint16_t group) {
    struct {
        nlmsghdr nlh;
        nfgenmsg nfg;
        nlattr attr;
        nfulnl_msg_config_cmd cmd;
        uint8_t pad[3];
    } msg{};
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.nlh.nlmsg_seq = 77;
    msg.nfg.nfgen_family = AF_UNSPEC;
    msg.nfg.version = NFNETLINK_V0;
    msg.nfg.res_id = htons(group);
    msg.attr.nla_len = NLA_HDRLEN + sizeof msg.cmd;
    msg.attr.nla_type = NFULA_CFG_CMD;
    msg.cmd.command = NFULNL_CFG_CMD_UNBIND;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(4, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        return "sendto " + outcome(-1);
    static char buf[1 << 18];
    for (int reads = 0; reads < 10000; ++reads) {
        const ssize_t n = ::recv(4, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) return "no answer (" + outcome(-1) + ")";
        auto len = static_cast<unsigned>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != 77) continue;
            const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
            if (e->error == 0) return "unbind acknowledged";
            errno = -e->error;
            return "unbind " + outcome(-1);
        }
    }
    return "no answer";
}

}  // namespace

void hostile_after_lockdown(int control_fd, const pfp::Handover& h) {
    const char* proxy = std::getenv("PFPROXY_HOSTILE_PROXY");
    const char* attack_env = std::getenv("PFPROXY_HOSTILE");
    if (!proxy || !attack_env || h.proxy != proxy) return;
    const std::string attack = attack_env;
    const char* arg_env = std::getenv("PFPROXY_HOSTILE_ARG");
    const std::string arg = arg_env ? arg_env : "";
    report(attack, "starting");
    if (attack == "send-fd") {
        const int s = stuffed_socket(static_cast<uint16_t>(std::atoi(arg.c_str())));
        report(attack, s < 0 ? "no socket" : "socket ready");
        report(attack, "sendmsg " + outcome(send_raw(control_fd, 4, stats_payload(0), s)));
    } else if (attack == "stats-decrease") {
        report(attack, "first " + outcome(send_raw(control_fd, 4, stats_payload(1000))));
        report(attack, "second " + outcome(send_raw(control_fd, 4, stats_payload(3))));
    } else if (attack == "packet-stats") {
        packet_stats(control_fd, attack, arg);
    } else if (attack == "oversized") {
        report(attack, outcome(send_raw(control_fd, 4, std::string(200, 'x'))));
    } else if (attack == "mistyped") {
        report(attack, outcome(send_raw(control_fd, 1, "{}")));
    } else if (attack == "addresses") {
        // The supervisor's own message (a host name's address set), sent the wrong way.
        report(attack,
               outcome(send_raw(control_fd, static_cast<uint16_t>(pfp::ipc::Type::addresses), "")));
    } else if (attack == "signal-supervisor") {
        report(attack, outcome(::kill(std::atoi(arg.c_str()), SIGTERM)));
    } else if (attack == "open-file") {
        report(attack, outcome(::open("/etc/hostname", O_RDONLY)));
    } else if (attack == "control-socket") {
        // A `stop` of another proxy on the control socket at ARG.
        const int s = unix_connect(attack, arg);
        const std::string req = "{\"command\": \"stop\", \"proxy\": \"b\"}\n";
        report(attack, "write " + outcome(static_cast<int>(::write(s, req.data(), req.size()))));
        char reply[512];
        const ssize_t n = ::read(s, reply, sizeof reply - 1);
        report(attack, n > 0 ? "reply " + std::string(reply, static_cast<size_t>(n))
                             : "no reply (" + outcome(static_cast<int>(n)) + ")");
    } else if (attack == "linger-option") {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        const linger l{1, 60};
        report(attack, outcome(::setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l)));
    } else if (attack == "tcp-congestion") {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        report(attack, outcome(::setsockopt(s, IPPROTO_TCP, TCP_CONGESTION, "reno", 4)));
    } else if (attack == "shutdown-listener") {
        report(attack, outcome(::shutdown(4, SHUT_RDWR)));  // fd 4: the handed-over listener
    } else if (attack == "tcp-connect") {
        // A TCP port on loopback that the proxy's upstream does not name (ARG).
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(std::atoi(arg.c_str())));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        report(attack,
               "connect " + outcome(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a)));
    } else if (attack == "abstract-unix") {
        // An abstract Unix socket outside the worker's Landlock domain (name ARG).
        const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
        report(attack, "socket " + outcome(s));
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        std::memcpy(un.sun_path + 1, arg.data(), std::min(arg.size(), sizeof un.sun_path - 1));
        const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + arg.size());
        report(attack, "connect " + outcome(::connect(s, reinterpret_cast<sockaddr*>(&un), len)));
    } else if (attack == "unix-connect") {
        // A pathname Unix socket outside the upstream's directory (path ARG).
        (void)unix_connect(attack, arg);
    } else if (attack == "nflog-unbind") {
        report(attack, nflog_unbind(static_cast<uint16_t>(std::atoi(arg.c_str()))));
    } else if (attack == "thread-fork") {
        // A worker with the thread relay may start threads; a thread is as locked down as the
        // worker, so its fork is killed like the worker's own.
        pthread_t t;
        auto forker = [](void*) -> void* {
            report("thread-fork", "thread running, forking");
            report("thread-fork", "fork " + outcome(static_cast<int>(::fork())));
            return nullptr;
        };
        const int r = ::pthread_create(&t, nullptr, forker, nullptr);
        report(attack, r == 0 ? "thread started" : std::string("thread ") + std::strerror(r));
        if (r == 0) ::pthread_join(t, nullptr);
    } else if (attack == "clone-newuser") {
        // The thread flags plus a new user namespace: not a plain thread.
        const long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SYSVSEM | CLONE_SIGHAND |
                           CLONE_THREAD | CLONE_SETTLS | CLONE_PARENT_SETTID |
                           CLONE_CHILD_CLEARTID | CLONE_NEWUSER;
        report(
            attack,
            outcome(static_cast<int>(::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, 0))));
    } else if (attack == "clone3") {
        clone_args args{};
        args.flags = CLONE_NEWUSER;
        args.exit_signal = SIGCHLD;
        report(attack, outcome(static_cast<int>(::syscall(SYS_clone3, &args, sizeof args))));
    } else if (attack == "forge-log") {
        // A supervisor line, a journald priority and a terminal escape, then a flood.
        const std::string forged =
            "\n2026-01-01T00:00:00.000Z pf-proxyd[1] error: FORGED-LINE\n<0>FORGED-PRIO\n"
            "\x1b[2KFORGED-ESC\r\n";
        report(attack, outcome(static_cast<int>(::write(2, forged.data(), forged.size()))));
        std::string flood;
        for (int i = 0; i < 2000; ++i) flood += "flood line " + std::to_string(i) + "\n";
        int failed = 0;
        for (int i = 0; i < 10; ++i)  // 20,000 lines at once: over the relay's burst
            if (::write(1, flood.data(), flood.size()) < 0) ++failed;
        report(attack, "flood " + std::to_string(failed) + " writes failed");
    } else {
        report(attack, "unknown attack");
    }
    report(attack, "survived");
}
