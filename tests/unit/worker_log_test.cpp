// The supervisor's relay of worker output (supervisor/worker_log.hpp), fed through a real pipe and
// read back from the supervisor's real stderr (redirected to a file for the test).
#include "supervisor/worker_log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "common/unique_fd.hpp"

using pfp::unique_fd;
using pfp::supervisor::parse_worker_line;
using pfp::supervisor::WorkerLogRelay;
using Level = pfp::log::Level;

namespace {

// Captures what this process writes to fd 2 while it lives.
class StderrCapture {
  public:
    StderrCapture() {
        ::unsetenv("JOURNAL_STREAM");
        ::unsetenv("PFPROXY_LOG");
        char name[] = "/tmp/pfp-worker-log-XXXXXX";
        file_ = unique_fd(::mkstemp(name));
        path_ = name;
        saved_ = unique_fd(::dup(2));
        ::dup2(file_.get(), 2);
    }
    ~StderrCapture() {
        ::dup2(saved_.get(), 2);
        ::unlink(path_.c_str());
    }
    std::string text() const {
        std::ifstream in(path_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }

  private:
    unique_fd file_, saved_;
    std::string path_;
};

size_t count(const std::string& haystack, const std::string& needle) {
    size_t n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1))
        ++n;
    return n;
}

}  // namespace

TEST(WorkerLog, PriorityIsTheWorkersButNeverAboveError) {
    EXPECT_EQ(parse_worker_line("<6>hello").level, Level::info);
    EXPECT_EQ(parse_worker_line("<6>hello").text, "hello");
    EXPECT_EQ(parse_worker_line("<7>x").level, Level::debug);
    EXPECT_EQ(parse_worker_line("<3>x").level, Level::error);
    for (const char* forged : {"<0>x", "<1>x", "<2>x"})
        EXPECT_EQ(parse_worker_line(forged).level, Level::error) << forged;
    // Unmarked, or marked badly: a notice, the bytes kept as written.
    EXPECT_EQ(parse_worker_line("==12==ERROR: AddressSanitizer").level, Level::notice);
    EXPECT_EQ(parse_worker_line("<8>x").level, Level::notice);
    EXPECT_EQ(parse_worker_line("<8>x").text, "<8>x");
    EXPECT_EQ(parse_worker_line("<6").text, "<6");
}

TEST(WorkerLog, ControlBytesAreEscaped) {
    EXPECT_EQ(parse_worker_line(std::string("a\x1b[2Kb\rc\x7f\x01\t", 11)).text,
              "a\\x1b[2Kb\\x0dc\\x7f\\x01\\x09");
    EXPECT_EQ(parse_worker_line(std::string("nul\0byte", 8)).text, "nul\\x00byte");
    EXPECT_EQ(parse_worker_line("caf\xc3\xa9").text, "caf\xc3\xa9");  // UTF-8 stays readable
}

TEST(WorkerLog, LinesArriveWholeUnderTheLabelWhateverTheReadBoundaries) {
    StderrCapture cap;
    int p[2];
    ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    unique_fd r(p[0]), w(p[1]);
    WorkerLogRelay relay("proxy \"a\" worker 0 (pid 42)");
    const auto now = WorkerLogRelay::Clock::now();
    for (const char* piece : {"<6>first ", "half\n<4>sec", "ond\n", "<6>third\nno newline"}) {
        ASSERT_GT(::write(w.get(), piece, std::strlen(piece)), 0);
        EXPECT_TRUE(relay.drain(r.get(), now));
    }
    w.reset();
    EXPECT_FALSE(relay.drain(r.get(), now));  // end of file: the tail is emitted
    const std::string out = cap.text();
    EXPECT_NE(out.find("info: proxy \"a\" worker 0 (pid 42): first half\n"), std::string::npos)
        << out;
    EXPECT_NE(out.find("warning: proxy \"a\" worker 0 (pid 42): second\n"), std::string::npos)
        << out;
    EXPECT_NE(out.find("info: proxy \"a\" worker 0 (pid 42): third\n"), std::string::npos) << out;
    EXPECT_NE(out.find("notice: proxy \"a\" worker 0 (pid 42): no newline\n"), std::string::npos)
        << out;
    EXPECT_EQ(count(out, "\n"), 4u) << out;
}

TEST(WorkerLog, OverlongLinesAreCutAndSaySo) {
    StderrCapture cap;
    int p[2];
    ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    unique_fd r(p[0]), w(p[1]);
    WorkerLogRelay relay("w");
    const std::string line =
        "<6>" + std::string(WorkerLogRelay::kMaxLine + 5000, 'x') + "\n<6>after\n";
    const auto now = WorkerLogRelay::Clock::now();
    size_t off = 0;
    while (off < line.size()) {
        ssize_t n = ::write(w.get(), line.data() + off, line.size() - off);
        ASSERT_GT(n, 0);
        off += static_cast<size_t>(n);
        relay.drain(r.get(), now);
    }
    relay.flush(now);
    const std::string out = cap.text();
    EXPECT_EQ(count(out, "\n"), 2u) << out.size();
    EXPECT_NE(out.find("[line cut at 4096 bytes]\n"), std::string::npos);
    // The kept part is the line's start: the marker "<6>" counts toward the limit.
    EXPECT_EQ(count(out, "x"), WorkerLogRelay::kMaxLine - 3);
    EXPECT_NE(out.find("info: w: after\n"), std::string::npos);
}

TEST(WorkerLog, AFloodIsCutToTheRateAndReportedOncePerSecond) {
    StderrCapture cap;
    int p[2];
    ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    unique_fd r(p[0]), w(p[1]);
    WorkerLogRelay relay("w");
    auto now = WorkerLogRelay::Clock::now();
    const auto burst = static_cast<size_t>(WorkerLogRelay::kBurstLines);
    auto send = [&](size_t lines) {
        for (size_t i = 0; i < lines; ++i) {
            ASSERT_EQ(::write(w.get(), "<6>l\n", 5), 5);
            if (i % 1000 == 999) relay.drain(r.get(), now);
        }
        relay.drain(r.get(), now);
    };
    send(burst + 500);  // at one instant: the burst passes, 500 are suppressed
    EXPECT_EQ(count(cap.text(), "suppressed"), 0u);  // not yet: a second after the loss began
    ASSERT_TRUE(relay.tick(now));
    EXPECT_EQ(*relay.tick(now), now + std::chrono::seconds(1));
    now += std::chrono::seconds(1);  // a second later: 1,000 more allowed, the loss reported
    send(1700);
    relay.flush(now);  // the end reports what is left
    const std::string out = cap.text();
    EXPECT_EQ(count(out, "info: w: l\n"), burst + 1000);
    EXPECT_EQ(count(out, "warning: w: 500 log lines suppressed"), 1u) << out.substr(0, 200);
    EXPECT_EQ(count(out, "warning: w: 700 log lines suppressed"), 1u);
    EXPECT_EQ(count(out, "suppressed"), 2u);
    EXPECT_EQ(relay.suppressed_total(), 1200u);
    EXPECT_FALSE(relay.tick(now + std::chrono::seconds(5)));  // nothing left to report
}

TEST(WorkerLog, ASilentWorkersLossIsReportedByTheTick) {
    StderrCapture cap;
    int p[2];
    ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    unique_fd r(p[0]), w(p[1]);
    WorkerLogRelay relay("w");
    const auto now = WorkerLogRelay::Clock::now();
    const auto lines = static_cast<size_t>(WorkerLogRelay::kBurstLines) + 7;
    for (size_t i = 0; i < lines; ++i) {
        ASSERT_EQ(::write(w.get(), "<6>l\n", 5), 5);
        if (i % 1000 == 999) relay.drain(r.get(), now);
    }
    relay.drain(r.get(), now);
    const auto when = relay.tick(now);
    ASSERT_TRUE(when);
    EXPECT_FALSE(relay.tick(*when));  // reported then
    EXPECT_EQ(count(cap.text(), "warning: w: 7 log lines suppressed"), 1u);
}
