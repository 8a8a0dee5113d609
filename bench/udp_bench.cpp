// UDP packets per second for bench/udp.sh. Two roles:
//   udp_bench sink PORT [IPV4]                      counts datagrams on IPV4:PORT (default
//                                                   127.0.0.1), prints the count on stdout
//                                                   whenever it reads "report" on stdin
//   udp_bench blast PORT SIZE SECONDS FLOWS [IPV4]  sends SIZE-byte datagrams to IPV4:PORT from
//                                                   FLOWS client sockets (round robin, sendmmsg
//                                                   of 32) for SECONDS; prints datagrams sent
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

}  // namespace

int main(int argc, char** argv) {
    const std::string role = argc > 1 ? argv[1] : "";
    if (role == "sink" && (argc == 3 || argc == 4))
        return sink(std::atoi(argv[2]), argc == 4 ? argv[3] : "127.0.0.1");
    if (role == "blast" && (argc == 6 || argc == 7))
        return blast(std::atoi(argv[2]), std::strtoul(argv[3], nullptr, 10), std::atof(argv[4]),
                     std::atoi(argv[5]), argc == 7 ? argv[6] : "127.0.0.1");
    std::fprintf(stderr,
                 "usage: udp_bench sink PORT [IPV4] | udp_bench blast PORT SIZE SECONDS FLOWS "
                 "[IPV4]\n");
    return 2;
}
