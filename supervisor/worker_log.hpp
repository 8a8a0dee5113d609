#pragma once
// A worker's stdout and stderr are one pipe that only the supervisor reads. Each line the worker
// writes comes out as the supervisor's own log line, under a prefix the supervisor sets ("proxy
// "a" worker 0 (pid 123): ...") and a priority no higher than error, with control bytes escaped —
// so a compromised worker cannot forge a supervisor line, a journald priority or a terminal
// escape. A worker that floods is rate-limited (the supervisor's own lines must stay visible, and
// journald throttles a whole service), and the loss is reported once a second.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/log.hpp"

namespace pfp::supervisor {

// One line as the worker wrote it, without its newline: "<N>text" from a worker (log.cpp's
// format when PFPROXY_LOG=supervisor), anything else from a sanitizer runtime or an attacker.
struct WorkerLine {
    log::Level level;
    std::string text;  // printable: bytes below 0x20 and 0x7f appear as \xNN
};
WorkerLine parse_worker_line(std::string_view raw);

class WorkerLogRelay {
  public:
    using Clock = std::chrono::steady_clock;
    static constexpr size_t kMaxLine = 4096;  // longer lines are cut, and say so
    // Per worker. journald's own default throttle is 10,000 lines per 30 s for the whole
    // service: more than this would only get the supervisor's lines dropped there.
    static constexpr double kLinesPerSecond = 1000;
    static constexpr double kBurstLines = 5000;

    explicit WorkerLogRelay(std::string label) : label_(std::move(label)) {}
    void set_label(std::string label) { label_ = std::move(label); }

    // Reads what the pipe holds (up to a fair share per call). False at end of file or on an
    // error: the caller stops watching the pipe. The lines are emitted before it returns.
    bool drain(int fd, Clock::time_point now);
    // The end: a last line without its newline is emitted, and any suppressed count reported.
    void flush(Clock::time_point now);

    // Reports suppressed lines a second after the last report even if the worker fell silent;
    // when to call again (nothing is pending: nullopt).
    std::optional<Clock::time_point> tick(Clock::time_point now);

    uint64_t suppressed_total() const { return suppressed_total_; }

  private:
    void take(std::string_view bytes, Clock::time_point now);
    void emit(std::string_view raw, bool cut, Clock::time_point now);
    void report_suppressed(Clock::time_point now, bool force);

    std::string label_;
    std::string partial_;
    bool cutting_ = false;  // discarding the rest of an over-long line
    size_t cut_bytes_ = 0;
    double tokens_ = kBurstLines;
    Clock::time_point refilled_{};
    uint64_t suppressed_ = 0;  // since the last report
    uint64_t suppressed_total_ = 0;
    Clock::time_point reported_{};
};

}  // namespace pfp::supervisor
