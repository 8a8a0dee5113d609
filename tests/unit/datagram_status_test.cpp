// A datagram proxy's counters: the supervisor's plausibility check of a worker's report, and how
// status (JSON, table) and metrics show them.
#include <gtest/gtest.h>

#include "supervisor/status.hpp"
#include "supervisor/supervisor.hpp"
#include "tests/unit/status_sample.hpp"

namespace pfp::supervisor {
namespace {

using std::chrono::seconds;

ipc::DatagramStats counters() {
    ipc::DatagramStats d;
    d.flows_created = 10;
    d.flows_active = 2;
    d.flows_expired = 5;
    d.flows_evicted = 3;
    d.datagrams_up = 100;
    d.datagrams_down = 90;
    d.bytes_up = 6400;
    d.bytes_down = 5760;
    d.denied = 1;
    d.truncated = 0;
    d.refused = 4;
    d.flow_errors = 0;
    d.send_errors = 7;
    return d;
}

DaemonStatus sample() {
    ProxyStatus dns = running_proxy("dns", "udp-forward", "udp:127.0.0.1:53", "udp:10.0.0.2:53");
    add_counters(dns.counters, counters());
    return status_beside_web(dns);
}

TEST(DatagramStats, ImplausibleReports) {
    const ipc::DatagramStats d = counters();
    EXPECT_EQ(implausible_stats(ipc::DatagramStats{}, d, seconds(1), 100), "");
    ipc::DatagramStats fewer = d;
    fewer.datagrams_down = 89;
    EXPECT_EQ(implausible_stats(d, fewer, seconds(1), 100),
              "datagrams_down went down from 90 to 89");
    ipc::DatagramStats full = d;
    full.flows_active = 101;
    full.flows_created = 200;
    EXPECT_EQ(implausible_stats(d, full, seconds(1), 100),
              "flows_active 101 is more than the worker can hold");
    ipc::DatagramStats flood = d;
    flood.send_errors = uint64_t{1} << 40;
    EXPECT_NE(implausible_stats(d, flood, seconds(1), 100).find("send_errors grew by"),
              std::string::npos);
}

TEST(DatagramStats, FlowsAndBytesCountAsConnectionsAndBytes) {
    ProxyCounters c;
    add_counters(c, counters());
    add_counters(c, counters());
    EXPECT_EQ(c.accepted, 20u);
    EXPECT_EQ(c.active, 4u);
    EXPECT_EQ(c.bytes_up, 12800u);
    EXPECT_EQ(c.denied, 2u);
    ASSERT_TRUE(c.datagram);
    EXPECT_EQ(c.datagram->refused, 8u);
    EXPECT_EQ(c.datagram->flows_evicted, 6u);
}

TEST(DatagramStats, StatusShowsThem) {
    const DaemonStatus s = sample();
    EXPECT_EQ(status_from_json(nlohmann::json::parse(to_json(s).dump())), s);
    EXPECT_FALSE(to_json(s)["proxies"][0]["counters"].contains("datagram"));
    EXPECT_EQ(to_json(s)["proxies"][1]["counters"]["datagram"]["send_errors"], 7);
    const std::string table = render_table(s);
    EXPECT_NE(table.find("dns: flows 2 active, 10 created, 5 expired, 3 evicted; datagrams 100 up, "
                         "90 down; dropped: 1 denied, 0 truncated, 4 refused, 0 flow errors, 7 "
                         "send errors\n"),
              std::string::npos)
        << table;
    const std::string metrics = render_prometheus(s);
    const std::string labels = "{proxy=\"dns\",kind=\"udp-forward\"";
    for (const std::string& line :
         {"pfproxy_flows_active" + labels + "} 2\n",
          "pfproxy_flows_total" + labels + ",event=\"evicted\"} 3\n",
          "pfproxy_datagrams_total" + labels + ",direction=\"down\"} 90\n",
          "pfproxy_datagrams_dropped_total" + labels + ",reason=\"refused\"} 4\n"})
        EXPECT_NE(metrics.find(line), std::string::npos) << line << metrics;
    EXPECT_EQ(metrics.find("pfproxy_flows_active{proxy=\"web\""), std::string::npos);
    // No datagram proxy: no datagram families at all.
    DaemonStatus streams = s;
    streams.proxies.pop_back();
    EXPECT_EQ(render_prometheus(streams).find("pfproxy_flows"), std::string::npos);
}

}  // namespace
}  // namespace pfp::supervisor
