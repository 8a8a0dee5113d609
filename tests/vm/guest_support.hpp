#pragma once
// Support for the tests that run inside the QEMU guest of tests/vm (run-guest.sh): vsock sockets
// on CID 1 only, iptables REDIRECT rules that remove themselves, TCP connections from a chosen
// source address, policy text, and the half-close checks of a relay path. Outside the guest no
// AF_VSOCK socket may ever be connected, so every test starts with REQUIRE_VSOCK_LOOPBACK(), which
// decides without connecting.
#include <gtest/gtest.h>
#include <sys/socket.h>
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "../integration/harness.hpp"
#include "tests/support/require.hpp"

namespace pfp::test::vm {

constexpr uint32_t kLocalCid = VMADDR_CID_LOCAL;  // 1: the only CID these tests connect to

// The vsock_loopback module is loaded: only the guest's init does that.
bool vsock_loopback_available();
bool iptables_available();

#define REQUIRE_VSOCK_LOOPBACK()                            \
    PFP_REQUIRE(::pfp::test::vm::vsock_loopback_available() \
                    ? ""                                    \
                    : "vsock loopback (run inside the guest: tests/vm/run-guest.sh)")

// The guest gets iptables-legacy from the host (package iptables); without it the transparent
// tests cannot get an original destination, which is a failure, not a reason to skip.
#define REQUIRE_IPTABLES()                                                            \
    if (!::pfp::test::vm::iptables_available())                                       \
    GTEST_FAIL() << "no iptables in the guest (install the host's iptables package: " \
                    "scripts/install-deps.sh)"

// A listener bound to VMADDR_CID_ANY:port.
unique_fd listen_vsock(uint32_t port, int backlog = 256);
// Connects to CID 1 (VMADDR_CID_LOCAL) only; returns an empty fd on failure (errno set).
unique_fd connect_vsock(uint32_t port, std::chrono::milliseconds timeout = 10s);
// accept() with a deadline; an empty fd on timeout.
unique_fd accept_within(int listener, std::chrono::milliseconds timeout = 10s);
uint32_t peer_cid(int vsock_fd);

// The harness's echo server on VMADDR_CID_ANY:port.
struct VsockEchoServer : EchoServer {
    explicit VsockEchoServer(uint32_t port) : EchoServer(listen_vsock(port)) {}
};

// A TCP connection to 127.0.0.1:port from the source address `source` ("127.0.0.9"), so that an
// iptables rule can match the test's client by source and leave the proxies' own connections
// alone. Empty fd on failure.
unique_fd connect_tcp_from(const std::string& source, uint16_t port,
                           std::chrono::milliseconds timeout = 10s);

// An iptables rule (`rule` as iptables takes it after -A, the chain first) in `table`; deleted
// on destruction.
class IptablesRule {
  public:
    IptablesRule(std::string table, std::vector<std::string> rule);
    ~IptablesRule();
    IptablesRule(const IptablesRule&) = delete;
    IptablesRule& operator=(const IptablesRule&) = delete;
    bool ok() const { return ok_; }
    const std::string& output() const { return output_; }

  private:
    std::string table_;
    std::vector<std::string> rule_;
    bool ok_ = false;
    std::string output_;
};

// A nat OUTPUT rule redirecting TCP from `source` to 127.0.0.1:dport to the local port
// `to_port`. Adding any NAT rule also makes conntrack track connections, which SO_ORIGINAL_DST
// needs even for connections no rule touches.
class Redirect : public IptablesRule {
  public:
    Redirect(const std::string& source, uint16_t dport, uint16_t to_port);
};

// A filter OUTPUT rule (`rule` as iptables takes it after the chain).
class OutputRule : public IptablesRule {
  public:
    explicit OutputRule(std::vector<std::string> rule);
};

// Policy text: proxy("in", "tcp:127.0.0.1:80", "vsock:1:5000", "\"workers\": 2").
std::string proxy(const std::string& name, const std::string& listen, const std::string& upstream,
                  const std::string& extra = "");
std::string policy(const std::vector<std::string>& proxies, const std::string& top_extra = "");

std::string tcp(uint16_t port);  // "tcp:127.0.0.1:PORT"
std::string hex(const std::string& bytes);

// Half-close through a relay path, checked at both ends: a TCP client at 127.0.0.1:`in` whose
// connection reaches a TCP server these start on 127.0.0.1:`server` (one connection each). `d`'s
// log goes with a failure. `conversation`: client and server first converse() (harness.hpp), which
// hands the connection to thread pairs where the relays have `"relay": "threads"`.
// The client's FIN crosses first: the server answers after it, and the answer still arrives.
void expect_client_half_close_then_reply(const Daemon& d, uint16_t in, uint16_t server,
                                         bool conversation = false);
// The server's FIN crosses first: the client reads to it, still sends, and the server gets that;
// the client's connection ends once both FINs have passed.
void expect_server_half_close_then_client_sends(const Daemon& d, uint16_t in, uint16_t server,
                                                bool conversation = false);
// Every worker of `d` runs its loop thread and `pairs` thread pairs (within 20 s).
void expect_thread_pairs(const Daemon& d, size_t pairs);

bool write_text(int fd, const std::string& text);
// One request/answer through an echo path: sends `text`, reads as many bytes back.
bool echoes(int fd, const std::string& text);

}  // namespace pfp::test::vm
