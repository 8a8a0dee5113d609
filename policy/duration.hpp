#pragma once
// Durations in a policy: a number of seconds or a string such as "250ms", "1.5s", "5m", "1h",
// exact to the millisecond and at most 7 days.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace pfp::policy::detail {

constexpr int64_t kMaxDurationMs = int64_t{7} * 24 * 3600 * 1000;

// What messages say a duration may look like.
constexpr std::string_view kDurationForms =
    R"(a number of seconds or a string such as "250ms", "10s", "5m", "1h")";

enum class DurationStatus { ok, syntax, too_large, inexact, negative };

struct ParsedDuration {
    DurationStatus status = DurationStatus::syntax;
    int64_t ms = 0;
};

// DIGITS[.DIGITS](ms|s|m|h), computed exactly in integers (no float rounding surprises).
ParsedDuration parse_duration_text(std::string_view s);

// A JSON number of seconds.
ParsedDuration parse_duration_seconds(double seconds);

// Short windows (busy_poll): the same grammar plus "us", exact to the microsecond; the result's
// `ms` field then counts microseconds. The caller bounds it (far below 7 days).
ParsedDuration parse_duration_text_us(std::string_view s);
ParsedDuration parse_duration_seconds_us(double seconds);

// "2s", "250ms", "5m": durations in messages, in the largest unit that is exact.
std::string format_ms(std::chrono::milliseconds d);
// "50us", "10ms": short windows in messages.
std::string format_us(std::chrono::microseconds d);

}  // namespace pfp::policy::detail
