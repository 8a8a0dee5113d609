// A KCP tunnel proxy's counters: the supervisor's plausibility check of a worker's report
// (monotonic, bounded growth, no more conversations than it may hold, no more drops than
// datagrams read), and how status (JSON, table) and metrics show them.
#include <gtest/gtest.h>

#include "supervisor/status.hpp"
#include "supervisor/supervisor.hpp"

namespace pfp::supervisor {
namespace {

using std::chrono::seconds;

ipc::TunnelStats counters() {
    ipc::TunnelStats t;
    uint64_t v = 1;
    for (const auto& f : ipc::tunnel_fields()) t.*f.field = v++;
    t.sessions = 50;
    t.sessions_active = 4;
    t.datagrams_in = 1000;
    return t;
}

TEST(TunnelStats, WireRoundTrip) {
    const ipc::TunnelStats t = counters();
    const std::string wire = ipc::encode_stats(t);
    EXPECT_EQ(wire.size(), ipc::kTunnelStatsSize);
    EXPECT_EQ(ipc::decode_tunnel_stats(wire), t);
    EXPECT_THROW(ipc::decode_tunnel_stats(wire + "x"), ipc::protocol_error);
}

TEST(TunnelStats, ImplausibleReports) {
    const ipc::TunnelStats before = counters();
    EXPECT_EQ(implausible_stats(before, before, seconds(1), 10), "");
    ipc::TunnelStats down = before;
    down.retransmits -= 1;
    EXPECT_NE(implausible_stats(before, down, seconds(1), 10).find("retransmits went down"),
              std::string::npos);
    ipc::TunnelStats crowded = before;
    crowded.sessions_active = 11;
    EXPECT_NE(implausible_stats(before, crowded, seconds(1), 10).find("sessions_active 11"),
              std::string::npos);
    ipc::TunnelStats drops = before;
    drops.dropped_unknown += 2000;
    EXPECT_NE(implausible_stats(before, drops, seconds(1), 10).find("more datagrams dropped"),
              std::string::npos);
    ipc::TunnelStats burst = before;
    burst.datagrams_in += kMaxConnectionsPerSecond * 3;
    EXPECT_NE(implausible_stats(before, burst, seconds(1), 10).find("datagrams_in grew"),
              std::string::npos);
}

TEST(TunnelStats, StatusAndMetricsShowThem) {
    DaemonStatus s;
    s.version = "0.1.0";
    s.pid = 1;
    s.policy = "p.json";
    s.state = "running";
    ProxyStatus k;
    k.name = "ks";
    k.kind = "kcp-server";
    k.listen = "udp:0.0.0.0:4000";
    k.upstream = "tcp:127.0.0.1:22";
    k.state = "running";
    add_counters(k.counters, counters());
    s.proxies = {k};
    EXPECT_EQ(k.counters.accepted, 50u);
    EXPECT_EQ(status_from_json(nlohmann::json::parse(to_json(s).dump())), s);
    EXPECT_EQ(to_json(s)["proxies"][0]["counters"]["tunnel"]["dropped_refused"], 19);
    const std::string table = render_table(s);
    EXPECT_NE(table.find("ks: conversations 4 active, 50 opened, 3 handshake failures"),
              std::string::npos)
        << table;
    const std::string metrics = render_prometheus(s);
    const std::string labels = "{proxy=\"ks\",kind=\"kcp-server\"";
    for (const std::string& line :
         {"pfproxy_tunnel_conversations_active" + labels + "} 4\n",
          "pfproxy_tunnel_datagrams_total" + labels + ",direction=\"in\"} 1000\n",
          "pfproxy_tunnel_dropped_total" + labels + ",reason=\"rate_limited\"} 14\n",
          "pfproxy_tunnel_dropped_total" + labels + ",reason=\"denied\"} 5\n"})
        EXPECT_NE(metrics.find(line), std::string::npos) << line << metrics;
}

}  // namespace
}  // namespace pfp::supervisor
