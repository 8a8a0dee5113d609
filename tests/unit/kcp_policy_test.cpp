// kcp-client and kcp-server entries in a policy (docs/policy.md, "KCP tunnels"): the `tunnel` key
// that makes them, their keys and defaults, the keys they refuse (and other kinds refuse theirs),
// the PSK's sources, and the handover that carries it all to the worker.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "policy/parse.hpp"
#include "policy/psk.hpp"
#include "supervisor/handover_builder.hpp"
#include "tests/unit/policy_errors.hpp"

namespace pfp::policy {
namespace {

constexpr const char* kHexKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

std::string client(const std::string& extra = "") {
    return R"({"proxies": [{"name": "k", "tunnel": "kcp", "listen": "tcp:127.0.0.1:2022", )"
           R"("upstream": "udp:10.0.0.2:4000")" +
           extra + "}]}";
}
std::string server(const std::string& extra = "") {
    return R"({"proxies": [{"name": "k", "tunnel": "kcp", "listen": "udp:0.0.0.0:4000", )"
           R"("upstream": "tcp:127.0.0.1:22")" +
           extra + "}]}";
}

TEST(KcpPolicy, TheTunnelKeyMakesTheKinds) {
    const Policy c = parse_policy(client(), "p.json");
    EXPECT_EQ(c.proxies.at(0).kind, WorkerKind::kcp_client);
    const Policy s = parse_policy(server(), "p.json");
    EXPECT_EQ(s.proxies.at(0).kind, WorkerKind::kcp_server);
    // Defaults: the core's tuning, 180 s idle, 4 MiB socket buffers (more than one window of
    // 1024 datagrams), plain KCP until a PSK source is named.
    const Proxy& p = s.proxies.at(0);
    EXPECT_EQ(p.idle_timeout, std::chrono::seconds(180));
    EXPECT_EQ(p.mtu, 1350);
    EXPECT_EQ(p.socket_buffer, 4 << 20);
    EXPECT_EQ(c.proxies.at(0).socket_buffer, 4 << 20);
    EXPECT_EQ(p.kcp, KcpTuning{});
    EXPECT_TRUE(p.psk_file.empty());
    EXPECT_TRUE(p.psk_env.empty());
}

TEST(KcpPolicy, WithoutTheTunnelKeyTheEntrySaysWhatToWrite) {
    EXPECT_EQ(errors(R"({"proxies": [{"name": "k", "listen": "tcp:127.0.0.1:2022", )"
                     R"("upstream": "udp:10.0.0.2:4000"}]})"),
              "p.json:1:72: /proxies/0/upstream: a tcp listener with a udp upstream carries each "
              "stream over datagrams: write \"tunnel\": \"kcp\" (kind kcp-client)");
    EXPECT_EQ(errors(R"({"proxies": [{"name": "k", "tunnel": "kcp", "listen": "tcp:127.0.0.1:1", )"
                     R"("upstream": "tcp:127.0.0.1:2"}]})"),
              "p.json:1:38: /proxies/0/tunnel: tunnel applies only to a tcp listener with a udp "
              "upstream (kcp-client) or a udp listener with a tcp upstream (kcp-server)");
    EXPECT_EQ(errors(R"({"proxies": [{"name": "k", "tunnel": "wg", "listen": "tcp:127.0.0.1:1", )"
                     R"("upstream": "udp:127.0.0.1:2"}]})"),
              "p.json:1:38: /proxies/0/tunnel: expected \"kcp\", got \"wg\"");
}

TEST(KcpPolicy, EveryTunnelKey) {
    const Policy p = parse_policy(
        server(R"(, "psk_env": "PFPROXY_KCP_PSK", "mtu": 1200, "socket_buffer": 4194304, )"
               R"("statistics": true, "connect_timeout": "3s", "idle_timeout": "30s", )"
               R"("allowed_sources": ["10.0.0.0/8"], )"
               R"("kcp": {"nodelay": false, "interval": "20ms", "resend": 0, )"
               R"("no_congestion_control": false, "send_window": 256, "receive_window": 512, )"
               R"("rekey_after": 1000, "max_sessions": 10, "max_per_source": 2, )"
               R"("hellos_per_second": 5, "hello_burst": 7})"),
        "p.json");
    const Proxy& k = p.proxies.at(0);
    EXPECT_EQ(k.psk_env, "PFPROXY_KCP_PSK");
    EXPECT_EQ(k.mtu, 1200);
    EXPECT_EQ(k.socket_buffer, 4194304);
    EXPECT_EQ(k.idle_timeout, std::chrono::seconds(30));
    EXPECT_FALSE(k.kcp.nodelay);
    EXPECT_EQ(k.kcp.interval, std::chrono::milliseconds(20));
    EXPECT_EQ(k.kcp.rekey_after, 1000u);
    EXPECT_EQ(k.kcp.max_per_source, 2);
    const auto o = supervisor::tunnel_options(k);
    EXPECT_EQ(o.upstream, "tcp:127.0.0.1:22");
    EXPECT_EQ(o.connect_timeout, std::chrono::seconds(3));
    EXPECT_EQ(o.hello_burst, 7);
    EXPECT_EQ(o.receive_window, 512);
    EXPECT_TRUE(o.statistics);
    EXPECT_TRUE(o.psk.empty());  // the parser never reads a key
}

TEST(KcpPolicy, KeysThatDoNotApply) {
    EXPECT_EQ(errors(R"({"proxies": [{"name": "w", "listen": "tcp:127.0.0.1:1", )"
                     R"("upstream": "tcp:127.0.0.1:2", "psk_file": "/k"}]})"),
              "p.json:1:100: /proxies/0/psk_file: psk_file applies only to KCP tunnels "
              "(kcp-client, kcp-server), not tcp-forward");
    EXPECT_EQ(errors(client(R"(, "psk_file": "/k", "psk_env": "K")")),
              "p.json:1:139: /proxies/0/psk_env: psk_file and psk_env cannot both be given (one "
              "PSK per tunnel)");
    EXPECT_EQ(errors(client(R"(, "connect_timeout": "1s")")),
              "p.json:1:129: /proxies/0/connect_timeout: connect_timeout applies only to "
              "kcp-server (its TCP upstream); kcp-client makes no TCP connection, and its "
              "handshake has a schedule of its own");
    EXPECT_EQ(errors(server(R"(, "workers": 2)")),
              "p.json:1:118: /proxies/0/workers: expected 1: kcp-server runs one worker (its "
              "conversations live in the worker that owns the UDP socket)");
    EXPECT_EQ(errors(server(R"(, "max_connections": 5)")),
              "p.json:1:126: /proxies/0/max_connections: max_connections does not apply to "
              "kcp-server (its TCP side only connects out; limit conversations with "
              "kcp.max_sessions)");
    EXPECT_EQ(errors(client(R"(, "kcp": {"max_sessions": 5})")),
              "p.json:1:134: /proxies/0/kcp/max_sessions: max_sessions applies only to kcp-server "
              "(a limit on the conversations it accepts), not kcp-client");
    EXPECT_EQ(errors(client(R"(, "splice": false)")),
              "p.json:1:120: /proxies/0/splice: splice does not apply to a KCP tunnel "
              "(kcp-client)");
    EXPECT_EQ(errors(client(R"(, "idle_timeout": 0)")),
              "p.json:1:126: /proxies/0/idle_timeout: expected a positive duration: a KCP tunnel "
              "ends the conversation of a peer that vanished by its idle timeout");
    EXPECT_EQ(errors(client(R"(, "mtu": 9000)")),
              "p.json:1:117: /proxies/0/mtu: expected an integer 576-1500, got 9000");
    EXPECT_EQ(errors(client(R"(, "psk_env": "1X")")),
              "p.json:1:121: /proxies/0/psk_env: expected the name of an environment variable "
              "(letters, digits and _) such as \"PFPROXY_KCP_PSK\", got \"1X\"");
    EXPECT_EQ(errors(client(R"(, "kcp": {"intervall": "5ms"})")),
              "p.json:1:118: /proxies/0/kcp/intervall: unknown key \"intervall\" (did you mean "
              "\"interval\"?)");
}

class PskFile : public testing::Test {
  protected:
    void SetUp() override { path_ = testing::TempDir() + "kcp-psk-" + std::to_string(::getpid()); }
    void TearDown() override { std::remove(path_.c_str()); }
    void write(const std::string& text, mode_t mode) {
        std::ofstream(path_) << text;
        ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
    }
    std::string path_;
};

TEST_F(PskFile, ReadIntoTheHandoverOnly) {
    write(std::string("  ") + kHexKey + "\n", 0600);
    Policy p = parse_policy(client(R"(, "psk_file": ")" + path_ + "\""), "p.json");
    load_psks(p, [](const char*) -> const char* { return nullptr; });
    ASSERT_EQ(p.proxies.at(0).psk.size(), 32u);
    EXPECT_EQ(static_cast<uint8_t>(p.proxies[0].psk[31]), 0x1f);
    const auto h = supervisor::build_handover(p.proxies[0], p.proxies[0].listen, 0, 1,
                                              std::chrono::seconds(1));
    const auto& o = std::get<TunnelOptions>(h.options);
    ASSERT_EQ(o.psk.size(), 32u);
    EXPECT_EQ(o.psk[1], 1);
    EXPECT_EQ(Handover::from_json(h.to_json()), h);
}

TEST_F(PskFile, RefusedWhenOthersMayReadIt) {
    write(kHexKey, 0640);
    Policy p = parse_policy(client(R"(, "psk_file": ")" + path_ + "\""), "p.json");
    try {
        load_psks(p, [](const char*) -> const char* { return nullptr; });
        FAIL() << "a group-readable key file was accepted";
    } catch (const policy_error& e) {
        EXPECT_NE(std::string(e.what()).find("has mode 0640"), std::string::npos) << e.what();
    }
}

TEST_F(PskFile, RefusedWhenNotAKey) {
    write("not a key", 0600);
    Policy p = parse_policy(client(R"(, "psk_file": ")" + path_ + "\""), "p.json");
    EXPECT_THROW(load_psks(p, [](const char*) -> const char* { return nullptr; }), policy_error);
}

TEST(KcpPolicy, PskFromTheEnvironment) {
    Policy p = parse_policy(server(R"(, "psk_env": "PFP_TEST_KEY")"), "p.json");
    load_psks(p, [](const char* name) -> const char* {
        return std::string(name) == "PFP_TEST_KEY" ? kHexKey : nullptr;
    });
    EXPECT_EQ(p.proxies.at(0).psk.size(), 32u);
    Policy missing = parse_policy(server(R"(, "psk_env": "PFP_TEST_UNSET")"), "p.json");
    try {
        load_psks(missing, [](const char*) -> const char* { return nullptr; });
        FAIL() << "an unset variable was accepted";
    } catch (const policy_error& e) {
        EXPECT_NE(std::string(e.what()).find("PFP_TEST_UNSET is not set"), std::string::npos);
    }
    EXPECT_EQ(decode_psk(std::string(kHexKey).substr(2)), "");  // 31 bytes
    EXPECT_EQ(decode_psk(std::string(kHexKey) + "00"), "");     // 33 bytes
}

}  // namespace
}  // namespace pfp::policy
