#include "common/log.hpp"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace pfp::log {

namespace {

const char* level_name(Level l) {
    switch (l) {
        case Level::error:
            return "error";
        case Level::warning:
            return "warning";
        case Level::notice:
            return "notice";
        case Level::info:
            return "info";
        case Level::debug:
            return "debug";
    }
    return "?";
}

// UTC calendar fields from epoch seconds (Howard Hinnant's civil_from_days). gmtime_r would
// initialise the time zone on first use, opening /etc/localtime inside a sandboxed worker.
tm utc(time_t t) {
    tm out{};
    long days = static_cast<long>(t / 86400);
    long secs = static_cast<long>(t % 86400);
    if (secs < 0) {
        secs += 86400;
        --days;
    }
    out.tm_hour = static_cast<int>(secs / 3600);
    out.tm_min = static_cast<int>(secs / 60 % 60);
    out.tm_sec = static_cast<int>(secs % 60);
    long z = days + 719468;
    long era = (z >= 0 ? z : z - 146096) / 146097;
    long doe = z - era * 146097;
    long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long mp = (5 * doy + 2) / 153;
    long d = doy - (153 * mp + 2) / 5 + 1;
    long m = mp < 10 ? mp + 3 : mp - 9;
    out.tm_year = static_cast<int>(yoe + era * 400 + (m <= 2 ? 1 : 0) - 1900);
    out.tm_mon = static_cast<int>(m - 1);
    out.tm_mday = static_cast<int>(d);
    return out;
}

}  // namespace

void write_line(Level level, std::string_view message) {
    std::string line;
    line.reserve(message.size() + 64);
    char prefix[96];
    const char* sink = std::getenv("PFPROXY_LOG");
    if (sink != nullptr && std::string_view(sink) == "supervisor") {
        // A worker: the supervisor reads this pipe and sets the prefix (supervisor/worker_log.hpp).
        std::snprintf(prefix, sizeof prefix, "<%d>", static_cast<int>(level));
    } else if (std::getenv("JOURNAL_STREAM") != nullptr) {
        std::snprintf(prefix, sizeof prefix, "<%d>%s[%d]: ", static_cast<int>(level),
                      program_invocation_short_name, static_cast<int>(::getpid()));
    } else {
        timespec ts{};
        ::clock_gettime(CLOCK_REALTIME, &ts);
        tm t = utc(ts.tv_sec);
        std::snprintf(prefix, sizeof prefix,
                      "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: ", t.tm_year + 1900,
                      t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                      ts.tv_nsec / 1'000'000, program_invocation_short_name,
                      static_cast<int>(::getpid()), level_name(level));
    }
    line += prefix;
    line += message;
    line += '\n';
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // logging must never take the process down
        p += n;
        left -= static_cast<size_t>(n);
    }
}

}  // namespace pfp::log
