// spawn_worker() hands a worker exactly the capabilities its kind names, through the ambient set
// of that one exec: a supervisor running as nobody that keeps CAP_NET_RAW permitted starts a
// program that holds CAP_NET_RAW (effective, permitted, ambient) and nothing else; asked for none,
// the program holds none. The program is cat reading its own /proc/self/status (spawn passes the
// title as the only argument) to its stdout, the log pipe spawn hands back.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "supervisor/spawn.hpp"
#include "tests/support/require.hpp"

namespace pfp::supervisor {
namespace {

// Runs spawn_worker in a child that is nobody holding only CAP_NET_RAW (permitted), and returns
// the spawned program's /proc/self/status.
std::string status_of_spawned(const std::vector<int>& caps) {
    int out[2];
    if (::pipe(out) != 0) return "pipe failed";
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(out[0]);
        ::dup2(out[1], 1);
        if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 || ::setgroups(0, nullptr) != 0 ||
            ::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
            _exit(2);
        __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2]{};
        data[CAP_NET_RAW / 32].permitted = 1U << (CAP_NET_RAW % 32);
        if (::syscall(SYS_capset, &hdr, data) != 0) _exit(3);
        try {
            SpawnedWorker w = spawn_worker("/bin/cat", "/proc/self/status", caps);
            // The program's stdout is the log pipe spawn made: copy it out as the supervisor
            // would read it.
            ::fcntl(w.log.get(), F_SETFL, 0);
            char buf[4096];
            for (ssize_t n; (n = ::read(w.log.get(), buf, sizeof buf)) > 0;)
                if (::write(1, buf, static_cast<size_t>(n)) != n) _exit(6);
            int status = 0;
            ::waitpid(w.pid, &status, 0);
            _exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 4);
        } catch (const std::exception&) {
            _exit(5);
        }
    }
    ::close(out[1]);
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
        text.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return "spawning child failed with " + std::to_string(status);
    return text;
}

std::string field(const std::string& status, const std::string& key) {
    std::istringstream in(status);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 2);
    return "missing " + key + " in: " + status;
}

TEST(SpawnCapabilities, KindCapabilitiesReachTheWorkerThroughTheAmbientSet) {
    PFP_REQUIRE(::geteuid() == 0 ? "" : "root, to become nobody with a capability");
    const std::string raw = "0000000000002000";  // bit 13: CAP_NET_RAW
    const std::string with = status_of_spawned({CAP_NET_RAW});
    EXPECT_EQ(field(with, "CapEff"), raw) << with;
    EXPECT_EQ(field(with, "CapPrm"), raw) << with;
    EXPECT_EQ(field(with, "CapAmb"), raw) << with;
    EXPECT_EQ(field(with, "Uid"), "65534\t65534\t65534\t65534");

    const std::string without = status_of_spawned({});
    EXPECT_EQ(field(without, "CapEff"), "0000000000000000") << without;
    EXPECT_EQ(field(without, "CapPrm"), "0000000000000000") << without;
    EXPECT_EQ(field(without, "CapAmb"), "0000000000000000") << without;
}

// The worker's environment is an allowlist, not the supervisor's minus some names: a variable the
// supervisor holds (a psk_env key, systemd's NOTIFY_SOCKET, anything else) is not there; an
// allowlisted one (the sanitizers' options) is, and PFPROXY_LOG says where logs go.
TEST(SpawnEnvironment, AWorkerInheritsOnlyTheAllowlist) {
    ::setenv("PFP_TEST_SECRET_KEY", "00112233445566778899aabbccddeeff", 1);
    ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
    const bool had_ubsan = std::getenv("UBSAN_OPTIONS") != nullptr;
    if (!had_ubsan) ::setenv("UBSAN_OPTIONS", "print_stacktrace=1", 1);
    std::string environ_text;
    {
        SpawnedWorker w = spawn_worker("/bin/cat", "/proc/self/environ");
        ::fcntl(w.log.get(), F_SETFL, 0);
        char buf[4096];
        for (ssize_t n; (n = ::read(w.log.get(), buf, sizeof buf)) > 0;)
            environ_text.append(buf, static_cast<size_t>(n));
        int status = 0;
        ::waitpid(w.pid, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    ::unsetenv("PFP_TEST_SECRET_KEY");
    ::unsetenv("NOTIFY_SOCKET");
    if (!had_ubsan) ::unsetenv("UBSAN_OPTIONS");
    std::vector<std::string> names;
    for (size_t at = 0; at < environ_text.size();) {
        const size_t end = environ_text.find('\0', at);
        const std::string entry = environ_text.substr(at, end - at);
        names.push_back(entry.substr(0, entry.find('=')));
        if (entry.rfind("PFPROXY_LOG=", 0) == 0) {
            EXPECT_EQ(entry, "PFPROXY_LOG=supervisor");
        }
        at = end == std::string::npos ? environ_text.size() : end + 1;
    }
    for (const std::string& name : names)
        EXPECT_TRUE(name == "PFPROXY_LOG" || name == "UBSAN_OPTIONS" || name == "ASAN_OPTIONS" ||
                    name == "LSAN_OPTIONS" || name.rfind("PFPROXY_HOSTILE", 0) == 0)
            << name << " reached the worker";
    EXPECT_NE(std::find(names.begin(), names.end(), "UBSAN_OPTIONS"), names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), "PFPROXY_LOG"), names.end());
}

}  // namespace
}  // namespace pfp::supervisor
