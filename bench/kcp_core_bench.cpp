// CPU cost of the KCP tunnel's protocol core (common/kcp/), without sockets: how many MB per CPU
// second one core can seal and open, and push through a client and a server TunnelSession in one
// thread (both ends' work, KCP and crypto, no syscalls), with and without a key, at 0 % and 5 %
// loss. The worker's socket I/O comes on top; see docs/kcp-tunnel.md ("Measuring").
//   g++ -std=c++20 -O2 -I. bench/kcp_core_bench.cpp common/kcp/*.cpp -lcrypto -o
//   /tmp/kcp_core_bench /tmp/kcp_core_bench [MiB]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <vector>

#include "common/kcp/secure_channel.hpp"
#include "common/kcp/tunnel_session.hpp"

namespace {

using namespace pfp::kcp;
using Bytes = std::vector<uint8_t>;

double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

SessionSecrets secrets() {
    SessionSecrets s;
    for (size_t i = 0; i < s.client_to_server.size(); ++i) {
        s.client_to_server[i] = static_cast<uint8_t>(i);
        s.server_to_client[i] = static_cast<uint8_t>(100 + i);
    }
    return s;
}

void aead_bench(size_t mib) {
    SecureChannel c(Role::client, 1, Security::psk, secrets());
    SecureChannel s(Role::server, 1, Security::psk, secrets());
    const Bytes body(1316 - sealed_overhead(Security::psk), 0x42);
    Bytes d, out;
    Type t{};
    const size_t n = mib * 1048576 / body.size();
    const double t0 = cpu_seconds();
    for (size_t i = 0; i < n; ++i) {
        if (c.seal(Type::segments, body, d) != ChannelError::none ||
            s.open(d, t, out) != ChannelError::none)
            std::abort();
    }
    const double dt = cpu_seconds() - t0;
    std::printf("seal+open %4zu-byte datagrams      %8.0f MB/s per CPU second\n", d.size(),
                static_cast<double>(n * body.size()) / 1e6 / dt);
}

struct Queue final : DatagramSink {
    std::deque<Bytes> q;
    std::mt19937 rng{1};
    double loss = 0;
    void send_datagram(std::span<const uint8_t> d) override {
        if (loss > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < loss) return;
        q.emplace_back(d.begin(), d.end());
    }
};

void tunnel_bench(Security sec, double loss, size_t mib) {
    TunnelConfig cfg;
    cfg.kcp = Config::fast(1350 - sealed_overhead(sec));
    uint32_t now = 0;
    TunnelSession client(Role::client, 7, sec, secrets(), cfg, now);
    TunnelSession server(Role::server, 7, sec, secrets(), cfg, now);
    Queue up, down;
    up.loss = down.loss = loss;
    const Bytes chunk(16384, 0x5a);
    const size_t total = mib * 1048576;
    size_t written = 0, got = 0;
    Bytes out;
    const double t0 = cpu_seconds();
    while (got < total) {
        while (written < total && client.writable()) {
            size_t n = 0;
            client.write({chunk.data(), std::min(chunk.size(), total - written)}, n);
            if (n == 0) break;
            written += n;
        }
        client.flush(now, up);
        while (!up.q.empty()) {
            server.on_datagram(up.q.front(), now);
            up.q.pop_front();
        }
        while (server.read(out) == TunnelSession::Read::data) got += out.size();
        server.flush(now, down);
        while (!down.q.empty()) {
            client.on_datagram(down.q.front(), now);
            down.q.pop_front();
        }
        if (client.state() != TunnelSession::State::open) std::abort();
        now += 1;  // a millisecond per round trip of the loop
    }
    const double dt = cpu_seconds() - t0;
    std::printf(
        "tunnel %-5s loss %2.0f %%  %3zu MiB     %8.0f MB/s per CPU second (%.2f ms CPU/MB, "
        "%u virtual ms)\n",
        sec == Security::psk ? "psk" : "plain", loss * 100, mib,
        static_cast<double>(total) / 1e6 / dt, dt * 1e3 / (static_cast<double>(total) / 1e6), now);
}

}  // namespace

int main(int argc, char** argv) {
    const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
    aead_bench(mib);
    for (const Security sec : {Security::plain, Security::psk})
        for (const double loss : {0.0, 0.05}) tunnel_bench(sec, loss, mib);
    return 0;
}
