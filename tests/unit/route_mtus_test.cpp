// The injector's learned route MTUs ("route_mtu": "auto"): what it decides for a packet from what
// the kernel said of its destination's route, per destination and family, and for how long.
#include "workers/route_mtus.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

using pfp::worker::RouteMtus;
using Verdict = RouteMtus::Verdict;
using namespace std::chrono_literals;

namespace {

// An IP packet of `size` bytes to `dst` (the family follows it) with protocol `proto`; only the
// header fields RouteMtus reads are set.
std::vector<uint8_t> packet(const std::string& dst, size_t size, uint8_t proto = 6) {
    std::vector<uint8_t> p(size);
    if (dst.find(':') != std::string::npos) {
        p[0] = 0x60;
        p[6] = proto;
        inet_pton(AF_INET6, dst.c_str(), &p[24]);
    } else {
        p[0] = 0x45;
        p[9] = proto;
        inet_pton(AF_INET, dst.c_str(), &p[16]);
    }
    return p;
}

std::vector<uint8_t> address(const std::string& a) {
    std::vector<uint8_t> out(a.find(':') != std::string::npos ? 16 : 4);
    inet_pton(out.size() == 16 ? AF_INET6 : AF_INET, a.c_str(), out.data());
    return out;
}

const RouteMtus::Clock::time_point t0{1h};

}  // namespace

TEST(RouteMtus, SmallOrNonTcpPacketsGoWholeWithoutAQuestion) {
    RouteMtus m;
    EXPECT_EQ(m.check(packet("10.0.0.1", 1280), t0).verdict, Verdict::whole);
    EXPECT_EQ(m.check(packet("10.0.0.1", 9000, 17), t0).verdict, Verdict::whole) << "UDP";
    EXPECT_EQ(m.check(packet("fd00::1", 9000, 0), t0).verdict, Verdict::whole)
        << "IPv6 with an extension header: not one to cut";
    EXPECT_EQ(m.check(packet("10.0.0.1", 1281), t0).verdict, Verdict::probe);
    EXPECT_EQ(m.check(packet("fd00::1", 64000), t0).verdict, Verdict::probe);
}

TEST(RouteMtus, AReportedMtuCutsLargerPacketsToThatDestinationOnly) {
    RouteMtus m;
    m.learned(address("10.0.0.1"), 1500, t0);
    const auto a = m.check(packet("10.0.0.1", 20040), t0);
    EXPECT_EQ(a.verdict, Verdict::cut);
    EXPECT_EQ(a.mtu, 1500u);
    EXPECT_EQ(m.check(packet("10.0.0.1", 1500), t0).verdict, Verdict::whole);
    EXPECT_EQ(m.check(packet("10.0.0.2", 20040), t0).verdict, Verdict::probe);
    // The same address bytes in the other family are another destination.
    m.learned(address("::a00:1"), 9000, t0);
    EXPECT_EQ(m.check(packet("10.0.0.1", 20040), t0).mtu, 1500u);
    EXPECT_EQ(m.check(packet("::a00:1", 20040), t0).mtu, 9000u);
}

TEST(RouteMtus, APassedProbeLetsPacketsUpToItsSizeGoWhole) {
    RouteMtus m;
    m.fits(packet("fd00::1", 30000), t0);
    EXPECT_EQ(m.check(packet("fd00::1", 30000), t0).verdict, Verdict::whole);
    EXPECT_EQ(m.check(packet("fd00::1", 2000), t0).verdict, Verdict::whole);
    EXPECT_EQ(m.check(packet("fd00::1", 30001), t0).verdict, Verdict::probe) << "larger: asked";
    m.fits(packet("fd00::1", 64000), t0);
    EXPECT_EQ(m.check(packet("fd00::1", 64000), t0).verdict, Verdict::whole);
    // Then the route's MTU went down: a refusal's report replaces what passed.
    m.learned(address("fd00::1"), 1500, t0 + 1s);
    EXPECT_EQ(m.check(packet("fd00::1", 30000), t0 + 1s).verdict, Verdict::cut);
    m.fits(packet("fd00::1", 64000), t0 + 2s);
    EXPECT_EQ(m.check(packet("fd00::1", 30000), t0 + 2s).verdict, Verdict::cut)
        << "a pass cannot undo a reported MTU";
}

TEST(RouteMtus, WhatWasLearnedIsAskedAgainAfterItsLifetime) {
    RouteMtus m;
    m.learned(address("10.0.0.1"), 1500, t0);
    EXPECT_EQ(m.check(packet("10.0.0.1", 9000), t0 + RouteMtus::kLifetime - 1s).verdict,
              Verdict::cut);
    EXPECT_EQ(m.check(packet("10.0.0.1", 9000), t0 + RouteMtus::kLifetime).verdict, Verdict::probe);
    m.fits(packet("10.0.0.2", 9000), t0);
    EXPECT_EQ(m.check(packet("10.0.0.2", 9000), t0 + RouteMtus::kLifetime).verdict, Verdict::probe);
}

// Below IPv6's minimum a 64 KiB packet would need more segments than a batch holds: it goes whole
// (and the kernel refuses it). A report of 0 or of a malformed address teaches nothing.
TEST(RouteMtus, ReportsThatCannotBeUsed) {
    RouteMtus m;
    m.learned(address("10.0.0.1"), 576, t0);
    EXPECT_EQ(m.check(packet("10.0.0.1", 9000), t0).verdict, Verdict::whole);
    m.learned(address("10.0.0.2"), 0, t0);
    EXPECT_EQ(m.check(packet("10.0.0.2", 9000), t0).verdict, Verdict::probe);
    m.learned(std::vector<uint8_t>(7, 1), 1500, t0);
    m.learned({}, 1500, t0);
}

// A fixed table: many destinations cost probes (a colliding one replaces the older entry), never
// memory, and each answer stays its own destination's.
TEST(RouteMtus, ManyDestinationsReplaceEachOtherButNeverMix) {
    RouteMtus m;
    for (int i = 0; i < 4096; ++i) {
        const std::string a = "10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256);
        m.learned(address(a), 1280 + static_cast<size_t>(i), t0);
    }
    int kept = 0;
    for (int i = 0; i < 4096; ++i) {
        const std::string a = "10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256);
        const auto r = m.check(packet(a, 64000), t0);
        if (r.verdict == Verdict::probe) continue;
        ASSERT_EQ(r.verdict, Verdict::cut);
        EXPECT_EQ(r.mtu, 1280u + static_cast<size_t>(i)) << a;
        ++kept;
    }
    EXPECT_GT(kept, 0);
    EXPECT_LE(kept, 256);
    EXPECT_LE(sizeof(RouteMtus), 16384u);
}
