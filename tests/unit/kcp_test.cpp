// KCP (common/kcp/kcp.hpp) between two sessions over a simulated datagram path: a seeded channel
// that drops, duplicates and reorders, on a virtual clock that starts just before the 32-bit wrap.
// Every message must arrive whole, once and in order; fast retransmit must beat the RTO; windows
// and queues must hold their limits; malformed segments and fragment runs are refused.
#include "common/kcp/kcp.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "common/kcp/bytes.hpp"

namespace pfp::kcp {
namespace {

using Bytes = std::vector<uint8_t>;

// One direction of the simulated path. Delivery times are jittered, which reorders.
struct Link final : Output {
    std::mt19937 rng;
    double loss = 0;
    double duplicate = 0;
    uint32_t delay = 5;
    uint32_t jitter = 0;
    uint32_t* now = nullptr;
    std::multimap<uint64_t, Bytes> in_flight;  // delivery time (unwrapped) -> datagram
    uint64_t clock = 0;                        // unwrapped virtual time
    uint64_t sent = 0, dropped = 0, duplicated = 0;
    std::vector<Bytes> log;  // every datagram offered, when logging
    bool logging = false;

    explicit Link(uint32_t seed) : rng(seed) {}
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
    void kcp_output(std::span<const uint8_t> d) override {
        ++sent;
        if (logging) log.emplace_back(d.begin(), d.end());
        if (chance(loss)) {
            ++dropped;
            return;
        }
        const int copies = chance(duplicate) ? 2 : 1;
        duplicated += copies - 1;
        for (int i = 0; i < copies; ++i) {
            const uint32_t extra = jitter ? rng() % (jitter + 1) : 0;
            in_flight.emplace(clock + delay + extra, Bytes(d.begin(), d.end()));
        }
    }
};

Bytes Message(size_t index, size_t size) {
    Bytes m(size);
    for (size_t i = 0; i < size; ++i) m[i] = static_cast<uint8_t>(index * 131 + i * 7);
    return m;
}

// Two sessions exchanging `count` messages each way; returns false if it stalls or times out.
struct Exchange {
    Config config;
    uint32_t now = UINT32_MAX - 3000;  // the clock wraps during the run
    uint64_t clock = 0;
    Link ab, ba;
    Kcp a, b;
    std::mt19937 sizes;
    std::vector<size_t> sizes_ab, sizes_ba;
    size_t sent_ab = 0, sent_ba = 0, got_ab = 0, got_ba = 0;
    std::string failure;

    Exchange(const Config& c, uint32_t seed, double loss, double dup, uint32_t jitter)
        : config(c), ab(seed), ba(seed + 1), a(7, c, now), b(7, c, now), sizes(seed + 2) {
        for (Link* l : {&ab, &ba}) {
            l->loss = loss;
            l->duplicate = dup;
            l->jitter = jitter;
        }
    }

    void plan(size_t count, size_t max_size) {
        std::uniform_int_distribution<size_t> size(0, max_size);
        for (size_t i = 0; i < count; ++i) sizes_ab.push_back(size(sizes));
        for (size_t i = 0; i < count; ++i) sizes_ba.push_back(size(sizes));
    }

    void pump(Kcp& from, std::vector<size_t>& plan_sizes, size_t& sent) {
        while (sent < plan_sizes.size() && from.send(Message(sent, plan_sizes[sent])) == Status::ok)
            ++sent;
    }
    bool drain(Kcp& to, const std::vector<size_t>& plan_sizes, size_t& got) {
        Bytes m;
        for (;;) {
            const Status s = to.recv(m);
            if (s == Status::would_block) return true;
            if (s != Status::ok) {
                failure = std::string("recv: ") + to_string(s);
                return false;
            }
            if (got >= plan_sizes.size() || m != Message(got, plan_sizes[got])) {
                failure = "message " + std::to_string(got) + " wrong or unexpected";
                return false;
            }
            ++got;
        }
    }
    bool done() const { return got_ab == sizes_ab.size() && got_ba == sizes_ba.size(); }

    bool run(uint64_t limit_ms) {
        while (!done()) {
            if (clock > limit_ms) {
                failure = "not done after " + std::to_string(limit_ms) + " ms of virtual time";
                return false;
            }
            for (auto [link, to] : {std::pair{&ab, &b}, std::pair{&ba, &a}}) {
                while (!link->in_flight.empty() && link->in_flight.begin()->first <= clock) {
                    const Bytes d = link->in_flight.begin()->second;
                    link->in_flight.erase(link->in_flight.begin());
                    if (const InputError e = to->input(d, now); e != InputError::none) {
                        failure = std::string("input: ") + to_string(e);
                        return false;
                    }
                }
            }
            pump(a, sizes_ab, sent_ab);
            pump(b, sizes_ba, sent_ba);
            if (!drain(b, sizes_ab, got_ab) || !drain(a, sizes_ba, got_ba)) return false;
            for (auto [s, link] : {std::pair{&a, &ab}, std::pair{&b, &ba}}) {
                const auto due = s->next_deadline();
                if (due && diff32(*due, now) <= 0) s->flush(now, *link);
            }
            if (a.dead() || b.dead()) {
                failure = "link declared dead";
                return false;
            }
            // Advance to the next event: a deadline or a delivery.
            std::optional<uint64_t> next;
            auto consider = [&](uint64_t t) {
                if (!next || t < *next) next = t;
            };
            for (const Kcp* s : {&a, &b})
                if (const auto due = s->next_deadline())
                    consider(clock + static_cast<uint64_t>(std::max(diff32(*due, now), 0)));
            for (const Link* l : {&ab, &ba})
                if (!l->in_flight.empty()) consider(l->in_flight.begin()->first);
            if (!next) {
                failure = "stalled: no deadline and nothing in flight";
                return false;
            }
            const uint64_t step = std::max<uint64_t>(*next, clock) - clock;
            clock += step;
            now += static_cast<uint32_t>(step);
            ab.clock = ba.clock = clock;
        }
        return true;
    }
};

Config Tunnel() {
    Config c = Config::fast(1316);
    c.max_message = 16 * 1024;
    return c;
}

TEST(KcpSegment, HeaderIsLittleEndianInFieldOrder) {
    SegmentHeader h{0x04030201, 81, 2, 0x0605, 0x0a090807, 0x0e0d0c0b, 0x1211100f, 3};
    uint8_t raw[kSegmentHeader];
    encode_header(h, raw);
    const Bytes expect{1,  2,  3,  4,  81, 2,  5,  6,  7, 8, 9, 10,
                       11, 12, 13, 14, 15, 16, 17, 18, 3, 0, 0, 0};
    EXPECT_EQ(Bytes(raw, raw + kSegmentHeader), expect);
    const SegmentHeader back = decode_header(raw);
    EXPECT_EQ(back.conv, h.conv);
    EXPECT_EQ(back.wnd, h.wnd);
    EXPECT_EQ(back.una, h.una);
    EXPECT_EQ(back.len, 3u);
}

TEST(KcpSegment, MalformedDatagramsAreRefusedWhole) {
    auto seg = [](uint32_t conv, uint8_t cmd, uint32_t len, size_t payload) {
        Bytes d(kSegmentHeader + payload);
        encode_header({conv, cmd, 0, 32, 0, 0, 0, len}, d.data());
        return d;
    };
    EXPECT_EQ(check_datagram({}, 7, 100), InputError::truncated);
    EXPECT_EQ(check_datagram(Bytes(23), 7, 100), InputError::truncated);
    EXPECT_EQ(check_datagram(seg(8, 81, 0, 0), 7, 100), InputError::wrong_conv);
    EXPECT_EQ(check_datagram(seg(7, 80, 0, 0), 7, 100), InputError::bad_command);
    EXPECT_EQ(check_datagram(seg(7, 85, 0, 0), 7, 100), InputError::bad_command);
    EXPECT_EQ(check_datagram(seg(7, 81, 101, 101), 7, 100), InputError::too_long);
    EXPECT_EQ(check_datagram(seg(7, 82, 1, 1), 7, 100), InputError::too_long);
    EXPECT_EQ(check_datagram(seg(7, 81, 10, 9), 7, 100), InputError::truncated);
    // A good segment followed by a bad one: the whole datagram is refused, and changes nothing.
    Bytes d = seg(7, 81, 3, 3);
    const Bytes bad = seg(7, 81, 10, 2);
    d.insert(d.end(), bad.begin(), bad.end());
    EXPECT_EQ(check_datagram(d, 7, 100), InputError::truncated);
    Kcp k(7, Config{}, 0);
    EXPECT_EQ(k.input(d, 0), InputError::truncated);
    EXPECT_TRUE(k.idle());  // the good push was not acknowledged
    EXPECT_FALSE(k.peek_size());
    EXPECT_EQ(k.stats().bad_datagrams, 1u);
}

TEST(Kcp, BadConfigIsRefusedAtSetup) {
    Config c;
    c.mtu = 24;
    EXPECT_THROW(Kcp(1, c, 0), std::invalid_argument);
    c = Config{};
    c.rcv_wnd = 0;
    EXPECT_THROW(Kcp(1, c, 0), std::invalid_argument);
    c = Config{};
    c.interval = 0;
    EXPECT_THROW(Kcp(1, c, 0), std::invalid_argument);
}

TEST(Kcp, CleanPathDeliversEveryMessageInOrder) {
    Exchange x(Tunnel(), 1, 0, 0, 0);
    x.plan(500, 4000);
    ASSERT_TRUE(x.run(60000)) << x.failure;
    EXPECT_EQ(x.a.stats().timeouts, 0u);
    EXPECT_EQ(x.b.stats().timeouts, 0u);
}

class KcpLossy : public ::testing::TestWithParam<double> {};

TEST_P(KcpLossy, DeliversEverythingInOrderDespiteLossDuplicationAndReordering) {
    const double loss = GetParam();
    Exchange x(Tunnel(), 42, loss, 0.05, 30);
    x.plan(2000, 3000);  // up to three fragments
    ASSERT_TRUE(x.run(600000)) << x.failure;
    EXPECT_EQ(x.got_ab, 2000u);
    EXPECT_EQ(x.got_ba, 2000u);
    // The channel really misbehaved, and the sessions noticed.
    EXPECT_GT(x.ab.duplicated + x.ba.duplicated, 0u);
    EXPECT_GT(x.a.stats().duplicates + x.b.stats().duplicates, 0u);
    if (loss > 0) {
        EXPECT_GT(x.ab.dropped + x.ba.dropped, 0u);
        EXPECT_GT(x.a.stats().fast_resends + x.a.stats().timeouts, 0u);
    }
}

INSTANTIATE_TEST_SUITE_P(Loss, KcpLossy, ::testing::Values(0.0, 0.05, 0.20));

TEST(Kcp, CongestionControlAlsoDelivers) {
    Config c;  // the protocol's defaults: cwnd on, no nodelay, no fast resend
    c.mtu = 600;
    Exchange x(c, 9, 0.1, 0.02, 40);
    x.plan(300, 1500);
    ASSERT_TRUE(x.run(3600000)) << x.failure;
    EXPECT_GT(x.a.stats().timeouts, 0u);
}

// Collects datagrams without delivering them.
struct Capture final : Output {
    std::vector<Bytes> datagrams;
    void kcp_output(std::span<const uint8_t> d) override {
        datagrams.emplace_back(d.begin(), d.end());
    }
    std::vector<SegmentHeader> segments(uint32_t conv, size_t mss) const {
        std::vector<SegmentHeader> out;
        for (const Bytes& d : datagrams) {
            SegmentReader r(d, conv, mss);
            SegmentView v;
            while (r.next(v)) out.push_back(v.header);
        }
        return out;
    }
};

TEST(Kcp, FastRetransmitResendsALostSegmentBeforeItsTimeout) {
    Config c = Config::fast(24 + 100);  // one 100-byte segment per datagram
    Kcp a(3, c, 1000), b(3, c, 1000);
    for (size_t i = 0; i < 4; ++i) ASSERT_EQ(a.send(Message(i, 100)), Status::ok);
    Capture wire;
    a.flush(1000, wire);
    ASSERT_EQ(wire.datagrams.size(), 4u);
    // sn 0 is lost; 1 and 2 arrive, each acked at once.
    for (size_t i = 1; i <= 2; ++i) {
        ASSERT_EQ(b.input(wire.datagrams[i], 1001), InputError::none);
        Capture acks;
        b.flush(1001, acks);
        ASSERT_EQ(acks.datagrams.size(), 1u);
        ASSERT_EQ(a.input(acks.datagrams[0], 1002), InputError::none);
    }
    // Two later segments acknowledged: the next flush, long before any RTO, resends sn 0.
    ASSERT_TRUE(a.next_deadline());
    EXPECT_LE(diff32(*a.next_deadline(), 1002), static_cast<int32_t>(c.interval));
    Capture resend;
    a.flush(1003, resend);
    const auto segs = resend.segments(3, a.mss());
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].cmd, static_cast<uint8_t>(Command::push));
    EXPECT_EQ(segs[0].sn, 0u);
    EXPECT_EQ(a.stats().fast_resends, 1u);
    EXPECT_EQ(a.stats().timeouts, 0u);
    ASSERT_EQ(b.input(resend.datagrams[0], 1004), InputError::none);
    ASSERT_EQ(b.input(wire.datagrams[3], 1004), InputError::none);
    Bytes m;
    for (size_t i = 0; i < 4; ++i) {
        ASSERT_EQ(b.recv(m), Status::ok);
        EXPECT_EQ(m, Message(i, 100));
    }
}

TEST(Kcp, TimeoutRetransmitsWithBackoffAndDeclaresADeadLink) {
    Config c = Config::fast(1400);
    c.dead_link = 4;
    Kcp a(3, c, 0);
    ASSERT_EQ(a.send(Message(0, 10)), Status::ok);
    Capture wire;
    uint32_t now = 0;
    a.flush(now, wire);
    std::vector<uint32_t> sends{now};
    while (!a.dead()) {
        ASSERT_TRUE(a.next_deadline());
        now = *a.next_deadline();
        const size_t before = wire.datagrams.size();
        a.flush(now, wire);
        ASSERT_EQ(wire.datagrams.size(), before + 1);
        sends.push_back(now);
    }
    ASSERT_EQ(sends.size(), 4u);
    // Each wait is 1.5x the previous (nodelay backoff), starting from the initial RTO.
    EXPECT_EQ(sends[1] - sends[0], kInitialRto);
    EXPECT_EQ(sends[2] - sends[1], kInitialRto * 3 / 2);
    EXPECT_EQ(sends[3] - sends[2], kInitialRto * 3 / 2 * 3 / 2);
    EXPECT_EQ(a.stats().timeouts, 3u);
}

TEST(Kcp, SendWindowLimitsSegmentsInFlight) {
    Config c = Config::fast(24 + 50);
    c.snd_wnd = 4;
    Kcp a(5, c, 0);
    for (size_t i = 0; i < 20; ++i) ASSERT_EQ(a.send(Message(i, 50)), Status::ok);
    Capture wire;
    a.flush(0, wire);
    a.flush(5, wire);  // nothing acked: nothing more may go
    const auto segs = wire.segments(5, a.mss());
    ASSERT_EQ(segs.size(), 4u);
    for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(segs[i].sn, i);
    EXPECT_EQ(a.waiting_send(), 20u);
}

TEST(Kcp, ReceiveWindowStopsTheSenderUntilTheReaderCatchesUp) {
    Config c = Config::fast(24 + 50);
    c.rcv_wnd = 8;
    Exchange x(c, 5, 0, 0, 0);
    x.sizes_ab.assign(40, 50);
    // Run without reading at b: deliver until nothing moves.
    for (size_t i = 0; i < 40; ++i) ASSERT_EQ(x.a.send(Message(i, 50)), Status::ok);
    uint32_t now = 0;
    for (int round = 0; round < 50; ++round, now += 10) {
        x.a.flush(now, x.ab);
        x.b.flush(now, x.ba);
        for (Link* l : {&x.ab, &x.ba}) {
            Kcp& to = l == &x.ab ? x.b : x.a;
            for (auto& [t, d] : l->in_flight) ASSERT_EQ(to.input(d, now), InputError::none);
            l->in_flight.clear();
        }
    }
    // b holds its window's worth, acknowledged; a sees the closed window and sends no more.
    EXPECT_EQ(x.a.remote_window(), 0u);
    EXPECT_EQ(x.a.waiting_send(), 40u - 8u);
    EXPECT_EQ(x.b.stats().out_of_window, 0u);
    size_t ready = 0;
    Bytes m;
    while (x.b.recv(m) == Status::ok) EXPECT_EQ(m, Message(ready++, 50));
    EXPECT_EQ(ready, 8u);
    // Reading reopened the window; b tells a, and the rest follows.
    x.got_ab = ready;
    x.now = now;
    ASSERT_TRUE(x.run(600000)) << x.failure;
    EXPECT_EQ(x.got_ab, 40u);
}

TEST(Kcp, ZeroWindowProbeRecoversALostWindowUpdate) {
    Config c = Config::fast(24 + 50);
    c.rcv_wnd = 4;
    Kcp a(6, c, 0), b(6, c, 0);
    for (size_t i = 0; i < 12; ++i) ASSERT_EQ(a.send(Message(i, 50)), Status::ok);
    Capture ab, ba;
    a.flush(0, ab);
    for (const Bytes& d : ab.datagrams) ASSERT_EQ(b.input(d, 1), InputError::none);
    b.flush(1, ba);
    for (const Bytes& d : ba.datagrams) ASSERT_EQ(a.input(d, 2), InputError::none);
    ASSERT_EQ(a.remote_window(), 0u);
    Bytes m;
    size_t got = 0;
    while (b.recv(m) == Status::ok) EXPECT_EQ(m, Message(got++, 50));
    ASSERT_EQ(got, 4u);
    Capture lost;
    b.flush(3, lost);  // the window update is lost
    ASSERT_EQ(lost.segments(6, b.mss()).at(0).cmd, static_cast<uint8_t>(Command::window_tell));
    // a asks after its probe timer (7 s), b answers, and the transfer resumes.
    ASSERT_TRUE(a.next_deadline());
    uint32_t now = *a.next_deadline();
    Capture probe;
    a.flush(now, probe);  // starts the probe timer
    ASSERT_TRUE(probe.datagrams.empty());
    now = *a.next_deadline();
    EXPECT_EQ(now, 10u + 7000u);  // the flush at 10 (its last flush + interval) started it
    a.flush(now, probe);
    ASSERT_EQ(probe.segments(6, a.mss()).size(), 1u);
    EXPECT_EQ(probe.segments(6, a.mss())[0].cmd, static_cast<uint8_t>(Command::window_ask));
    EXPECT_EQ(a.stats().window_probes, 1u);
    ASSERT_EQ(b.input(probe.datagrams[0], now), InputError::none);
    Capture tell;
    b.flush(now, tell);
    ASSERT_EQ(a.input(tell.datagrams.at(0), now), InputError::none);
    EXPECT_EQ(a.remote_window(), 4u);
}

TEST(Kcp, SendQueueAndMessageSizeAreBounded) {
    Config c = Config::fast(1400);
    c.snd_wnd = 8;
    c.max_send_queue = 10;
    Kcp a(1, c, 0);
    const size_t mss = a.mss();
    EXPECT_EQ(a.send(Bytes(mss * 11)), Status::too_large);  // more than the queue could hold
    for (int i = 0; i < 10; ++i) ASSERT_EQ(a.send(Bytes(1)), Status::ok);
    EXPECT_EQ(a.send(Bytes(1)), Status::would_block);
    EXPECT_EQ(a.waiting_send(), 10u);

    Config big = Config::fast(1400);
    big.max_message = 1 << 30;
    Kcp k(1, big, 0);
    EXPECT_EQ(k.send(Bytes(mss * 256)), Status::ok);  // 256 fragments: frg 255..0
    EXPECT_EQ(k.send(Bytes(mss * 256 + 1)), Status::too_large);
    EXPECT_EQ(k.send({}), Status::ok);  // an empty message is one empty segment
}

// Hand-made push segments, for fragment runs a correct sender never makes.
Bytes Push(uint32_t conv, uint32_t sn, uint8_t frg, size_t len) {
    Bytes d(kSegmentHeader + len, 0xab);
    encode_header({conv, 81, frg, 128, 0, sn, 0, static_cast<uint32_t>(len)}, d.data());
    return d;
}

TEST(Kcp, FragmentRunsThatCannotFormAMessageAreBroken) {
    Config c;
    c.rcv_wnd = 4;
    {
        Kcp k(2, c, 0);  // frg 1, then 5: not counting down
        ASSERT_EQ(k.input(Push(2, 0, 1, 10), 0), InputError::none);
        ASSERT_EQ(k.input(Push(2, 1, 5, 10), 0), InputError::none);
        Bytes m;
        EXPECT_EQ(k.recv(m), Status::broken);
        EXPECT_FALSE(k.peek_size());
    }
    {
        Kcp k(2, c, 0);  // a message of 10 fragments can never fit a window of 4
        ASSERT_EQ(k.input(Push(2, 0, 9, 10), 0), InputError::none);
        Bytes m;
        EXPECT_EQ(k.recv(m), Status::broken);
    }
    {
        Kcp k(2, c, 0);  // incomplete: wait; complete: deliver
        ASSERT_EQ(k.input(Push(2, 0, 1, 10), 0), InputError::none);
        Bytes m;
        EXPECT_EQ(k.recv(m), Status::would_block);
        ASSERT_EQ(k.input(Push(2, 1, 0, 5), 0), InputError::none);
        EXPECT_EQ(k.peek_size(), 15u);
        EXPECT_EQ(k.recv(m), Status::ok);
        EXPECT_EQ(m.size(), 15u);
    }
}

TEST(Kcp, IdleSessionHasNoDeadline) {
    Config c = Config::fast(1400);
    Kcp a(9, c, 100), b(9, c, 100);
    EXPECT_FALSE(a.next_deadline());
    ASSERT_EQ(a.send(Message(1, 10)), Status::ok);
    ASSERT_TRUE(a.next_deadline());
    Capture wire;
    a.flush(100, wire);
    ASSERT_TRUE(a.next_deadline());  // the retransmission timer
    ASSERT_EQ(b.input(wire.datagrams.at(0), 101), InputError::none);
    ASSERT_TRUE(b.next_deadline());  // the ack
    Capture acks;
    b.flush(101, acks);
    EXPECT_FALSE(b.next_deadline());
    ASSERT_EQ(a.input(acks.datagrams.at(0), 102), InputError::none);
    EXPECT_FALSE(a.next_deadline());
    EXPECT_TRUE(a.idle());
    EXPECT_EQ(a.rtt().srtt(), 2u);
}

TEST(Kcp, SegmentsOutsideTheConversationOrWindowChangeNothing) {
    Config c;
    c.rcv_wnd = 4;
    Kcp k(2, c, 0);
    ASSERT_EQ(k.input(Push(2, 4, 0, 10), 0), InputError::none);  // one past the window
    EXPECT_EQ(k.stats().out_of_window, 1u);
    EXPECT_TRUE(k.idle());  // and not acknowledged
    EXPECT_EQ(k.input(Push(3, 0, 0, 10), 0), InputError::wrong_conv);
    EXPECT_FALSE(k.peek_size());
}

}  // namespace
}  // namespace pfp::kcp
