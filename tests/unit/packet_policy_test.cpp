// Policy entries of the packet kinds: nfqueue-to-stream and stream-to-raw are derived from their
// listener and upstream, take the queue keys only with an nfqueue listener, run one worker, and
// refuse an fc-vsock upstream for the queue reader.
#include <gtest/gtest.h>

#include <string>

#include "policy/parse.hpp"

namespace pfp::policy {
namespace {

std::string entry(const std::string& listen, const std::string& upstream,
                  const std::string& extra = "") {
    return R"({"proxies": [{"name": "p", "listen": ")" + listen + R"(", "upstream": ")" + upstream +
           "\"" + extra + "}]}";
}

std::string errors(const std::string& text) {
    try {
        (void)parse_policy(text, "p.json");
    } catch (const policy_error& e) {
        return e.what();
    }
    return "<valid>";
}

TEST(PacketPolicy, KindsAndQueueOptions) {
    Policy p = parse_policy(entry("nfqueue:7", "vsock:3:1200",
                                  R"(, "on_stream_down": "accept", "fail_open": true,)"
                                  R"( "queue_maxlen": 4096)"),
                            "p.json");
    EXPECT_EQ(p.proxies.at(0).kind, WorkerKind::nfqueue_to_stream);
    EXPECT_TRUE(p.proxies[0].accept_when_stream_down);
    EXPECT_TRUE(p.proxies[0].fail_open);
    EXPECT_EQ(p.proxies[0].queue_maxlen, 4096u);
    EXPECT_EQ(p.proxies[0].listen.queue, 7);
    p = parse_policy(entry("unix:/run/raw.sock", "raw:eth0"), "p.json");
    EXPECT_EQ(p.proxies.at(0).kind, WorkerKind::stream_to_raw);
    EXPECT_FALSE(p.proxies[0].accept_when_stream_down);
    EXPECT_EQ(p.proxies[0].upstream.name, "eth0");
}

TEST(PacketPolicy, Errors) {
    EXPECT_EQ(errors(entry("tcp:127.0.0.1:1", "tcp:127.0.0.1:2", R"(, "on_stream_down": "drop")")),
              "p.json:1:106: /proxies/0/on_stream_down: on_stream_down applies only to nfqueue "
              "listeners, not tcp");
    EXPECT_EQ(errors(entry("nfqueue:1", "vsock:3:1", R"(, "on_stream_down": "pass")")),
              "p.json:1:94: /proxies/0/on_stream_down: expected \"drop\" or \"accept\", got "
              "\"pass\"");
    EXPECT_EQ(errors(entry("nfqueue:1", "vsock:3:1", R"(, "workers": 2)")),
              "p.json:1:87: /proxies/0/workers: expected 1: nfqueue-to-stream runs one worker (one "
              "stream, one queue reader)");
    EXPECT_EQ(errors(entry("vsock:any:1", "raw:route", R"(, "workers": 2)")),
              "p.json:1:89: /proxies/0/workers: expected 1: stream-to-raw runs one worker (one "
              "stream, one queue reader)");
    EXPECT_EQ(errors(entry("nfqueue:1", "fc-vsock:/run/fc.sock:5")),
              "p.json:1:63: /proxies/0/upstream: an nfqueue listener writes to a vsock: or unix: "
              "upstream, not fc-vsock (its reader never reads from the stream, and fc-vsock "
              "answers CONNECT)");
    EXPECT_EQ(errors(entry("nfqueue:1", "tcp:127.0.0.1:1")),
              "p.json:1:63: /proxies/0/upstream: a tcp upstream needs a tcp, vsock, unix or "
              "fc-vsock listener, not nfqueue");
    EXPECT_EQ(errors(entry("nfqueue:70000", "vsock:3:1")).find("queue number must be 0-65535") !=
                  std::string::npos,
              true);
}

}  // namespace
}  // namespace pfp::policy
