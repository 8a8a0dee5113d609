#pragma once
// The raw packet tunnel's chain fixture, shared by the nfqueue and nflog chain tests: namespaces
// A and B joined by a veth pair for their addresses; in each, a reader (nfqueue-to-stream or
// nflog-to-stream) writes the packets bound for the other to a Unix stream, and stream-to-raw
// injects what the other side's reader wrote. The derived fixture adds its iptables rules (and
// routes) in SetUp; start() runs pf-proxyd in both namespaces and waits for both streams. A TCP
// exchange (bulk) or a UDP request and reply (udp_exchange) between A and B then crosses the
// tunnel both ways, and the veth's counters prove it carried none of it.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "netns.hpp"
#include "transparent_support.hpp"

namespace pfp::test::packet_chain {

using namespace pfp::test::transparent;

inline constexpr uint16_t kTcpPort = 8080;
inline constexpr size_t kTotal = 16u << 20;

// One side's policy: `source` (e.g. "nfqueue:3") -> the stream at out_sock, and the stream at
// in_sock -> raw injection. `reader_options` and `injector_options` are more keys of the reader's
// and the injector's entries (", ..." JSON).
inline std::string chain_policy(const std::string& name, const std::string& source,
                                const std::string& out_sock, const std::string& in_sock,
                                const std::string& reader_options = "",
                                const std::string& injector_options = "") {
    return R"({"user": "nobody", "drain_timeout": "1s", "proxies": [)"
           R"({"name": ")" +
           name + R"(-out", "listen": ")" + source + R"(", "upstream": "unix:)" + out_sock + "\"" +
           reader_options + R"(}, {"name": ")" + name + R"(-in", "listen": "unix:)" + in_sock +
           R"(", "upstream": "raw:route")" + injector_options + "}]}";
}

// Packets of the veth device in ns (tx + rx), from /sys inside the namespace.
inline uint64_t veth_packets(const NetNs& ns, const std::string& dev) {
    const std::string out = ns.exec({"cat", "/sys/class/net/" + dev + "/statistics/tx_packets",
                                     "/sys/class/net/" + dev + "/statistics/rx_packets"});
    std::istringstream in(out);
    uint64_t tx = 0, rx = 0;
    in >> tx >> rx;
    return tx + rx;
}

class PacketChain : public ::testing::Test {
  protected:
    // The namespaces and the veth between them (va in A, vb in B) with A's and B's addresses;
    // without `veth_device`, the veth is left to the namespaces' deletion.
    void make_namespaces(const std::string& a4, const std::string& a6, const std::string& b4,
                         const std::string& b6, bool veth_device) {
        a_ = std::make_unique<NetNs>("a");
        b_ = std::make_unique<NetNs>("b");
        if (veth_device) {
            veth_ = std::make_unique<Veth>(*a_, "va", *b_, "vb");
        } else {
            a_->ip(
                {"link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b_->name()});
            a_->ip({"link", "set", "va", "up"});
            b_->ip({"link", "set", "vb", "up"});
        }
        a_->ip({"addr", "add", a4 + "/24", "dev", "va"});
        a_->ip({"addr", "add", a6 + "/64", "dev", "va", "nodad"});
        b_->ip({"addr", "add", b4 + "/24", "dev", "vb"});
        b_->ip({"addr", "add", b6 + "/64", "dev", "vb", "nodad"});
        ab_ = dir_.path() + "/ab.sock";
        ba_ = dir_.path() + "/ba.sock";
    }

    // pf-proxyd in both namespaces (A's with `a_args`), each side's stream to the other up (the
    // first attempt may come before the peer listens).
    void start(const std::string& policy_a, const std::string& policy_b,
               const std::vector<std::string>& a_args = {}) {
        da_ = start_daemon(*a_, policy_a, a_args);
        db_ = start_daemon(*b_, policy_b);
        ASSERT_TRUE(da_->wait_ready(10s)) << da_->log();
        ASSERT_TRUE(db_->wait_ready(10s)) << db_->log();
        ASSERT_TRUE(da_->wait_log("stream to unix:" + ab_ + " connected", 10s)) << da_->log();
        ASSERT_TRUE(db_->wait_log("stream to unix:" + ba_ + " connected", 10s)) << db_->log();
        veth_before_ = veth_packets(*a_, "va");
    }

    // A TCP handshake and kTotal bytes each way between A (client) and B (server), checksummed.
    // `accepted` runs on B's connection thread before the transfer: the place to start a helper
    // thread, since the client's namespace child has been forked by then (netns.hpp).
    void bulk(const std::string& server_ip, const std::string& client_ip,
              const std::function<void()>& accepted = {}) {
        std::mutex mu;
        Transfer server_side;
        std::string peer;
        {
            Server server(listen_tcp_in(*b_, server_ip, kTcpPort),
                          [&](int fd, const std::string& p) {
                              if (accepted) accepted();
                              Transfer t = send_and_receive(fd, kTotal, 1000);
                              std::lock_guard lock(mu);
                              server_side = t;
                              peer = p;
                          });
            ChildResult r = a_->run_in_child(
                [&] {
                    unique_fd c;
                    if (int err = connect_tcp_here(server_ip, kTcpPort, c, kIo))
                        return std::string("connect failed: ") + std::strerror(err);
                    return describe(send_and_receive(c.get(), kTotal, 7));
                },
                60s);
            ASSERT_TRUE(r.ok) << r.output << "\n" << da_->log() << db_->log();
            ASSERT_TRUE(wait_until([&] {
                std::lock_guard lock(mu);
                return !peer.empty();
            }));
            // Each side received exactly what the other sent.
            Transfer expect;
            expect.received = kTotal;
            expect.sent_hash = server_side.received_hash;  // the client's bytes, as B saw them
            expect.received_hash = server_side.sent_hash;  // B's bytes, as A must have seen them
            EXPECT_EQ(r.output, describe(expect));
            EXPECT_EQ(server_side.received, kTotal) << da_->log() << db_->log();
            EXPECT_TRUE(server_side.ok);
        }
        EXPECT_EQ(peer.substr(0, peer.find(' ')), client_ip) << peer;  // "ip port"
        // Thousands of packets crossed; the veth saw at most a few (IPv6 neighbour discovery).
        EXPECT_LT(veth_packets(*a_, "va") - veth_before_, 20u);
    }

    // A UDP request from A to ip:5353 in B and B's reply, both through the tunnel.
    void udp_exchange(const std::string& ip) {
        unique_fd srv = b_->run([&] {
            const pfp::SockAddr a = make_addr(ip, 5353);
            unique_fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
            EXPECT_EQ(::bind(fd.get(), a.get(), a.len), 0);
            set_timeouts(fd.get(), kIo);
            return fd;
        });
        std::thread echo = running_thread([&] {  // running before the fork below (netns.hpp)
            char buf[2048];
            sockaddr_storage from{};
            socklen_t len = sizeof from;
            const ssize_t n =
                ::recvfrom(srv.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
            if (n <= 0) return;
            const std::string reply = "B got " + std::string(buf, static_cast<size_t>(n));
            ::sendto(srv.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
                     len);
        });
        ChildResult r = a_->run_in_child([&] {
            const pfp::SockAddr a = make_addr(ip, 5353);
            unique_fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
            set_timeouts(fd.get(), kIo);
            const std::string q(1200, 'q');
            if (::sendto(fd.get(), q.data(), q.size(), 0, a.get(), a.len) < 0)
                return std::string("sendto failed");
            char buf[2048];
            const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
            return n < 0 ? std::string("no reply") : std::string(buf, static_cast<size_t>(n));
        });
        echo.join();
        EXPECT_TRUE(r.ok) << r.output;
        EXPECT_EQ(r.output, "B got " + std::string(1200, 'q')) << ip << "\n" << da_->log();
    }

    std::unique_ptr<NetNs> a_, b_;
    std::unique_ptr<Veth> veth_;
    std::vector<std::unique_ptr<IptablesRule>> rules_;
    TempDir dir_;
    std::string ab_, ba_;
    std::unique_ptr<Daemon> da_, db_;
    uint64_t veth_before_ = 0;
};

}  // namespace pfp::test::packet_chain
