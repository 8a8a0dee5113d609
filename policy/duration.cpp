#include "policy/duration.hpp"

#include <cmath>

namespace pfp::policy::detail {

ParsedDuration parse_duration_text(std::string_view s) {
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
    if (unit == "ms") {
        factor = 1;
    } else if (unit == "s") {
        factor = 1000;
    } else if (unit == "m") {
        factor = 60'000;
    } else if (unit == "h") {
        factor = 3'600'000;
    } else {
        return {};
    }
    while (whole.size() > 1 && whole[0] == '0') whole.remove_prefix(1);
    while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
    // 12 digits times 3.6e6 still fits in int64; anything longer is far beyond 7 days anyway.
    if (whole.size() > 12) return {DurationStatus::too_large, 0};
    // An exact fraction of any unit here has at most 7 significant decimals (3.6e6 = 2^7*3^2*5^5).
    if (frac.size() > 9) return {DurationStatus::inexact, 0};
    int64_t w = 0, f = 0, scale = 1;
    for (const char c : whole) w = w * 10 + (c - '0');
    for (const char c : frac) {
        f = f * 10 + (c - '0');
        scale *= 10;
    }
    if ((f * factor) % scale != 0) return {DurationStatus::inexact, 0};
    const int64_t ms = w * factor + f * factor / scale;
    if (ms > kMaxDurationMs) return {DurationStatus::too_large, 0};
    return {DurationStatus::ok, ms};
}

ParsedDuration parse_duration_seconds(double seconds) {
    if (!(seconds >= 0)) return {DurationStatus::negative, 0};
    if (seconds > static_cast<double>(kMaxDurationMs) / 1000) return {DurationStatus::too_large, 0};
    const double ms = seconds * 1000;
    const double rounded = std::round(ms);
    // The tolerance only absorbs binary rounding of decimal input such as 0.001.
    if (std::fabs(ms - rounded) > 1e-6) return {DurationStatus::inexact, 0};
    return {DurationStatus::ok, static_cast<int64_t>(rounded)};
}

std::string format_ms(std::chrono::milliseconds d) {
    const int64_t ms = d.count();
    if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

}  // namespace pfp::policy::detail
