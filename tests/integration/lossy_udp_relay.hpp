#pragma once
// A deterministic lossy UDP path for the KCP tunnel tests: datagrams from any client to a bound
// loopback port go on to a fixed server from a socket of their own per client (as a NAT would),
// and the answers come back; each way, a seeded PRNG drops, duplicates and reorders (holds one
// datagram back until the next one has gone) at the given rates. It also records what passed
// client -> server, so tests can replay or tamper with real datagrams from the same source.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp::test {

struct LossProfile {
    double drop = 0;       // probability per datagram
    double duplicate = 0;  // probability that a datagram is sent twice
    double reorder = 0;    // probability that a datagram is held back behind the next one
    uint64_t seed = 1;
};

class LossyUdpRelay {
  public:
    // Listens on 127.0.0.1:`port` (0: any; see port()), relays to 127.0.0.1:`server_port`.
    LossyUdpRelay(uint16_t server_port, LossProfile profile, uint16_t port = 0);
    ~LossyUdpRelay();
    LossyUdpRelay(const LossyUdpRelay&) = delete;
    LossyUdpRelay& operator=(const LossyUdpRelay&) = delete;

    uint16_t port() const { return port_; }
    // Every datagram that reached the relay from a client (before any loss), in order.
    std::vector<std::string> client_datagrams() const;
    // Sends `datagram` to the server from the socket of the first client seen (its source).
    bool inject(const std::string& datagram);
    uint64_t dropped() const { return dropped_; }
    uint64_t relayed() const { return relayed_; }

  private:
    struct Client {
        std::string address;  // sockaddr bytes
        unique_fd upstream;   // connected to the server
        std::optional<std::string> held_up, held_down;
    };
    void run();
    bool chance(double p);
    void pass(int fd, const std::string& d, std::optional<std::string>& held, const void* to,
              unsigned to_len);

    unique_fd front_;
    uint16_t port_ = 0;
    uint16_t server_port_;
    LossProfile profile_;
    uint64_t rng_;
    std::vector<Client> clients_;  // only the relay thread changes it (under mutex_)
    mutable std::mutex mutex_;
    std::vector<std::string> recorded_;
    std::atomic<uint64_t> dropped_{0}, relayed_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace pfp::test
