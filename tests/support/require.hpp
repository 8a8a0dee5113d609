#pragma once
// A test that needs something the machine may lack (a network namespace, the nat table, root,
// IPv6, the user nobody) says so with PFP_REQUIRE(why): `why` empty means it is there. Run by
// hand, such a test skips and says why. Under the README's test command (scripts/test.sh exports
// PFPROXY_REQUIRE_ALL=1) it fails instead, naming what is missing, so a green run means every
// test ran.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace pfp::test {

// True when PFPROXY_REQUIRE_ALL is set to anything but "" or "0".
inline bool require_all() {
    const char* v = std::getenv("PFPROXY_REQUIRE_ALL");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

}  // namespace pfp::test

// Returns from the calling test function (or SetUp) either way, like GTEST_SKIP.
#define PFP_REQUIRE(why_expr)                                                            \
    do {                                                                                 \
        const std::string pfp_missing_ = (why_expr);                                     \
        if (!pfp_missing_.empty()) {                                                     \
            if (::pfp::test::require_all())                                              \
                GTEST_FAIL() << "missing: " << pfp_missing_                              \
                             << " (PFPROXY_REQUIRE_ALL is set: this test may not skip)"; \
            GTEST_SKIP() << pfp_missing_;                                                \
        }                                                                                \
    } while (0)
