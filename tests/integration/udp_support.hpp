#pragma once
// UDP peers for the datagram tests: an echo server on loopback that also records who sent what,
// and client sockets. Real sockets; every wait is for an event, with a timeout only for hangs.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp::test {

// AF_INET: 127.0.0.1, AF_INET6: ::1.
std::string loopback_text(int family);
uint16_t free_udp_port(int family = AF_INET);  // bound-then-closed UDP port

// A bound, non-blocking UDP socket on loopback (port 0: any).
unique_fd bind_udp(int family, uint16_t port = 0);
// The same on an IPv4 address of its own (127.0.0.2, ...: all of 127/8 is loopback).
unique_fd bind_udp_at(const std::string& ipv4, uint16_t port);
uint16_t local_port(int fd);

// Sends `payload` to loopback `port` of `family`; false on error.
bool send_udp(int fd, int family, uint16_t port, const std::string& payload);
// One datagram (nullopt after `timeout`); `truncated` reports MSG_TRUNC.
std::optional<std::string> recv_udp(int fd, std::chrono::milliseconds timeout,
                                    bool* truncated = nullptr);

// Echoes every datagram back to its sender (unless `silent`), and records the senders' addresses
// (the forwarder's flow sockets, seen from the far end).
class UdpEchoServer {
  public:
    UdpEchoServer(int family, uint16_t port, bool silent = false);
    UdpEchoServer(const std::string& ipv4, uint16_t port);  // on bind_udp_at(ipv4, port)
    ~UdpEchoServer();
    UdpEchoServer(const UdpEchoServer&) = delete;
    UdpEchoServer& operator=(const UdpEchoServer&) = delete;

    uint64_t received() const { return received_; }
    std::set<std::string> peers() const;  // "127.0.0.1:40000", ...
    // The peer of the last datagram whose payload started with `prefix` ("" if none yet).
    std::string peer_of(const std::string& prefix) const;
    // Sends `payload` to every peer seen so far (an upstream that talks first).
    void push_to_peers(const std::string& payload);

  private:
    UdpEchoServer(unique_fd sock, bool silent);
    unique_fd sock_;
    bool silent_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> received_{0};
    mutable std::mutex mu_;
    std::set<std::string> peers_;
    std::vector<std::pair<std::string, std::string>> last_by_prefix_;  // payload head, peer
    std::vector<sockaddr_storage> peer_addrs_;
    std::thread thread_;
};

}  // namespace pfp::test
