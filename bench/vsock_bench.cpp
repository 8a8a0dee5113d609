// vsock_bench: vsock throughput, round trip and connection rate through pf-proxyd's relays
// against direct vsock, inside the QEMU guest of tests/vm (the only place with vsock loopback:
// never run it on a host). bench/vsock.sh boots the guest and runs it; see bench/README.md.
//
//   vsock_bench --bin DIR [--rounds N] [--seconds S] [--strace PATH]
//
// With --strace (bench/vsock.sh --syscalls), it then counts the system calls of the process that
// relays each path (`strace -c -f` attached to it) over a fixed number of 1-byte round trips, and
// prints them per exchange: where the relays' time goes, not how fast they are (tracing slows
// every call).
//
// It starts its servers (a process of their own: vsock port 9000, TCP 127.0.0.1:9001), a
// reference relay (a process with two blocking copy threads per connection, vsock 9200 -> 9000:
// what the simplest relay costs here) and one pf-proxyd (DIR/pf-proxyd) with a proxy per relay
// path (vsock-to-vsock, ip-to-vsock and vsock-to-ip each with the event engine and with
// "relay": "threads"), then measures every path in turn, round after round (A B C, A B C), and
// prints a markdown table of medians and of per-round ratios to direct vsock. Every client loop is
// bounded by a deadline and a count; the server and relay processes end when the benchmark kills
// them or dies (PDEATHSIG).
//
// Protocol: the client's first byte picks what the server does with the connection:
//   'B' bulk:  read and count until EOF, then send the count (8 bytes) and close;
//   'P' ping:  echo every byte until EOF;
//   'C' conn:  answer one byte, then close (the server closes first).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_net.hpp"

namespace {

using bench::send_all;

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint32_t kLocalCid = VMADDR_CID_LOCAL;  // the only CID this program connects to
constexpr uint32_t kVsockServer = 9000;
constexpr uint16_t kTcpServer = 9001;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "vsock_bench: %s: %s\n", what.c_str(), std::strerror(errno));
    std::exit(2);
}

// ---------------------------------------------------------------- sockets

struct Target {
    bool vsock;
    uint32_t port;
};

int connect_to(const Target& t) {
    int fd;
    int r;
    if (t.vsock) {
        fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_vm a{};
        a.svm_family = AF_VSOCK;
        a.svm_cid = kLocalCid;
        a.svm_port = t.port;
        r = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(t.port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        r = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (r < 0) {
        ::close(fd);
        return -1;
    }
    timeval tv{10, 0};  // nothing may hang the benchmark
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

bool recv_all(int fd, void* p, size_t n) {
    char* c = static_cast<char*>(p);
    while (n > 0) {
        ssize_t r = ::recv(fd, c, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        c += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

// ---------------------------------------------------------------- servers

void serve_connection(int fd) {
    timeval tv{30, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::vector<char> buf(1 << 20);
    char mode = 0;
    if (::recv(fd, &mode, 1, 0) != 1) {
        ::close(fd);
        return;
    }
    if (mode == 'B') {
        uint64_t total = 0;
        ssize_t n;
        while ((n = ::recv(fd, buf.data(), buf.size(), 0)) > 0) total += static_cast<uint64_t>(n);
        send_all(fd, &total, sizeof total);
    } else if (mode == 'P') {
        ssize_t n;
        while ((n = ::recv(fd, buf.data(), 4096, 0)) > 0)
            if (!send_all(fd, buf.data(), static_cast<size_t>(n))) break;
    } else if (mode == 'C') {
        send_all(fd, "c", 1);
    }
    ::close(fd);
}

// Accepts for ever; a detached thread per connection (they end with their connection).
[[noreturn]] void accept_loop(int listener) {
    for (;;) {  // ends with the process (PDEATHSIG / kill)
        int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) std::thread(serve_connection, c).detach();
    }
}

// The servers' process: vsock port 9000 and TCP 127.0.0.1:9001.
[[noreturn]] void serve_forever(int vsock_listener, int tcp_listener) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::thread(accept_loop, tcp_listener).detach();
    accept_loop(vsock_listener);
}

int listen_on(bool vsock, uint32_t port) {
    int fd;
    int r;
    if (vsock) {
        fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_vm a{};
        a.svm_family = AF_VSOCK;
        a.svm_cid = VMADDR_CID_ANY;
        a.svm_port = port;
        r = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        r = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (r < 0 || ::listen(fd, 1024) < 0) die("listen on port " + std::to_string(port));
    return fd;
}

// ---------------------------------------------------------------- reference relay

// The simplest correct relay, for scale: a process of its own (as pf-proxyd's workers are) that
// gives each connection two threads copying with blocking recv/send through 256 KiB buffers
// (bench_net.hpp). One process serves the three references: vsock -> vsock, TCP -> vsock and
// vsock -> TCP, so each relay kind has a blocking counterpart with the same two sockets.
struct ReferenceRoute {
    int listener;
    Target upstream;
};

[[noreturn]] void reference_relay(const std::vector<ReferenceRoute>& routes) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (const ReferenceRoute& route : routes)
        std::thread([route] {
            bench::serve_blocking(
                route.listener, [route] { return connect_to(route.upstream); }, 256 << 10);
        }).detach();
    for (;;) ::pause();  // ends with the benchmark (PDEATHSIG / kill)
}

// ---------------------------------------------------------------- pf-proxyd

struct Daemon {
    pid_t pid = -1;
    std::string log_path;
};

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

Daemon start_daemon(const std::string& bin, const std::string& policy) {
    Daemon d;
    const std::string policy_path = "/tmp/vsock_bench_policy.json";
    d.log_path = "/tmp/vsock_bench_pf-proxyd.log";
    std::ofstream(policy_path) << policy;
    d.pid = ::fork();
    if (d.pid < 0) die("fork");
    if (d.pid == 0) {
        int log = ::open(d.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(log, 1);
        ::dup2(log, 2);
        const std::string exe = bin + "/pf-proxyd";
        ::execl(exe.c_str(), exe.c_str(), "--policy", policy_path.c_str(), nullptr);
        ::_exit(127);
    }
    for (int i = 0; i < 300; ++i) {  // at most 30 s
        if (read_file(d.log_path).find("proxies ready") != std::string::npos) return d;
        std::this_thread::sleep_for(100ms);
    }
    std::fprintf(stderr, "vsock_bench: pf-proxyd not ready:\n%s\n", read_file(d.log_path).c_str());
    ::kill(d.pid, SIGKILL);
    std::exit(2);
}

void stop_daemon(const Daemon& d) {
    ::kill(d.pid, SIGTERM);
    for (int i = 0; i < 100; ++i) {  // at most 10 s
        if (::waitpid(d.pid, nullptr, WNOHANG) == d.pid) return;
        std::this_thread::sleep_for(100ms);
    }
    ::kill(d.pid, SIGKILL);
    ::waitpid(d.pid, nullptr, 0);
}

// ---------------------------------------------------------------- measurements

// MiB/s of one stream from client to server for `seconds` (counted by the server).
double bulk(const Target& t, double seconds) {
    int fd = connect_to(t);
    if (fd < 0) return 0;
    std::vector<char> buf(1 << 20, 'x');
    buf[0] = 'B';
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    bool ok = true;
    while (ok && Clock::now() < end) ok = send_all(fd, buf.data(), buf.size());
    ::shutdown(fd, SHUT_WR);
    uint64_t total = 0;
    ok = ok && recv_all(fd, &total, sizeof total);
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    ::close(fd);
    return ok ? static_cast<double>(total) / (1 << 20) / elapsed : 0;
}

// Median microseconds of a 1-byte round trip on one open connection, for `seconds`.
double round_trip(const Target& t, double seconds) {
    int fd = connect_to(t);
    if (fd < 0) return 0;
    char b = 'P';
    std::vector<double> us;
    bool ok = send_all(fd, &b, 1);                          // the mode byte (not echoed)
    ok = ok && send_all(fd, &b, 1) && recv_all(fd, &b, 1);  // warm-up: the path is set up
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    for (int i = 0; ok && i < 1000000 && Clock::now() < end; ++i) {
        const auto t0 = Clock::now();
        ok = send_all(fd, &b, 1) && recv_all(fd, &b, 1);
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    ::close(fd);
    if (!ok || us.empty()) return 0;
    std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
    return us[us.size() / 2];
}

// Connections per second, one at a time: connect, one byte each way, close.
double connection_rate(const Target& t, double seconds) {
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    int done = 0;
    for (int i = 0; i < 1000000 && Clock::now() < end; ++i) {
        int fd = connect_to(t);
        if (fd < 0) return 0;
        char b = 'C';
        bool ok = send_all(fd, &b, 1) && recv_all(fd, &b, 1);
        ::close(fd);
        if (!ok) return 0;
        ++done;
    }
    return done / std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Path {
    std::string name;
    std::string what;
    Target target;
    std::string proxy;  // the pf-proxyd proxy relaying it ("" for the others)
    // The blocking reference relay with the same two socket types, for "x reference".
    std::string reference = "reference relay";
};

// ---------------------------------------------------------------- system calls per exchange

// The pid of pf-proxyd's worker for `proxy` (its command line names "PROXY/0").
pid_t worker_pid(const std::string& proxy) {
    for (pid_t pid = 2; pid < 1 << 16; ++pid) {
        std::string cmd = read_file("/proc/" + std::to_string(pid) + "/cmdline");
        std::replace(cmd.begin(), cmd.end(), '\0', ' ');
        if (cmd.find("pf-proxy-worker") != std::string::npos &&
            cmd.find(" " + proxy + "/0") != std::string::npos)
            return pid;
    }
    return -1;
}

// strace -c's summary: calls per system call name.
std::map<std::string, double> strace_calls(const std::string& summary) {
    std::map<std::string, double> calls;
    std::istringstream in(summary);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        std::vector<std::string> f;
        for (std::string w; l >> w;) f.push_back(w);
        // "% time  seconds  usecs/call  calls  [errors]  syscall"
        if (f.size() < 5 || f.back() == "total" || f.back() == "syscall") continue;
        if (f[0].find_first_not_of("0123456789.") != std::string::npos) continue;
        calls[f.back()] = std::atof(f[3].c_str());
    }
    return calls;
}

// Calls per round trip of the process `pid` over `exchanges` 1-byte round trips on `t`.
std::map<std::string, double> syscalls_per_exchange(const std::string& strace, pid_t pid,
                                                    const Target& t, int exchanges) {
    int fd = connect_to(t);
    if (fd < 0 || pid <= 0) return {};
    char b = 'P';
    bool ok = send_all(fd, &b, 1) && send_all(fd, &b, 1) && recv_all(fd, &b, 1);
    const std::string out = "/tmp/vsock_bench_strace.txt";
    const pid_t tracer = ::fork();
    if (tracer < 0) die("fork");
    if (tracer == 0) {
        const std::string p = std::to_string(pid);
        ::execl(strace.c_str(), strace.c_str(), "-c", "-f", "-o", out.c_str(), "-p", p.c_str(),
                nullptr);
        ::_exit(127);
    }
    std::this_thread::sleep_for(1s);  // attached
    for (int i = 0; ok && i < exchanges; ++i) ok = send_all(fd, &b, 1) && recv_all(fd, &b, 1);
    ::kill(tracer, SIGINT);
    ::waitpid(tracer, nullptr, 0);
    ::close(fd);
    if (!ok) return {};
    auto calls = strace_calls(read_file(out));
    for (auto& [name, n] : calls) n /= exchanges;
    return calls;
}

std::string fixed(double v, int digits) {
    char s[64];
    std::snprintf(s, sizeof s, "%.*f", digits, v);
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    std::string bin, strace;
    int rounds = 3;
    double seconds = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--bin")
            bin = v;
        else if (k == "--rounds")
            rounds = std::atoi(v.c_str());
        else if (k == "--seconds")
            seconds = std::atof(v.c_str());
        else if (k == "--strace")
            strace = v;
    }
    if (bin.empty() || rounds < 1 || rounds > 20 || seconds <= 0 || seconds > 60) {
        std::fprintf(stderr, "usage: vsock_bench --bin DIR [--rounds 1-20] [--seconds S<=60]\n");
        return 2;
    }
    if (::access("/sys/module/vsock_loopback", F_OK) != 0) {
        std::fprintf(stderr,
                     "vsock_bench: no vsock loopback: run it in the guest (bench/vsock.sh)\n");
        return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);

    // Forked before any thread exists: the child is single-threaded until it makes its own.
    const std::vector<ReferenceRoute> references = {
        {listen_on(true, 9200), Target{true, kVsockServer}},
        {listen_on(false, 9201), Target{true, kVsockServer}},
        {listen_on(true, 9202), Target{false, kTcpServer}}};
    const pid_t relay = ::fork();
    if (relay < 0) die("fork");
    if (relay == 0) reference_relay(references);
    for (const ReferenceRoute& r : references) ::close(r.listener);

    // The servers get a process of their own too, so that every path, the direct ones included,
    // pays for the switches between client and server processes (costly under TCG).
    const int vl = listen_on(true, kVsockServer), tl = listen_on(false, kTcpServer);
    const pid_t servers = ::fork();
    if (servers < 0) die("fork");
    if (servers == 0) serve_forever(vl, tl);
    ::close(vl);
    ::close(tl);

    const Daemon d = start_daemon(bin,
                                  R"({"drain_timeout": "1s", "proxies": [
  {"name": "v2v", "listen": "vsock:any:9100", "upstream": "vsock:1:9000"},
  {"name": "v2v-copy", "listen": "vsock:any:9105", "upstream": "vsock:1:9000", "splice": false},
  {"name": "i2v", "listen": "tcp:127.0.0.1:9101", "upstream": "vsock:1:9000"},
  {"name": "v2i", "listen": "vsock:any:9102", "upstream": "tcp:127.0.0.1:9001"},
  {"name": "pair-in", "listen": "tcp:127.0.0.1:9103", "upstream": "vsock:1:9104"},
  {"name": "pair-out", "listen": "vsock:any:9104", "upstream": "tcp:127.0.0.1:9001"},
  {"name": "v2v-thr", "listen": "vsock:any:9106", "upstream": "vsock:1:9000", "relay": "threads"},
  {"name": "i2v-thr", "listen": "tcp:127.0.0.1:9107", "upstream": "vsock:1:9000", "relay": "threads"},
  {"name": "v2i-thr", "listen": "vsock:any:9108", "upstream": "tcp:127.0.0.1:9001", "relay": "threads"}]})");

    const std::vector<Path> paths = {
        {"direct vsock", "client -> vsock server", {true, kVsockServer}, ""},
        {"direct tcp", "client -> TCP server (loopback)", {false, kTcpServer}, ""},
        {"reference relay", "vsock -> 2 threads, blocking copy -> vsock", {true, 9200}, ""},
        {"reference tcp-to-vsock", "TCP -> 2 threads, blocking copy -> vsock", {false, 9201}, ""},
        {"reference vsock-to-tcp", "vsock -> 2 threads, blocking copy -> TCP", {true, 9202}, ""},
        {"vsock-to-vsock", "vsock -> relay -> vsock", {true, 9100}, "v2v"},
        {"vsock-to-vsock copy", "the same with \"splice\": false", {true, 9105}, "v2v-copy"},
        {"ip-to-vsock", "TCP -> relay -> vsock", {false, 9101}, "i2v", "reference tcp-to-vsock"},
        {"vsock-to-ip", "vsock -> relay -> TCP", {true, 9102}, "v2i", "reference vsock-to-tcp"},
        {"pair", "TCP -> ip-to-vsock -> vsock -> vsock-to-ip -> TCP", {false, 9103}, ""},
        // The same three kinds with "relay": "threads" (a thread pair per connection).
        {"vsock-to-vsock threads", "vsock -> relay threads -> vsock", {true, 9106}, "v2v-thr"},
        {"ip-to-vsock threads",
         "TCP -> relay threads -> vsock",
         {false, 9107},
         "i2v-thr",
         "reference tcp-to-vsock"},
        {"vsock-to-ip threads",
         "vsock -> relay threads -> TCP",
         {true, 9108},
         "v2i-thr",
         "reference vsock-to-tcp"},
    };
    // results[metric][path] = one value per round; ratios[metric][path] per round too.
    // by_reference: the round trip against the blocking reference relay of the same round.
    std::map<std::string, std::map<std::string, std::vector<double>>> results, ratios;
    std::map<std::string, std::vector<double>> by_reference;
    const std::vector<std::string> metrics = {"bulk", "rtt", "conn"};
    for (int r = 0; r < rounds; ++r) {
        std::fprintf(stderr, "vsock_bench: round %d/%d\n", r + 1, rounds);
        for (const auto& m : metrics) {
            for (const auto& p : paths) {
                double v = m == "bulk"  ? bulk(p.target, seconds)
                           : m == "rtt" ? round_trip(p.target, seconds)
                                        : connection_rate(p.target, seconds);
                results[m][p.name].push_back(v);
            }
            const double direct = results[m]["direct vsock"].back();
            for (const auto& p : paths)
                ratios[m][p.name].push_back(direct > 0 ? results[m][p.name].back() / direct : 0);
            if (m == "rtt") {
                for (const auto& p : paths) {
                    const double ref = results[m][p.reference].back();
                    by_reference[p.name].push_back(ref > 0 ? results[m][p.name].back() / ref : 0);
                }
            }
        }
    }
    // System calls per exchange of each pf-proxyd relay.
    std::vector<std::pair<std::string, std::map<std::string, double>>> traced;
    if (!strace.empty()) {
        constexpr int kExchanges = 2000;
        for (const auto& p : paths) {
            const pid_t pid = p.proxy.empty() ? -1 : worker_pid(p.proxy);
            if (pid > 0)
                traced.emplace_back(p.name,
                                    syscalls_per_exchange(strace, pid, p.target, kExchanges));
        }
    }
    stop_daemon(d);
    for (pid_t child : {relay, servers}) {
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
    }

    std::printf("<!-- vsock_bench begin -->\n");
    std::printf(
        "| path | what | bulk MiB/s | x direct vsock | round trip us | x direct vsock "
        "| x reference | connections/s | x direct vsock |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& p : paths) {
        std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.name.c_str(),
                    p.what.c_str(), fixed(median(results["bulk"][p.name]), 0).c_str(),
                    fixed(median(ratios["bulk"][p.name]), 2).c_str(),
                    fixed(median(results["rtt"][p.name]), 0).c_str(),
                    fixed(median(ratios["rtt"][p.name]), 2).c_str(),
                    fixed(median(by_reference[p.name]), 2).c_str(),
                    fixed(median(results["conn"][p.name]), 0).c_str(),
                    fixed(median(ratios["conn"][p.name]), 2).c_str());
    }
    std::printf(
        "\nMedians of %d interleaved rounds, %.1f s per measurement, one boot (1 vCPU, "
        "TCG); ratios are medians of per-round ratios.\n",
        rounds, seconds);
    if (!traced.empty()) {
        std::printf(
            "\n| path | system calls per round trip | epoll_wait | reads | writes | other |\n");
        std::printf("|---|---:|---:|---:|---:|---|\n");
        for (const auto& [name, calls] : traced) {
            double total = 0, waits = 0, reads = 0, writes = 0;
            std::string other;
            for (const auto& [call, n] : calls) {
                total += n;
                if (call.starts_with("epoll_wait") || call.starts_with("epoll_pwait")) {
                    waits += n;
                } else if (call == "recvfrom" || call == "read" || call == "recvmsg") {
                    reads += n;
                } else if (call == "sendto" || call == "write" || call == "sendmsg") {
                    writes += n;
                } else if (n >= 0.01) {
                    other += (other.empty() ? "" : ", ") + call + " " + fixed(n, 2);
                }
            }
            std::printf("| %s | %s | %s | %s | %s | %s |\n", name.c_str(), fixed(total, 2).c_str(),
                        fixed(waits, 2).c_str(), fixed(reads, 2).c_str(), fixed(writes, 2).c_str(),
                        other.empty() ? "-" : other.c_str());
        }
        std::printf("\nstrace -c -f attached to each relay over 2000 1-byte round trips.\n");
    }
    std::printf("<!-- vsock_bench end -->\n");
    return 0;
}
