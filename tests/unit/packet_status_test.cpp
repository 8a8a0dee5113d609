// A packet proxy's counters: the supervisor's plausibility check of a worker's report (monotonic,
// bounded growth, one stream at a time, no more out than in, no more verdicts than packets, no more
// cut than sent), and
// how status (JSON, table) and metrics show them.
#include <gtest/gtest.h>

#include "supervisor/status.hpp"
#include "supervisor/supervisor.hpp"
#include "tests/unit/status_sample.hpp"

namespace pfp::supervisor {
namespace {

using std::chrono::seconds;

ipc::PacketStats counters() {
    ipc::PacketStats k;
    k.streams = 3;
    k.streams_active = 1;
    k.reconnects = 2;
    k.connect_failures = 5;
    k.stream_errors = 1;
    k.packets_in = 100;
    k.bytes_in = 64000;
    k.packets_out = 90;
    k.bytes_out = 57600;
    k.verdicts_drop = 95;
    k.verdicts_accept = 5;
    k.dropped_stream_down = 4;
    k.dropped_malformed = 1;
    k.dropped_destination = 2;
    k.dropped_source = 3;
    k.dropped_reserved = 6;
    k.dropped_port = 7;
    k.send_errors = 8;
    k.queue_overruns = 9;
    k.packets_cut = 10;
    return k;
}

DaemonStatus sample() {
    ProxyStatus raw = running_proxy("raw", "stream-to-raw", "vsock:any:1200", "raw:route");
    add_counters(raw.counters, counters());
    return status_beside_web(raw);
}

TEST(PacketStats, WireRoundTrip) {
    const ipc::PacketStats k = counters();
    EXPECT_EQ(ipc::encode_stats(k).size(), ipc::kPacketStatsSize);
    EXPECT_EQ(ipc::decode_packet_stats(ipc::encode_stats(k)), k);
    EXPECT_THROW(ipc::decode_packet_stats(std::string(ipc::kStreamStatsSize, '\0')),
                 ipc::protocol_error);
}

TEST(PacketStats, ImplausibleReports) {
    const ipc::PacketStats k = counters();
    EXPECT_EQ(implausible_stats(ipc::PacketStats{}, k, seconds(1)), "");
    ipc::PacketStats fewer = k;
    fewer.dropped_port = 6;
    EXPECT_EQ(implausible_stats(k, fewer, seconds(1)), "dropped_port went down from 7 to 6");
    ipc::PacketStats two = k;
    two.streams_active = 2;
    EXPECT_EQ(implausible_stats(k, two, seconds(1)),
              "streams_active 2 is more than the worker can hold");
    ipc::PacketStats out = k;
    out.packets_out = 101;
    EXPECT_NE(implausible_stats(k, out, seconds(1)).find("more packets or bytes out"),
              std::string::npos);
    ipc::PacketStats verdicts = k;
    verdicts.verdicts_accept = 6;
    EXPECT_EQ(implausible_stats(k, verdicts, seconds(1)), "more verdicts than packets read");
    ipc::PacketStats cut = k;
    cut.packets_cut = 91;
    EXPECT_EQ(implausible_stats(k, cut, seconds(1)), "more packets cut (91) than sent (90)");
    ipc::PacketStats flood = k;
    flood.packets_in = uint64_t{1} << 40;
    EXPECT_NE(implausible_stats(k, flood, seconds(1)).find("packets_in grew by"),
              std::string::npos);
    // A gauge may go down.
    ipc::PacketStats closed = k;
    closed.streams_active = 0;
    EXPECT_EQ(implausible_stats(k, closed, seconds(1)), "");
}

TEST(PacketStats, StreamsBytesAndFilterDropsFillTheCommonColumns) {
    ProxyCounters c;
    add_counters(c, counters());
    add_counters(c, counters());
    EXPECT_EQ(c.accepted, 6u);
    EXPECT_EQ(c.active, 2u);
    EXPECT_EQ(c.bytes_up, 128000u);
    EXPECT_EQ(c.bytes_down, 115200u);
    EXPECT_EQ(c.denied, 2u * (1 + 2 + 3 + 6 + 7));
    ASSERT_TRUE(c.packet);
    EXPECT_EQ(c.packet->dropped_reserved, 12u);
    EXPECT_FALSE(c.datagram);
}

TEST(PacketStats, StatusShowsThem) {
    const DaemonStatus s = sample();
    EXPECT_EQ(status_from_json(nlohmann::json::parse(to_json(s).dump())), s);
    EXPECT_FALSE(to_json(s)["proxies"][0]["counters"].contains("packet"));
    EXPECT_EQ(to_json(s)["proxies"][1]["counters"]["packet"]["dropped_port"], 7);
    const std::string table = render_table(s);
    EXPECT_NE(table.find("raw: packets 100 in, 90 out (10 cut to the route's MTU); verdicts 95 "
                         "drop, 5 accept; dropped: 4 "
                         "stream down, 2 destination, 3 source, 6 reserved, 7 port, 1 malformed, "
                         "8 send errors; 2 reconnects, 1 stream errors, 9 queue overruns\n"),
              std::string::npos)
        << table;
    const std::string metrics = render_prometheus(s);
    const std::string labels = "{proxy=\"raw\",kind=\"stream-to-raw\"";
    for (const std::string& line :
         {"pfproxy_packets_total" + labels + ",direction=\"out\"} 90\n",
          "pfproxy_packet_verdicts_total" + labels + ",verdict=\"accept\"} 5\n",
          "pfproxy_packets_dropped_total" + labels + ",reason=\"reserved\"} 6\n",
          "pfproxy_packets_cut_total" + labels + "} 10\n",
          "pfproxy_packets_dropped_total" + labels + ",reason=\"port\"} 7\n",
          "pfproxy_packet_stream_events_total" + labels + ",event=\"reconnect\"} 2\n"})
        EXPECT_NE(metrics.find(line), std::string::npos) << line << metrics;
    EXPECT_EQ(metrics.find("pfproxy_packets_total{proxy=\"web\""), std::string::npos);
    DaemonStatus streams = s;
    streams.proxies.pop_back();
    EXPECT_EQ(render_prometheus(streams).find("pfproxy_packet"), std::string::npos);
    // A status whose packet counters lack a field is refused, naming it.
    auto j = to_json(s);
    j["proxies"][1]["counters"]["packet"].erase("send_errors");
    EXPECT_THROW(status_from_json(j), std::runtime_error);
}

}  // namespace
}  // namespace pfp::supervisor
