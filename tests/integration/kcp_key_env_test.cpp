// psk_env across reloads: a key pf-proxyd reads from its environment is for the supervisor only.
// A reload that adds a tunnel naming another variable reads that key (the new tunnel carries
// data), and neither variable reaches any worker: those started before the reload, the new
// tunnel's, nor a plain relay's new generation spawned after it.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "kcp_support.hpp"
#include "udp_support.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

constexpr const char* kKeyA = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";
constexpr const char* kKeyB = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

// The test process's environment, put back when the test ends (pf-proxyd inherits it at fork).
class ScopedVariable {
  public:
    ScopedVariable(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
    ~ScopedVariable() { ::unsetenv(name_); }
    ScopedVariable(const ScopedVariable&) = delete;
    ScopedVariable& operator=(const ScopedVariable&) = delete;

  private:
    const char* name_;
};

std::string tunnel_pair(const std::string& suffix, const std::string& variable, uint16_t client,
                        uint16_t server, uint16_t upstream) {
    const std::string key = ", \"psk_env\": \"" + variable + "\"}";
    return "{\"name\": \"kc" + suffix +
           "\", \"tunnel\": \"kcp\", \"listen\": \"tcp:127.0.0.1:" + std::to_string(client) +
           "\", \"upstream\": \"udp:127.0.0.1:" + std::to_string(server) + "\"" + key +
           ",\n{\"name\": \"ks" + suffix +
           "\", \"tunnel\": \"kcp\", \"listen\": \"udp:127.0.0.1:" + std::to_string(server) +
           "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream) + "\"" + key;
}

std::string plain_relay(uint16_t listen, uint16_t upstream) {
    return "{\"name\": \"plain\", \"listen\": \"tcp:127.0.0.1:" + std::to_string(listen) +
           "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream) + "\"}";
}

std::string policy(const std::vector<std::string>& proxies) {
    std::string s = "{\"user\": \"nobody\", \"drain_timeout\": \"2s\", \"proxies\": [";
    for (size_t i = 0; i < proxies.size(); ++i) s += (i ? ",\n" : "\n") + proxies[i];
    return s + "\n]}\n";
}

// 64 KiB through `port` and back from an echo upstream, intact.
bool echoes_through(uint16_t port) {
    unique_fd c = connect_tcp(port, 20s);
    if (!c) return false;
    set_timeouts(c.get(), 20s);
    std::vector<char> out(64 << 10), in(out.size());
    fill_pattern(out, 5);
    return write_all(c.get(), out.data(), out.size()) &&
           read_exact(c.get(), in.data(), in.size()) && in == out;
}

// Which of the workers' environments hold a key or a variable's name (empty: none).
std::string leaks(const Daemon& d) {
    std::string found;
    for (pid_t w : d.workers()) {
        const std::string env = read_text("/proc/" + std::to_string(w) + "/environ");
        for (const char* secret : {kKeyA, kKeyB, "PFP_TEST_KEY_A=", "PFP_TEST_KEY_B="})
            if (env.find(secret) != std::string::npos)
                found += cmdline_of(w) + " holds " + std::string(secret).substr(0, 16) + "; ";
    }
    return found;
}

TEST(KcpKeyEnvironment, AReloadReadsANewVariableAndNoWorkerEverSeesEither) {
    raise_nofile(16384);
    ScopedVariable a("PFP_TEST_KEY_A", kKeyA), b("PFP_TEST_KEY_B", kKeyB);
    const uint16_t up = free_port(), plain_in = free_port(), plain_up2 = free_port();
    EchoServer echo(up);
    CountingServer echo2(plain_up2, echo_until_eof);
    const uint16_t in_a = free_port(), udp_a = free_udp_port();
    const uint16_t in_b = free_port(), udp_b = free_udp_port();

    Daemon d(
        policy({plain_relay(plain_in, up), tunnel_pair("a", "PFP_TEST_KEY_A", in_a, udp_a, up)}));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    ASSERT_TRUE(echoes_through(in_a)) << d.log();
    ASSERT_TRUE(echoes_through(plain_in)) << d.log();
    ASSERT_EQ(d.workers().size(), 3u);
    const pid_t old_plain = worker_of(d, "plain");
    EXPECT_EQ(leaks(d), "");

    // Adds a tunnel keyed by the other variable and changes the plain relay (a new worker
    // generation spawned after the reload); the first tunnel is unchanged.
    ASSERT_TRUE(d.rewrite_policy(policy({plain_relay(plain_in, plain_up2),
                                         tunnel_pair("a", "PFP_TEST_KEY_A", in_a, udp_a, up),
                                         tunnel_pair("b", "PFP_TEST_KEY_B", in_b, udp_b, up)})));
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_log("(policy generation 2")) << d.log();
    // The first tunnel's workers stay; the plain relay's old one drains and goes.
    ASSERT_TRUE(wait_until([&] {
        const std::vector<pid_t> w = d.workers();
        return w.size() == 5 && std::find(w.begin(), w.end(), old_plain) == w.end();
    })) << d.log();
    ASSERT_TRUE(echoes_through(in_b)) << "the reloaded key did not reach the new tunnel\n"
                                      << d.log();
    ASSERT_TRUE(echoes_through(in_a)) << d.log();
    ASSERT_TRUE(echoes_through(plain_in)) << d.log();
    EXPECT_EQ(echo2.accepted(), 1) << "the plain relay's new generation is not serving";
    EXPECT_EQ(leaks(d), "");
    // Nor in the log.
    EXPECT_EQ(d.log().find(kKeyA), std::string::npos);
    EXPECT_EQ(d.log().find(kKeyB), std::string::npos);
}

}  // namespace
