// The `busy_poll` key (docs/policy.md): a short window in microseconds for the stream kinds, with
// one-line errors naming the key, an upper bound, refused for kinds whose loop does not use it;
// and its way to the worker through the HANDOVER.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/handover.hpp"
#include "policy/duration.hpp"
#include "policy/model.hpp"
#include "policy/parse.hpp"
#include "supervisor/handover_builder.hpp"
#include "tests/unit/policy_errors.hpp"

namespace pfp::policy {
namespace {

using std::chrono::microseconds;

std::string entry(const std::string& extra, const std::string& listen = "tcp:127.0.0.1:8080",
                  const std::string& upstream = "tcp:127.0.0.1:9000") {
    return R"({"proxies": [{"name": "p", "listen": ")" + listen + R"(", "upstream": ")" + upstream +
           "\"" + extra + "}]}";
}

microseconds window(const std::string& value) {
    return parse_policy(entry(R"(, "busy_poll": )" + value), "p.json").proxies.at(0).busy_poll;
}

TEST(BusyPollPolicy, OffByDefault) {
    EXPECT_EQ(parse_policy(entry(""), "p.json").proxies.at(0).busy_poll, microseconds(0));
}

TEST(BusyPollPolicy, AcceptedForms) {
    EXPECT_EQ(window(R"("50us")"), microseconds(50));
    EXPECT_EQ(window(R"("200us")"), microseconds(200));
    EXPECT_EQ(window(R"("0.5ms")"), microseconds(500));
    EXPECT_EQ(window(R"("1ms")"), microseconds(1000));
    EXPECT_EQ(window(R"("10ms")"), microseconds(10'000));
    EXPECT_EQ(window(R"("0.0001s")"), microseconds(100));
    EXPECT_EQ(window("0.00005"), microseconds(50));  // seconds, like every other duration
    EXPECT_EQ(window(R"("0us")"), microseconds(0));  // written out: off
    EXPECT_EQ(window("0"), microseconds(0));
}

TEST(BusyPollPolicy, RejectedFormsNameTheKey) {
    const std::pair<const char*, const char*> cases[] = {
        {R"("20ms")", "expected a duration of at most 10ms, got \"20ms\""},
        {R"("10001us")", "expected a duration of at most 10ms, got \"10001us\""},
        {R"("1h")", "expected a duration of at most 10ms, got \"1h\""},
        {"0.5", "expected a duration of at most 10ms, got 0.5"},
        {R"("0.5us")", "expected a whole number of microseconds, got \"0.5us\""},
        {R"("50 us")",
         "expected a duration (a number of seconds or a string such as \"50us\", \"0.5ms\"), got "
         "\"50 us\""},
        {R"("50µs")",
         "expected a duration (a number of seconds or a string such as \"50us\", \"0.5ms\"), got "
         "\"50µs\""},
        {"-1", "expected a duration >= 0, got -1"},
        {"true",
         "expected a duration (a number of seconds or a string such as \"50us\", \"0.5ms\"), got "
         "boolean"},
    };
    for (const auto& [value, message] : cases) {
        const std::string e = errors(entry(R"(, "busy_poll": )" + std::string(value)));
        EXPECT_EQ(e.substr(e.find("/proxies")), std::string("/proxies/0/busy_poll: ") + message)
            << value;
        EXPECT_EQ(e.find('\n'), std::string::npos) << e;  // one line
    }
}

TEST(BusyPollPolicy, EveryStreamKindTakesIt) {
    for (const auto& [listen, upstream] :
         {std::pair{"tcp:127.0.0.1:1", "tcp:127.0.0.1:2"},
          std::pair{"tcp:127.0.0.1:1", "vsock:3:1"}, std::pair{"vsock:any:1", "tcp:127.0.0.1:2"},
          std::pair{"vsock:any:1", "vsock:3:1"}, std::pair{"unix:/run/a.sock", "unix:/run/b.sock"}})
        EXPECT_EQ(errors(entry(R"(, "busy_poll": "100us")", listen, upstream)), "<valid>")
            << listen << " -> " << upstream;
}

TEST(BusyPollPolicy, RefusedWhereItMeansNothing) {
    // A datagram forwarder, a packet kind and a KCP tunnel run loops the window is not wired into:
    // refused, not silently ignored.
    EXPECT_EQ(errors(entry(R"(, "busy_poll": "50us")", "udp:127.0.0.1:1", "udp:127.0.0.1:2")),
              "p.json:1:101: /proxies/0/busy_poll: busy_poll applies only to stream relays, not "
              "udp-forward (a datagram forwarder has no connections)");
    EXPECT_EQ(errors(entry(R"(, "busy_poll": "50us")", "vsock:any:1", "raw:route")),
              "p.json:1:91: /proxies/0/busy_poll: busy_poll applies only to stream relays, not "
              "stream-to-raw (proxy \"p\" carries packets, not connections)");
    EXPECT_EQ(errors(entry(R"(, "tunnel": "kcp", "busy_poll": "50us")", "tcp:127.0.0.1:1",
                           "udp:127.0.0.1:2")),
              "p.json:1:118: /proxies/0/busy_poll: busy_poll applies only to stream relays, not "
              "kcp-client (a KCP tunnel's loop runs on its own timers)");
}

TEST(BusyPollPolicy, AChangedWindowIsAChangedConfiguration) {
    const Proxy a = parse_policy(entry(R"(, "busy_poll": "50us")"), "p.json").proxies.at(0);
    const Proxy b = parse_policy(entry(R"(, "busy_poll": "200us")"), "p.json").proxies.at(0);
    EXPECT_FALSE(same_configuration(a, b));  // a reload starts a new generation with it
}

TEST(BusyPollPolicy, TravelsInTheHandover) {
    const Proxy p = parse_policy(entry(R"(, "busy_poll": "150us")"), "p.json").proxies.at(0);
    const Handover h = supervisor::build_handover(p, p.listen, 0, 1, std::chrono::seconds(30));
    EXPECT_EQ(std::get<StreamOptions>(h.options).busy_poll, microseconds(150));
    const Handover back = Handover::from_json(h.to_json());
    EXPECT_EQ(std::get<StreamOptions>(back.options).busy_poll, microseconds(150));
    // The worker's decoder refuses what no policy can produce.
    std::string text = h.to_json();
    const std::string key = "\"busy_poll_us\":150";
    ASSERT_NE(text.find(key), std::string::npos) << text;
    text.replace(text.find(key), key.size(), "\"busy_poll_us\":-1");
    EXPECT_THROW((void)Handover::from_json(text), std::runtime_error);
}

TEST(BusyPollPolicy, DurationTextInMicroseconds) {
    using detail::DurationStatus;
    using detail::parse_duration_text_us;
    EXPECT_EQ(parse_duration_text_us("75us").ms, 75);
    EXPECT_EQ(parse_duration_text_us("1.25ms").ms, 1250);
    EXPECT_EQ(parse_duration_text_us("2s").ms, 2'000'000);
    EXPECT_EQ(parse_duration_text_us("1.0005us").status, DurationStatus::inexact);
    EXPECT_EQ(parse_duration_text_us("us").status, DurationStatus::syntax);
    EXPECT_EQ(parse_duration_text_us("9999999999999s").status, DurationStatus::too_large);
    // The millisecond grammar everywhere else is unchanged: no "us" there.
    EXPECT_EQ(detail::parse_duration_text("50us").status, DurationStatus::syntax);
    EXPECT_EQ(detail::format_us(microseconds(50)), "50us");
    EXPECT_EQ(detail::format_us(microseconds(10'000)), "10ms");
}

}  // namespace
}  // namespace pfp::policy
