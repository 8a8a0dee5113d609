// UDP packets per second and flow setup for bench/udp.sh. Four roles:
//   udp_bench sink PORT [IPV4]                      counts datagrams on IPV4:PORT (default
//                                                   127.0.0.1), prints the count on stdout
//                                                   whenever it reads "report" on stdin
//   udp_bench blast PORT SIZE SECONDS FLOWS [IPV4]  sends SIZE-byte datagrams to IPV4:PORT from
//                                                   FLOWS client sockets (round robin, sendmmsg
//                                                   of 32) for SECONDS; prints datagrams sent
//   udp_bench echo PORT                             echoes every datagram on 127.0.0.1:PORT
//   udp_bench flows PORT COUNT HOLD                 COUNT new client sockets, 64 in flight, each
//                                                   sends one datagram and waits for its echo
//                                                   (a new flow each); prints flows per second,
//                                                   then keeps the sockets (the flows idle) until
//                                                   stdin closes if HOLD is 1
// Loopback or a test's own namespaces only. Not a test: numbers mean something only as ratios in
// one run.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

sockaddr_in address(int port, const char* ip) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        std::fprintf(stderr, "udp_bench: not an IPv4 address: %s\n", ip);
        std::exit(2);
    }
    return a;
}

int sink(int port, const char* ip) {
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int size = 8 << 20;
    ::setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    sockaddr_in a = address(port, ip);
    if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
        std::perror("bind");
        return 1;
    }
    constexpr int kBatch = 64;
    std::vector<char> buf(kBatch * 2048);
    mmsghdr m[kBatch]{};
    iovec iov[kBatch];
    unsigned long long count = 0;
    pollfd p[2] = {{s, POLLIN, 0}, {0, POLLIN, 0}};
    for (;;) {
        if (::poll(p, 2, -1) < 0) continue;
        if (p[1].revents) {
            char line[64];
            if (!std::fgets(line, sizeof line, stdin)) return 0;
            std::printf("%llu\n", count);
            std::fflush(stdout);
        }
        if (!(p[0].revents & POLLIN)) continue;
        for (;;) {
            for (int i = 0; i < kBatch; ++i) {
                iov[i] = {buf.data() + i * 2048, 2048};
                m[i].msg_hdr = {};
                m[i].msg_hdr.msg_iov = &iov[i];
                m[i].msg_hdr.msg_iovlen = 1;
            }
            const int n = ::recvmmsg(s, m, kBatch, MSG_DONTWAIT, nullptr);
            if (n <= 0) break;
            count += static_cast<unsigned>(n);
        }
    }
}

int blast(int port, size_t size, double seconds, int flows, const char* ip) {
    std::vector<int> socks;
    for (int i = 0; i < flows; ++i) {
        const int s = ::socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in a = address(port, ip);
        ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
        socks.push_back(s);
    }
    constexpr int kBatch = 32;
    std::vector<char> payload(size, 'x');
    mmsghdr m[kBatch]{};
    iovec iov[kBatch];
    for (int i = 0; i < kBatch; ++i) {
        iov[i] = {payload.data(), size};
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long sent = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (size_t k = 0; std::chrono::steady_clock::now() < end; ++k) {
        const int n = ::sendmmsg(socks[k % socks.size()], m, kBatch, 0);
        if (n > 0) sent += static_cast<unsigned>(n);
    }
    std::printf("%llu\n", sent);
    return 0;
}

int echo(int port) {
    const int s = ::socket(AF_INET, SOCK_DGRAM, 0);
    int size = 8 << 20;
    ::setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    sockaddr_in a = address(port, "127.0.0.1");
    if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
        std::perror("bind");
        return 1;
    }
    char buf[2048];
    for (;;) {
        sockaddr_in from{};
        socklen_t len = sizeof from;
        const ssize_t n =
            ::recvfrom(s, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n >= 0)
            ::sendto(s, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
}

// A closed loop of new flows: each socket's one datagram out, its echo back, then the next
// socket; 64 in flight. A datagram lost is sent again after 200 ms.
int flows(int port, int count, bool hold) {
    constexpr int kWindow = 64;
    std::vector<int> socks;
    socks.reserve(static_cast<size_t>(count));
    std::vector<pollfd> inflight;
    std::vector<std::chrono::steady_clock::time_point> sent_at;
    const sockaddr_in a = address(port, "127.0.0.1");
    const char payload[16] = "new flow";
    const auto start = std::chrono::steady_clock::now();
    int started = 0, done = 0;
    const auto send_one = [&](int s) {
        return ::sendto(s, payload, sizeof payload, 0, reinterpret_cast<const sockaddr*>(&a),
                        sizeof a) >= 0;
    };
    while (done < count) {
        while (started < count && static_cast<int>(inflight.size()) < kWindow) {
            const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
            if (s < 0) {
                std::perror("socket");
                return 1;
            }
            socks.push_back(s);
            send_one(s);
            inflight.push_back({s, POLLIN, 0});
            sent_at.push_back(std::chrono::steady_clock::now());
            ++started;
        }
        if (::poll(inflight.data(), inflight.size(), 50) < 0) continue;
        const auto now = std::chrono::steady_clock::now();
        for (size_t i = 0; i < inflight.size();) {
            char buf[64];
            if ((inflight[i].revents & POLLIN) && ::recv(inflight[i].fd, buf, sizeof buf, 0) >= 0) {
                ++done;
                inflight[i] = inflight.back();
                inflight.pop_back();
                sent_at[i] = sent_at.back();
                sent_at.pop_back();
                continue;
            }
            if (now - sent_at[i] > std::chrono::milliseconds(200)) {
                send_one(inflight[i].fd);
                sent_at[i] = now;
            }
            inflight[i].revents = 0;
            ++i;
        }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%.0f\n", count / seconds);
    std::fflush(stdout);
    if (hold) {
        char line[64];
        while (std::fgets(line, sizeof line, stdin)) {
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string role = argc > 1 ? argv[1] : "";
    if (role == "sink" && (argc == 3 || argc == 4))
        return sink(std::atoi(argv[2]), argc == 4 ? argv[3] : "127.0.0.1");
    if (role == "blast" && (argc == 6 || argc == 7))
        return blast(std::atoi(argv[2]), std::strtoul(argv[3], nullptr, 10), std::atof(argv[4]),
                     std::atoi(argv[5]), argc == 7 ? argv[6] : "127.0.0.1");
    if (role == "echo" && argc == 3) return echo(std::atoi(argv[2]));
    if (role == "flows" && argc == 5)
        return flows(std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]) == 1);
    std::fprintf(stderr,
                 "usage: udp_bench sink PORT [IPV4] | udp_bench blast PORT SIZE SECONDS FLOWS "
                 "[IPV4] | udp_bench echo PORT | udp_bench flows PORT COUNT HOLD\n");
    return 2;
}
