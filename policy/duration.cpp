#include "policy/duration.hpp"

#include <array>
#include <cmath>
#include <span>

namespace pfp::policy::detail {

namespace {

struct Unit {
    std::string_view name;
    int64_t factor;  // in the result's unit
};
constexpr std::array<Unit, 4> kMsUnits{{{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}}};
constexpr std::array<Unit, 5> kUsUnits{
    {{"us", 1}, {"ms", 1000}, {"s", 1'000'000}, {"m", 60'000'000}, {"h", 3'600'000'000}}};

// DIGITS[.DIGITS]UNIT in the unit of `units`' factors, computed exactly in 128-bit integers.
ParsedDuration parse_text(std::string_view s, std::span<const Unit> units, int64_t max) {
    const auto digits = [&s](size_t from) {
        size_t i = from;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        return i;
    };
    const size_t int_end = digits(0);
    if (int_end == 0) return {};
    std::string_view whole = s.substr(0, int_end);
    std::string_view frac;
    size_t unit_start = int_end;
    if (unit_start < s.size() && s[unit_start] == '.') {
        const size_t frac_end = digits(unit_start + 1);
        if (frac_end == unit_start + 1) return {};
        frac = s.substr(unit_start + 1, frac_end - unit_start - 1);
        unit_start = frac_end;
    }
    const std::string_view unit = s.substr(unit_start);
    int64_t factor = 0;
    for (const Unit& u : units)
        if (u.name == unit) factor = u.factor;
    if (factor == 0) return {};
    while (whole.size() > 1 && whole[0] == '0') whole.remove_prefix(1);
    while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
    // 12 digits times 3.6e9 fits in 128 bits with room; anything longer is far beyond 7 days.
    if (whole.size() > 12) return {DurationStatus::too_large, 0};
    // No factor here has more than 9 decimals of exact fraction; 18 digits times 3.6e9 still fits.
    if (frac.size() > 18) return {DurationStatus::inexact, 0};
    __int128 w = 0, f = 0, scale = 1;
    for (const char c : whole) w = w * 10 + (c - '0');
    for (const char c : frac) {
        f = f * 10 + (c - '0');
        scale *= 10;
    }
    if ((f * factor) % scale != 0) return {DurationStatus::inexact, 0};
    const __int128 v = w * factor + f * factor / scale;
    if (v > max) return {DurationStatus::too_large, 0};
    return {DurationStatus::ok, static_cast<int64_t>(v)};
}

// Seconds as a JSON number, in units of 1/`per_second` s; at most 7 days.
ParsedDuration parse_seconds(double seconds, double per_second) {
    if (!(seconds >= 0)) return {DurationStatus::negative, 0};
    if (seconds > static_cast<double>(kMaxDurationMs) / 1000) return {DurationStatus::too_large, 0};
    const double n = seconds * per_second;
    const double rounded = std::round(n);
    // The tolerance only absorbs binary rounding of decimal input such as 0.001.
    if (std::fabs(n - rounded) > 1e-6) return {DurationStatus::inexact, 0};
    return {DurationStatus::ok, static_cast<int64_t>(rounded)};
}

}  // namespace

ParsedDuration parse_duration_text(std::string_view s) {
    return parse_text(s, kMsUnits, kMaxDurationMs);
}

ParsedDuration parse_duration_text_us(std::string_view s) {
    return parse_text(s, kUsUnits, kMaxDurationMs * 1000);
}

ParsedDuration parse_duration_seconds_us(double seconds) {
    return parse_seconds(seconds, 1e6);
}

ParsedDuration parse_duration_seconds(double seconds) {
    return parse_seconds(seconds, 1e3);
}

std::string format_us(std::chrono::microseconds d) {
    if (d.count() % 1000 == 0)
        return format_ms(std::chrono::duration_cast<std::chrono::milliseconds>(d));
    return std::to_string(d.count()) + "us";
}

std::string format_ms(std::chrono::milliseconds d) {
    const int64_t ms = d.count();
    if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

}  // namespace pfp::policy::detail
