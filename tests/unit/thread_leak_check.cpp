// Every unit test must end with the process back to one thread. The sanitizer stage runs many
// tests in one process (gtest shards), and GCC 12's libasan has no fork interceptor: a test that
// forks a child which allocates, while an earlier test's thread is still running (and may hold
// the sanitizer allocator's lock), can leave that child hung for good. This check names the test
// that left a thread behind, in every build, so the hazard cannot come back unnoticed.

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>

namespace {

int threads_in_this_process() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
    return -1;
}

class ThreadLeakCheck : public testing::EmptyTestEventListener {
    // Appended after gtest's printer, so it runs before the printer's OnTestEnd: a failure
    // raised here is reported as the ending test's own.
    void OnTestEnd(const testing::TestInfo& test) override {
        const int n = threads_in_this_process();
        EXPECT_EQ(n, 1) << test.test_suite_name() << "." << test.name() << " ended with " << n
                        << " threads: join every thread a test starts before it returns";
    }
};

// gtest_main owns main(); the listener list takes ownership of what is appended.
const bool registered = [] {
    testing::UnitTest::GetInstance()->listeners().Append(
        std::make_unique<ThreadLeakCheck>().release());
    return true;
}();

}  // namespace
