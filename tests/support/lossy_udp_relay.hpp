#pragma once
// A deterministic lossy UDP relay for tests and benchmarks (this kernel has no netem): datagrams
// from each client address go out of a UDP socket of their own to one target, the answers come
// back to that client, and on the way each datagram, in each direction, may be dropped,
// duplicated or held back to be sent after the next one (reordered). The fate of a flow's n-th
// datagram in one direction depends only on the seed, the flow's number (its order of arrival)
// and n, so a run is repeatable whatever the timing. Bounded: at most max_flows flows (the least
// recently used is evicted), at most max_held datagrams held per flow and direction, each held
// no longer than hold_limit.
//
// It runs on a thread of its own, started by the constructor and stopped by the destructor.
// tests/support/lossy_udp_relay_main.cpp makes it the `lossy-udp-relay` program for bench/; the
// KCP tunnel tests also use it as a tap: it records what clients sent (`record`), and injects
// datagrams from a client's own address, so tests can replay or tamper with real datagrams.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"

namespace pfp::test::lossy {

struct Options {
    std::string listen = "127.0.0.1:0";  // IP:PORT or [IPv6]:PORT; port 0: any free port
    std::string target;                  // IP:PORT or [IPv6]:PORT
    // Per-datagram probabilities, 0..1, applied in each direction independently.
    double drop = 0;
    double duplicate = 0;
    double reorder = 0;
    uint64_t seed = 1;
    size_t max_flows = 1024;
    size_t max_held = 16;
    std::chrono::milliseconds hold_limit{5};
    std::chrono::seconds idle_timeout{60};  // a flow without datagrams either way is closed
    int socket_buffer = 4 << 20;            // SO_RCVBUF/SO_SNDBUF of every socket (0: kernel's)
    bool record = false;  // keep every datagram from a client (client_datagrams())
};

struct Counters {
    uint64_t received = 0;    // datagrams read, both directions
    uint64_t sent = 0;        // datagrams written (duplicates included)
    uint64_t dropped = 0;     // on purpose
    uint64_t duplicated = 0;  // extra copies sent
    uint64_t reordered = 0;   // held back and sent after a later one
    uint64_t lost = 0;        // send failed (a full socket buffer) or a flow was evicted
    uint64_t flows = 0;       // flows opened
};

class Loop;  // lossy_udp_relay.cpp

// What the relay's thread shares with the test's: the recording, the first flow's socket and the
// switch that cuts the link.
struct Tap {
    mutable std::mutex mutex;
    std::vector<std::string> recorded;
    unique_fd first_back;          // a duplicate of the first flow's socket to the target
    std::atomic<bool> cut{false};  // drop everything, both ways
};

class Relay {
  public:
    // Binds the listening socket (throws std::runtime_error with the reason) and starts.
    explicit Relay(Options options);
    ~Relay();
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;

    uint16_t port() const { return port_; }
    Counters counters() const;
    // With `record`: every datagram that reached the relay from a client (before any loss), in
    // order of arrival.
    std::vector<std::string> client_datagrams() const;
    // Sends `datagram` to the target from the first flow's socket, so it comes from the address
    // the target knows as that client's; false before any flow, or when the send fails.
    bool inject(const std::string& datagram);
    // From now on every datagram is dropped, both ways (counted as dropped), held ones too: the
    // peer on either side looks gone, as when its host dies. Recording goes on.
    void cut() { tap_.cut = true; }

    // In Counters' order.
    using Shared = std::array<std::atomic<uint64_t>, 7>;

  private:
    Options options_;
    SockAddr target_;
    unique_fd front_;
    unique_fd stop_;  // eventfd
    uint16_t port_ = 0;
    Shared counters_{};
    Tap tap_;
    std::unique_ptr<Loop> loop_;
    std::thread thread_;
};

}  // namespace pfp::test::lossy
