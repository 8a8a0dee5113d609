#include "supervisor/worker_log.hpp"

#include <errno.h>
#include <unistd.h>

#include <algorithm>

namespace pfp::supervisor {

WorkerLine parse_worker_line(std::string_view raw) {
    // Unmarked lines (a sanitizer report, a hostile write) are notices: worth seeing, never an
    // alarm a worker can raise at will.
    log::Level level = log::Level::notice;
    if (raw.size() >= 3 && raw[0] == '<' && raw[2] == '>' && raw[1] >= '0' && raw[1] <= '7') {
        // A worker may say error at most: emergency, alert and critical are the supervisor's.
        level =
            static_cast<log::Level>(std::max(raw[1] - '0', static_cast<int>(log::Level::error)));
        raw.remove_prefix(3);
    }
    WorkerLine line{level, {}};
    line.text.reserve(raw.size());
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : raw) {
        if (c < 0x20 || c == 0x7f) {
            line.text += "\\x";
            line.text += kHex[c >> 4];
            line.text += kHex[c & 15];
        } else {
            line.text += static_cast<char>(c);
        }
    }
    return line;
}

bool WorkerLogRelay::drain(int fd, Clock::time_point now) {
    char buf[16384];
    // A fair share per wake-up: a worker that writes without pause must not hold the loop.
    for (int round = 0; round < 4; ++round) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            take({buf, static_cast<size_t>(n)}, now);
            if (static_cast<size_t>(n) < sizeof buf) return true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return true;
        flush(now);
        return false;
    }
    return true;
}

void WorkerLogRelay::take(std::string_view bytes, Clock::time_point now) {
    while (!bytes.empty()) {
        size_t nl = bytes.find('\n');
        std::string_view piece = bytes.substr(0, nl);
        if (cutting_) {
            cut_bytes_ += piece.size();
        } else {
            size_t room = kMaxLine - partial_.size();
            if (piece.size() > room) {
                partial_.append(piece.substr(0, room));
                cutting_ = true;
                cut_bytes_ = piece.size() - room;
            } else {
                partial_.append(piece);
            }
        }
        if (nl == std::string_view::npos) return;
        emit(partial_, cutting_, now);
        partial_.clear();
        cutting_ = false;
        cut_bytes_ = 0;
        bytes.remove_prefix(nl + 1);
    }
}

void WorkerLogRelay::flush(Clock::time_point now) {
    if (!partial_.empty() || cutting_) emit(partial_, cutting_, now);
    partial_.clear();
    cutting_ = false;
    cut_bytes_ = 0;
    report_suppressed(now, true);
}

void WorkerLogRelay::emit(std::string_view raw, bool cut, Clock::time_point now) {
    if (refilled_ == Clock::time_point{}) refilled_ = now;
    const double elapsed = std::chrono::duration<double>(now - refilled_).count();
    tokens_ = std::min(kBurstLines, tokens_ + elapsed * kLinesPerSecond);
    refilled_ = now;
    report_suppressed(now, false);
    if (tokens_ < 1) {
        // The first report comes a second after the loss began, then at most once a second.
        if (suppressed_ == 0 && now - reported_ >= std::chrono::seconds(1)) reported_ = now;
        ++suppressed_;
        ++suppressed_total_;
        return;
    }
    tokens_ -= 1;
    WorkerLine line = parse_worker_line(raw);
    std::string text = label_ + ": " + line.text;
    if (cut) text += " [line cut at " + std::to_string(kMaxLine) + " bytes]";
    log::write_line(line.level, text);
}

std::optional<WorkerLogRelay::Clock::time_point> WorkerLogRelay::tick(Clock::time_point now) {
    report_suppressed(now, false);
    if (suppressed_ == 0) return std::nullopt;
    return reported_ + std::chrono::seconds(1);
}

void WorkerLogRelay::report_suppressed(Clock::time_point now, bool force) {
    if (suppressed_ == 0) return;
    if (!force && now - reported_ < std::chrono::seconds(1)) return;
    log::warning(label_, ": ", suppressed_, " log lines suppressed (over ",
                 static_cast<int>(kLinesPerSecond), " lines/s)");
    suppressed_ = 0;
    reported_ = now;
}

}  // namespace pfp::supervisor
