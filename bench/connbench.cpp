// connbench: the small TCP programs bench/run.sh needs besides iperf3. Loopback only.
//
//   connbench serve --port P [--threads T] [--resp BYTES] [--max-seconds S]
//       Upstream server on 127.0.0.1:P. Per connection, the first byte picks the behaviour:
//         'G' (a short request of --req bytes, see rr): answer with BYTES bytes, then close
//             (the server closes first, HTTP/1.0 style, so TIME_WAIT stays on server ports and
//             the client's ephemeral ports are never exhausted);
//         'P' (ping): echo every byte back and keep the connection open until the peer closes.
//       Exits on SIGTERM/SIGINT or after --max-seconds (default 7200).
//
//   connbench rr --port P [--conns C] [--threads T] [--duration S] [--warmup S]
//                [--req BYTES] [--resp BYTES]
//       Closed-loop short-connection client: C connections in flight, each one connect,
//       send a request, read the response until EOF, close, start over. Prints one JSON line:
//       {"rate": conn/s, "p50_us": .., "p99_us": .., "done": .., "total": .., "errors": ..,
//       "cpu_us": ..} Latency = connect() start to EOF of the response.
//
//   connbench ping --port P [--size BYTES] [--duration S] [--warmup S]
//       One connection, one request in flight: sends BYTES (default 100) bytes, waits for the
//       echo of all of them, sends again, for S seconds (blocking calls, as a request/response
//       client would). Prints one JSON line: {"p50_us": .., "p99_us": .., "count": ..,
//       "cpu_us": ..} (round trip = first send to last byte of the echo).
//
//   connbench idle --port P [--count N] [--pids PID,PID..] [--warmup N] [--timeout S]
//       Opens N connections (at most 64 connecting at once), pings each one once (1 byte out,
//       1 byte back: the connection is established end to end), waits for RSS to settle and
//       prints one JSON line with the summed VmRSS of --pids before (after a warm-up of
//       --warmup connections opened and closed) and with the N connections open, and the open fd
//       count of each pid. Then closes everything.
//
// Every loop is bounded by a deadline; every socket is closed on exit by the kernel anyway.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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

using bench::loopback;

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void on_signal(int) {
    g_stop = true;
}

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "connbench: %s: %s\n", what, std::strerror(errno));
    std::exit(2);
}

struct Args {
    std::map<std::string, std::string> kv;
    std::string get(const std::string& k, const std::string& def) const {
        auto it = kv.find(k);
        return it == kv.end() ? def : it->second;
    }
    long num(const std::string& k, long def) const {
        auto it = kv.find(k);
        return it == kv.end() ? def : std::strtol(it->second.c_str(), nullptr, 10);
    }
    double real(const std::string& k, double def) const {
        auto it = kv.find(k);
        return it == kv.end() ? def : std::strtod(it->second.c_str(), nullptr);
    }
};

void raise_nofile() {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

// ---------------------------------------------------------------- serve

constexpr uint8_t kUnknown = 0, kRR = 1, kEcho = 2;

struct ServerShared {
    int listener = -1;
    size_t req = 64;
    std::string response;
    std::vector<uint8_t> mode;  // per fd: kUnknown / kRR / kEcho (each fd owned by one thread)
    std::vector<uint16_t> got;  // per fd: request bytes received (rr)
};

void serve_thread(ServerShared& s, Clock::time_point deadline) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    epoll_event lev{};
    lev.events = EPOLLIN | EPOLLEXCLUSIVE;
    lev.data.fd = s.listener;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s.listener, &lev) < 0) die("epoll_ctl(listener)");
    char buf[16384];

    // Returns true when the connection is finished (fd closed).
    auto handle = [&](int fd) -> bool {
        for (int rounds = 0; rounds < 64; ++rounds) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n == 0) {
                close(fd);
                return true;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return false;
                close(fd);
                return true;
            }
            if (static_cast<size_t>(fd) >= s.mode.size()) {
                close(fd);
                return true;
            }
            if (s.mode[fd] == kUnknown) s.mode[fd] = (buf[0] == 'P') ? kEcho : kRR;
            if (s.mode[fd] == kEcho) {
                // Tiny pings: the socket buffer always has room; a short send just drops bytes.
                (void)send(fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL | MSG_DONTWAIT);
                continue;
            }
            s.got[fd] = static_cast<uint16_t>(std::min<size_t>(65535, s.got[fd] + n));
            if (s.got[fd] >= s.req) {
                (void)send(fd, s.response.data(), s.response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                close(fd);  // server closes first
                return true;
            }
        }
        return false;
    };

    epoll_event evs[256];
    while (!g_stop && Clock::now() < deadline) {
        int n = epoll_wait(ep, evs, 256, 200);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            int fd = evs[i].data.fd;
            if (fd == s.listener) {
                for (int k = 0; k < 64; ++k) {
                    int c = accept4(s.listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    if (static_cast<size_t>(c) >= s.mode.size()) {
                        close(c);
                        continue;
                    }
                    s.mode[c] = kUnknown;
                    s.got[c] = 0;
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    // The request usually is already there: answer without an epoll round trip.
                    if (handle(c)) continue;
                    epoll_event ev{};
                    ev.events = EPOLLIN | EPOLLRDHUP;
                    ev.data.fd = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0) close(c);
                }
            } else {
                handle(fd);  // close() removes it from epoll
            }
        }
    }
    close(ep);
}

int cmd_serve(const Args& a) {
    int port = static_cast<int>(a.num("port", 0));
    int threads = static_cast<int>(std::max(1L, a.num("threads", 1)));
    double max_s = a.real("max-seconds", 7200);
    ServerShared s;
    s.req = static_cast<size_t>(a.num("req", 64));
    s.response.assign(static_cast<size_t>(a.num("resp", 128)), 'r');
    rlimit r{};
    getrlimit(RLIMIT_NOFILE, &r);
    s.mode.assign(std::min<rlim_t>(r.rlim_cur, 1u << 20), kUnknown);
    s.got.assign(s.mode.size(), 0);

    s.listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.listener < 0) die("socket");
    int one = 1;
    setsockopt(s.listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(port);
    if (bind(s.listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) die("bind");
    if (listen(s.listener, 4096) < 0) die("listen");
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(max_s));
    std::vector<std::thread> ts;
    for (int i = 0; i < threads; ++i) ts.emplace_back(serve_thread, std::ref(s), deadline);
    std::fprintf(stdout, "listening %d\n", port);
    std::fflush(stdout);
    for (auto& t : ts) t.join();
    return 0;
}

// ---------------------------------------------------------------- rr

struct RRResult {
    uint64_t done = 0;   // completed inside the measurement window
    uint64_t total = 0;  // completed at all (warm-up and tail included): for CPU per connection
    uint64_t errors = 0;
    std::vector<uint32_t> lat_us;
};

struct Slot {
    int fd = -1;
    int state = 0;  // 1 connecting, 2 reading
    size_t got = 0;
    Clock::time_point start;
};

void rr_thread(int port, int conns, size_t req, size_t resp, Clock::time_point t0,
               Clock::time_point t1, RRResult& out) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    sockaddr_in addr = loopback(port);
    std::vector<Slot> slots(static_cast<size_t>(conns));
    std::string request(req, 'x');
    request[0] = 'G';
    char buf[16384];
    out.lat_us.reserve(1 << 20);
    const auto hard_end = t1 + std::chrono::seconds(5);

    auto start = [&](size_t i) {
        Slot& s = slots[i];
        for (int attempt = 0; attempt < 100 && Clock::now() < t1; ++attempt) {
            s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (s.fd < 0) die("socket");
            int one = 1;
            setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            s.start = Clock::now();
            s.got = 0;
            if (connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 &&
                errno != EINPROGRESS) {
                close(s.fd);
                s.fd = -1;
                out.errors++;
                continue;
            }
            s.state = 1;
            epoll_event ev{};
            ev.events = EPOLLOUT;
            ev.data.u64 = i;
            if (epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev) < 0) die("epoll_ctl");
            return;
        }
        s.fd = -1;
        s.state = 0;
    };
    auto finish = [&](size_t i, bool ok) {
        Slot& s = slots[i];
        auto now = Clock::now();
        close(s.fd);
        s.fd = -1;
        s.state = 0;
        if (ok) out.total++;
        if (!ok) {
            out.errors++;
        } else if (s.start >= t0 && now <= t1) {
            out.done++;
            auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - s.start).count();
            out.lat_us.push_back(static_cast<uint32_t>(std::min<long long>(us, UINT32_MAX)));
        }
        if (now < t1 && !g_stop) start(i);
    };

    for (size_t i = 0; i < slots.size(); ++i) start(i);
    epoll_event evs[256];
    for (;;) {
        auto now = Clock::now();
        if (now >= hard_end || g_stop) break;
        bool any = false;
        for (auto& s : slots) any |= s.fd >= 0;
        if (!any) break;
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; ++k) {
            size_t i = evs[k].data.u64;
            Slot& s = slots[i];
            if (s.fd < 0) continue;
            if (s.state == 1) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0 || (evs[k].events & (EPOLLERR | EPOLLHUP))) {
                    finish(i, false);
                    continue;
                }
                ssize_t w = send(s.fd, request.data(), request.size(), MSG_NOSIGNAL);
                if (w != static_cast<ssize_t>(request.size())) {
                    finish(i, false);
                    continue;
                }
                s.state = 2;
                epoll_event ev{};
                ev.events = EPOLLIN | EPOLLRDHUP;
                ev.data.u64 = i;
                epoll_ctl(ep, EPOLL_CTL_MOD, s.fd, &ev);
                continue;
            }
            for (int rounds = 0; rounds < 64; ++rounds) {
                ssize_t r = recv(s.fd, buf, sizeof buf, MSG_DONTWAIT);
                if (r > 0) {
                    s.got += static_cast<size_t>(r);
                    continue;
                }
                if (r == 0) {
                    finish(i, s.got >= resp);
                } else if (errno != EAGAIN && errno != EINTR) {
                    finish(i, false);
                }
                break;
            }
        }
    }
    for (auto& s : slots)
        if (s.fd >= 0) close(s.fd);
    close(ep);
}

int cmd_rr(const Args& a) {
    int port = static_cast<int>(a.num("port", 0));
    int conns = static_cast<int>(std::max(1L, a.num("conns", 32)));
    int threads = static_cast<int>(std::max(1L, a.num("threads", 1)));
    double duration = a.real("duration", 5), warmup = a.real("warmup", 1);
    size_t req = static_cast<size_t>(std::max(1L, a.num("req", 64)));
    size_t resp = static_cast<size_t>(a.num("resp", 128));
    auto d = [](double s) {
        return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
    };
    auto t0 = Clock::now() + d(warmup);
    auto t1 = t0 + d(duration);
    std::vector<RRResult> res(static_cast<size_t>(threads));
    std::vector<std::thread> ts;
    for (int i = 0; i < threads; ++i) {
        int c = conns / threads + (i < conns % threads ? 1 : 0);
        ts.emplace_back(rr_thread, port, std::max(1, c), req, resp, t0, t1, std::ref(res[i]));
    }
    for (auto& t : ts) t.join();
    RRResult all;
    for (auto& r : res) {
        all.done += r.done;
        all.total += r.total;
        all.errors += r.errors;
        all.lat_us.insert(all.lat_us.end(), r.lat_us.begin(), r.lat_us.end());
    }
    std::sort(all.lat_us.begin(), all.lat_us.end());
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);  // the client's own CPU, for the per-connection CPU of the path
    double cpu_us =
        (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    auto pct = [&](double p) -> double {
        if (all.lat_us.empty()) return 0;
        size_t idx = static_cast<size_t>(p * static_cast<double>(all.lat_us.size() - 1));
        return all.lat_us[idx];
    };
    std::printf(
        "{\"rate\": %.1f, \"p50_us\": %.0f, \"p99_us\": %.0f, \"done\": %llu, "
        "\"total\": %llu, \"errors\": %llu, \"cpu_us\": %.0f}\n",
        static_cast<double>(all.done) / duration, pct(0.50), pct(0.99),
        static_cast<unsigned long long>(all.done), static_cast<unsigned long long>(all.total),
        static_cast<unsigned long long>(all.errors), cpu_us);
    return all.done > 0 ? 0 : 1;
}

// ---------------------------------------------------------------- ping

int cmd_ping(const Args& a) {
    int port = static_cast<int>(a.num("port", 0));
    size_t size = static_cast<size_t>(std::clamp(a.num("size", 100), 1L, 16384L));
    double duration = a.real("duration", 5), warmup = a.real("warmup", 0.5);
    auto d = [](double s) {
        return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
    };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{5, 0};  // a lost echo ends the run instead of hanging it
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr = loopback(port);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) die("connect");
    std::string msg(size, 'P');  // 'P': connbench serve echoes
    std::vector<char> buf(size);
    std::vector<uint32_t> lat;
    lat.reserve(1 << 20);
    const auto t0 = Clock::now() + d(warmup);
    const auto t1 = t0 + d(duration);
    rusage r0{};
    bool measuring = false;
    for (;;) {
        auto start = Clock::now();
        if (start >= t1 || g_stop) break;
        if (!measuring && start >= t0) {
            measuring = true;
            getrusage(RUSAGE_SELF, &r0);
        }
        if (send(fd, msg.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size)) die("send");
        for (size_t got = 0; got < size;) {
            ssize_t n = recv(fd, buf.data() + got, size - got, 0);
            if (n <= 0) die("recv (echo lost or connection closed)");
            got += static_cast<size_t>(n);
        }
        if (measuring) {
            auto us = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
            lat.push_back(static_cast<uint32_t>(std::min<long long>(us.count(), UINT32_MAX)));
        }
    }
    rusage r1{};
    getrusage(RUSAGE_SELF, &r1);
    close(fd);
    auto usec = [](const rusage& r) {
        return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec +
               r.ru_stime.tv_usec;
    };
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) -> double {
        if (lat.empty()) return 0;
        return lat[static_cast<size_t>(p * static_cast<double>(lat.size() - 1))] / 1000.0;
    };
    std::printf("{\"p50_us\": %.1f, \"p99_us\": %.1f, \"count\": %zu, \"cpu_us\": %.0f}\n",
                pct(0.50), pct(0.99), lat.size(), usec(r1) - usec(r0));
    return lat.empty() ? 1 : 0;
}

// ---------------------------------------------------------------- idle

long rss_kb(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    return -1;
}

long fd_count(int pid) {
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = opendir(dir.c_str());
    if (!d) return -1;
    long n = 0;
    for (int i = 0; i < 1 << 22; ++i) {
        dirent* e = readdir(d);
        if (!e) break;
        if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
    return n;
}

// Opens `count` connections, pings each once. Returns the fds (all established end to end),
// or fewer on failure/timeout.
std::vector<int> open_pinged(int port, int count, Clock::time_point deadline, long& errors) {
    sockaddr_in addr = loopback(port);
    std::vector<int> ready;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct P {
        int fd;
        int state;  // 1 connecting, 2 awaiting pong
    };
    std::vector<P> inflight;
    int started = 0;
    constexpr int kWindow = 64;
    epoll_event evs[128];
    while (static_cast<int>(ready.size()) + errors < count && Clock::now() < deadline) {
        while (started < count && static_cast<int>(inflight.size()) < kWindow) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) die("socket");
            ++started;
            if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 &&
                errno != EINPROGRESS) {
                close(fd);
                errors++;
                continue;
            }
            epoll_event ev{};
            ev.events = EPOLLOUT;
            ev.data.fd = fd;
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            inflight.push_back({fd, 1});
        }
        int n = epoll_wait(ep, evs, 128, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int k = 0; k < n; ++k) {
            int fd = evs[k].data.fd;
            auto it = std::find_if(inflight.begin(), inflight.end(),
                                   [&](const P& p) { return p.fd == fd; });
            if (it == inflight.end()) continue;
            bool fail = false;
            if (it->state == 1) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0 || send(fd, "P", 1, MSG_NOSIGNAL) != 1) {
                    fail = true;
                } else {
                    it->state = 2;
                    epoll_event ev{};
                    ev.events = EPOLLIN | EPOLLRDHUP;
                    ev.data.fd = fd;
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                    continue;
                }
            } else {
                char c;
                ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
                if (r == 1) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
                    ready.push_back(fd);
                    inflight.erase(it);
                    continue;
                }
                if (r < 0 && errno == EAGAIN) continue;
                fail = true;
            }
            if (fail) {
                close(fd);  // removes it from epoll
                errors++;
                inflight.erase(it);
            }
        }
    }
    for (auto& p : inflight) close(p.fd);
    close(ep);
    return ready;
}

int cmd_idle(const Args& a) {
    int port = static_cast<int>(a.num("port", 0));
    int count = static_cast<int>(std::max(1L, a.num("count", 1000)));
    int warm = static_cast<int>(std::max(0L, a.num("warmup", 32)));
    double timeout = a.real("timeout", 60);
    std::vector<int> pids;
    {
        std::stringstream ss(a.get("pids", ""));
        std::string tok;
        while (std::getline(ss, tok, ','))
            if (!tok.empty()) pids.push_back(std::atoi(tok.c_str()));
    }
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(timeout));
    auto sum_rss = [&] {
        long s = 0;
        for (int p : pids) s += std::max(0L, rss_kb(p));
        return s;
    };
    long errors = 0;
    // Warm-up: fault in the code and the first heap pages of the path, then close.
    if (warm > 0) {
        auto w = open_pinged(port, warm, deadline, errors);
        for (int fd : w) close(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    errors = 0;
    long before = sum_rss();
    std::vector<long> fds_before;
    for (int p : pids) fds_before.push_back(fd_count(p));
    auto fds = open_pinged(port, count, deadline, errors);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the proxy settle
    long after = sum_rss();
    std::string per_pid;
    for (size_t i = 0; i < pids.size(); ++i) {
        if (i) per_pid += ", ";
        per_pid += "\"" + std::to_string(pids[i]) +
                   "\": {\"rss_kb\": " + std::to_string(rss_kb(pids[i])) +
                   ", \"fds_added\": " + std::to_string(fd_count(pids[i]) - fds_before[i]) + "}";
    }
    std::printf(
        "{\"open\": %zu, \"errors\": %ld, \"rss_before_kb\": %ld, \"rss_after_kb\": %ld, "
        "\"kb_per_conn\": %.3f, \"pids\": {%s}}\n",
        fds.size(), errors, before, after,
        fds.empty() ? 0.0 : static_cast<double>(after - before) / fds.size(), per_pid.c_str());
    std::fflush(stdout);
    for (int fd : fds) close(fd);
    return fds.size() == static_cast<size_t>(count) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: connbench serve|rr|idle --key value ...\n");
        return 2;
    }
    Args a;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k.rfind("--", 0) != 0) {
            std::fprintf(stderr, "connbench: expected --key, got %s\n", argv[i]);
            return 2;
        }
        a.kv[k.substr(2)] = argv[i + 1];
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    raise_nofile();
    std::string cmd = argv[1];
    if (cmd == "serve") return cmd_serve(a);
    if (cmd == "rr") return cmd_rr(a);
    if (cmd == "idle") return cmd_idle(a);
    if (cmd == "ping") return cmd_ping(a);
    std::fprintf(stderr, "connbench: unknown command %s\n", cmd.c_str());
    return 2;
}
