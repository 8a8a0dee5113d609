// The seed-compatible commands (pf-proxy-compat and its links): what the command line itself
// does. Flags, the seeds' error messages and exit statuses, -h and -V, startup lines, and a clean
// stop on SIGTERM. Runtime conditions (a port in use, a CID that is not ours, a privileged port)
// are created for real. No AF_VSOCK socket is ever connected: vsock listeners are only bound
// (this machine has no vsock loopback, and CID 2 is the machinery hosting it).
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
// linux/vm_sockets.h needs sys/socket.h first.
#include <linux/vm_sockets.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "tests/support/require.hpp"

using namespace pfp::test;
using pfp::unique_fd;

namespace {

const std::vector<std::string> kSeedNames = {
    "vsock-to-ip",
    "ip-to-vsock",
    "vsock-to-ip-transparent",
    "ip-to-vsock-transparent",
    "transparent-port-to-vsock",
    "port-to-vsock-transparent",
};

constexpr uint32_t kCidAny = VMADDR_CID_ANY;  // 4294967295

std::string tool_path(const std::string& name) {
    return bin_dir() + "/" + name;
}

// Replaces the child's stdin with /dev/null, its stdout and stderr with the given fds, optionally
// drops to `uid` (and its group), then execs the tool with argv[0] = its link path.
[[noreturn]] void exec_tool(const std::string& name, const std::vector<std::string>& args,
                            int out_fd, int err_fd, std::optional<passwd> as) {
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::unsetenv("JOURNAL_STREAM");
    if (as) {
        if (::setgroups(0, nullptr) < 0 || ::setgid(as->pw_gid) < 0 || ::setuid(as->pw_uid) < 0)
            ::_exit(126);
    }
    std::vector<std::string> argv = {tool_path(name)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
}

// Exit status, or 128 + signal; -1 when it did not end in time (it is then killed).
int decode(int wstatus) {
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
    return -1;
}

void kill_children(pid_t parent) {
    for (pid_t child : children_of(parent)) ::kill(child, SIGKILL);
}

struct Result {
    int status = -1;
    std::string out;
    std::string err;
};

// Runs a command that is expected to end by itself (help, version, errors).
Result run_tool(const std::string& name, const std::vector<std::string>& args,
                std::optional<passwd> as = std::nullopt, std::chrono::milliseconds timeout = 20s) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0)
        throw std::runtime_error("pipe");
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork");
    if (pid == 0) exec_tool(name, args, out[1], err[1], as);
    ::close(out[1]);
    ::close(err[1]);
    Result r;
    std::string* sinks[2] = {&r.out, &r.err};
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    const auto end = std::chrono::steady_clock::now() + timeout;
    int open = 2;
    bool timed_out = false;
    while (open > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<size_t>(n));
            } else {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open;
            }
        }
    }
    for (auto& p : fds) {
        if (p.fd >= 0) ::close(p.fd);
    }
    if (timed_out) {
        kill_children(pid);
        ::kill(pid, SIGKILL);
    }
    int wstatus = 0;
    ::waitpid(pid, &wstatus, 0);
    r.status = timed_out ? -1 : decode(wstatus);
    return r;
}

// A command that keeps running (a started proxy); stdout and stderr go to files.
class Running {
  public:
    Running(const std::string& name, const std::vector<std::string>& args) {
        out_path_ = dir_.path() + "/stdout";
        err_path_ = dir_.path() + "/stderr";
        int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork");
        if (pid_ == 0) exec_tool(name, args, out, err, std::nullopt);
        ::close(out);
        ::close(err);
    }
    ~Running() {
        if (!reaped_) {
            kill_children(pid_);
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;

    pid_t pid() const { return pid_; }
    std::string out() const { return read(out_path_); }
    std::string err() const { return read(err_path_); }

    // Waits until `pred` holds; false on timeout.
    template <class Pred>
    bool wait_for(Pred pred, std::chrono::milliseconds timeout = 20s) const {
        const auto end = std::chrono::steady_clock::now() + timeout;
        do {
            if (pred()) return true;
            std::this_thread::sleep_for(20ms);
        } while (std::chrono::steady_clock::now() < end);
        return pred();
    }
    bool wait_out(const std::string& text) const {
        return wait_for([&] { return out().find(text) != std::string::npos; });
    }
    // The supervisor has spawned its worker: it now handles SIGTERM (signals are blocked
    // earlier, while it sets up).
    bool wait_supervising() const {
        return wait_for([&] {
            const std::string e = err();
            return e.find("started, generation") != std::string::npos ||
                   e.find("proxies ready") != std::string::npos;
        });
    }
    // Sends SIGTERM and returns the exit status (see decode), -1 on timeout.
    int terminate(std::chrono::milliseconds timeout = 40s) {
        ::kill(pid_, SIGTERM);
        const auto end = std::chrono::steady_clock::now() + timeout;
        do {
            int wstatus = 0;
            if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
                reaped_ = true;
                return decode(wstatus);
            }
            std::this_thread::sleep_for(10ms);
        } while (std::chrono::steady_clock::now() < end);
        return -1;
    }

  private:
    static std::string read(const std::string& path) {
        std::ifstream f(path);
        std::stringstream s;
        s << f.rdbuf();
        return s.str();
    }

    TempDir dir_;
    std::string out_path_;
    std::string err_path_;
    pid_t pid_ = -1;
    bool reaped_ = false;
};

std::string first_line(const std::string& s) {
    return s.substr(0, s.find('\n'));
}

// --- sockets the tests hold or probe (vsock: bind and listen only, never connect) -----------

sockaddr_vm vsock_addr(uint32_t cid, uint32_t port) {
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = cid;
    a.svm_port = port;
    return a;
}

// A vsock port nobody has bound (the kernel picks it).
uint32_t free_vsock_port() {
    unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm a = vsock_addr(kCidAny, VMADDR_PORT_ANY);
    if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        throw std::runtime_error(std::string("vsock bind: ") + std::strerror(errno));
    socklen_t len = sizeof a;
    ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
    return a.svm_port;
}

unique_fd vsock_listener(uint32_t port) {
    unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm a = vsock_addr(kCidAny, port);
    if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(s.get(), 16) < 0)
        throw std::runtime_error(std::string("vsock listen: ") + std::strerror(errno));
    return s;
}

// Someone holds the address: binding it fails with EADDRINUSE.
bool vsock_port_taken(uint32_t port) {
    unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm a = vsock_addr(kCidAny, port);
    return ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 && errno == EADDRINUSE;
}

bool tcp_port_listening(uint16_t port) {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 && errno == EADDRINUSE;
}

std::string vsock_arg(uint32_t cid, uint32_t port) {
    return std::to_string(cid) + ":" + std::to_string(port);
}

std::string loopback(uint16_t port) {
    return "127.0.0.1:" + std::to_string(port);
}

std::string vsock_debug(uint32_t cid, uint32_t port) {
    return "VsockAddr { cid: " + std::to_string(cid) + ", port: " + std::to_string(port) + " }";
}

// The flags that complete a command line around the option under test: -v for the tools with a
// vsock address on either side, -i for those with an IP listener.
struct SeedTool {
    std::string name;
    bool vsock_listener;  // -v is the listener (else -i is, on TCP)
    bool has_ip;          // takes -i
    bool cid_only;        // -v is a bare CID (transparent-port-to-vsock)
};

const std::vector<SeedTool> kTools = {
    {"vsock-to-ip", true, true, false},
    {"ip-to-vsock", false, true, false},
    {"vsock-to-ip-transparent", true, false, false},
    {"ip-to-vsock-transparent", false, true, false},
    {"transparent-port-to-vsock", false, true, true},
    {"port-to-vsock-transparent", false, true, true},
};

const std::regex kVersionLine(R"(^[a-z-]+ [0-9]+\.[0-9]+\.[0-9]+\n$)");

}  // namespace

// ---------------------------------------------------------------------------------------------
// -h and -V

TEST(CompatCliHelp, EveryNamePrintsHelpAndExitsZero) {
    std::vector<std::string> names = kSeedNames;
    names.push_back("vsockproxy");
    for (const auto& name : names) {
        for (const std::string flag : {"-h", "--help"}) {
            SCOPED_TRACE(name + " " + flag);
            Result r = run_tool(name, {flag});
            EXPECT_EQ(r.status, 0);
            EXPECT_EQ(r.err, "");
            const std::string usage = name == "vsockproxy"
                                          ? "usage: vsockproxy <local_port> <remote_cid> "
                                            "<remote_port> <allowed_cid>\n"
                                          : "Usage: " + name + " ";
            EXPECT_EQ(r.out.rfind(usage, 0), 0u) << r.out;
            EXPECT_NE(r.out.find("  -h, --help"), std::string::npos) << r.out;
            EXPECT_NE(r.out.find("  -V, --version"), std::string::npos) << r.out;
            EXPECT_NE(r.out.find("--user <USER>"), std::string::npos) << r.out;
        }
    }
}

TEST(CompatCliHelp, HelpListsTheSeedOptions) {
    Result r = run_tool("vsock-to-ip", {"--help"});
    EXPECT_NE(r.out.find("Usage: vsock-to-ip [OPTIONS] --vsock-addr <VSOCK_ADDR> --ip-addr "
                         "<IP_ADDR>\n"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("  -v, --vsock-addr <VSOCK_ADDR>  vsock address of the listener side"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("  -i, --ip-addr <IP_ADDR>        ip address of the upstream side"),
              std::string::npos)
        << r.out;

    r = run_tool("port-to-vsock-transparent", {"-h"});
    EXPECT_NE(r.out.find("Usage: port-to-vsock-transparent [OPTIONS] --ip-addr <IP_ADDR> --vsock "
                         "<VSOCK>\n"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("  -v, --vsock <VSOCK>"), std::string::npos) << r.out;

    r = run_tool("vsock-to-ip-transparent", {"-h"});
    EXPECT_NE(r.out.find("--allow <CIDR:PORTS>"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--header <FORMAT>"), std::string::npos) << r.out;
}

TEST(CompatCliHelp, HelpWinsOverMissingArguments) {
    // clap handles -h/-V before it checks for required arguments.
    Result r = run_tool("ip-to-vsock", {"-i", "127.0.0.1:1", "-h"});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.rfind("Usage: ip-to-vsock ", 0), 0u);
    r = run_tool("ip-to-vsock", {"-V", "-i"});  // the missing value is a syntax error first
    EXPECT_EQ(r.status, 1);
}

TEST(CompatCliHelp, EveryNamePrintsVersionAndExitsZero) {
    std::vector<std::string> names = kSeedNames;
    names.push_back("vsockproxy");
    for (const auto& name : names) {
        for (const std::string flag : {"-V", "--version"}) {
            SCOPED_TRACE(name + " " + flag);
            Result r = run_tool(name, {flag});
            EXPECT_EQ(r.status, 0);
            EXPECT_EQ(r.err, "");
            EXPECT_EQ(r.out.rfind(name + " ", 0), 0u) << r.out;
            EXPECT_TRUE(std::regex_match(r.out, kVersionLine)) << r.out;
        }
    }
}

TEST(CompatCliHelp, MultiCallBinaryRunsTheNamedCommand) {
    Result r = run_tool("pf-proxy-compat", {"vsock-to-ip", "-V"});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.rfind("vsock-to-ip ", 0), 0u) << r.out;

    r = run_tool("pf-proxy-compat", {"--help"});
    EXPECT_EQ(r.status, 0);
    for (const auto& name : kSeedNames)
        EXPECT_NE(r.out.find("  " + name + "\n"), std::string::npos);

    r = run_tool("pf-proxy-compat", {"no-such-tool"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("unknown command 'no-such-tool'"), std::string::npos) << r.err;
}

// ---------------------------------------------------------------------------------------------
// The PF-Proxy tools' documented error messages for CID:PORT arguments (utils::split_vsock), for
// every tool that takes one. Each is the exact stderr (anyhow's format: context, then the cause),
// exit 1, and nothing on stdout: the seed parses -v before it prints anything.

TEST(CompatCliVsockAddress, SplitVsockErrorsForEveryTool) {
    struct Case {
        std::string arg;
        std::string err;
    };
    const std::string colon = "Error: invalid vsock address, should contain one colon [:] sign\n";
    const std::string cid = "Error: failed to parse cid as a u32\n\nCaused by:\n    ";
    const std::string port = "Error: failed to parse port as a u32\n\nCaused by:\n    ";
    const std::vector<Case> cases = {
        {"88", colon},
        {"88-4000", colon},
        {"88/4000", colon},
        {"", colon},
        {"abc:4000", cid + "invalid digit found in string\n"},
        {"localhost:4000", cid + "invalid digit found in string\n"},
        {":4000", cid + "cannot parse integer from empty string\n"},
        {"4294967296:4000", cid + "number too large to fit in target type\n"},
        {"88:abc", port + "invalid digit found in string\n"},
        {"88:4000:3000", port + "invalid digit found in string\n"},
        {"88:", port + "cannot parse integer from empty string\n"},
        {"88:4294967296", port + "number too large to fit in target type\n"},
    };
    const uint16_t ip_port = free_port();
    for (const auto& tool : kTools) {
        if (tool.cid_only) continue;
        for (const auto& c : cases) {
            SCOPED_TRACE(tool.name + " -v '" + c.arg + "'");
            std::vector<std::string> args = {"-v", c.arg};
            if (tool.has_ip) {
                args.push_back("-i");
                args.push_back(loopback(ip_port));
            }
            Result r = run_tool(tool.name, args);
            EXPECT_EQ(r.status, 1);
            EXPECT_EQ(r.err, c.err);
            EXPECT_EQ(r.out, "");
        }
    }
}

TEST(CompatCliVsockAddress, LongOptionAndEqualsFormsAreAccepted) {
    // --vsock-addr=..., -v=... and -vVALUE all reach split_vsock.
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--vsock-addr=88", "-i", "127.0.0.1:1"},
          std::vector<std::string>{"-v=88", "-i", "127.0.0.1:1"},
          std::vector<std::string>{"-v88", "--ip-addr", "127.0.0.1:1"}}) {
        Result r = run_tool("vsock-to-ip", args);
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.err, "Error: invalid vsock address, should contain one colon [:] sign\n");
    }
}

// ---------------------------------------------------------------------------------------------
// vsock-to-ip

TEST(CompatCliVsockToIp, BindToACidThatIsNotOursFails) {
    // Binding (not connecting) to CID 88: this machine is not CID 88.
    const uint32_t port = free_vsock_port();
    Result r = run_tool("vsock-to-ip", {"-v", vsock_arg(88, port), "-i", "127.0.0.1:8080"});
    EXPECT_EQ(r.status, 1);
    // The seed prints its startup lines before it binds.
    EXPECT_EQ(r.out,
              "Listening on: " + vsock_debug(88, port) + "\nProxying to: \"127.0.0.1:8080\"\n");
    EXPECT_EQ(r.err,
              "Error: Failed to bind listener to vsock: incorrect CID:port\n\nCaused by:\n    "
              "Cannot assign requested address (os error 99)\n");
}

TEST(CompatCliVsockToIp, BindToAPortInUseFails) {
    const uint32_t port = free_vsock_port();
    unique_fd held = vsock_listener(port);
    Result r = run_tool("vsock-to-ip", {"-v", vsock_arg(kCidAny, port), "-i", "127.0.0.1:8080"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err,
              "Error: Failed to bind listener to vsock: incorrect CID:port\n\nCaused by:\n    "
              "Address already in use (os error 98)\n");
}

TEST(CompatCliVsockToIp, UnusableIpAddrIsReportedAtStart) {
    // The seed would fail every connection with this message; pf-proxy says so at start. (A host
    // name is resolved: compat_host_names_test.cpp.)
    const uint32_t port = free_vsock_port();
    for (const std::string ip : {"127.0.0.1", "127.0.0.1:99999", "8080", "host_name:8080"}) {
        SCOPED_TRACE(ip);
        Result r = run_tool("vsock-to-ip", {"-v", vsock_arg(kCidAny, port), "-i", ip});
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.out, "Listening on: " + vsock_debug(kCidAny, port) + "\nProxying to: \"" + ip +
                             "\"\n");
        EXPECT_EQ(first_line(r.err), "Error: failed to connect to TCP endpoint");
        EXPECT_NE(r.err.find("\n\nCaused by:\n    invalid endpoint"), std::string::npos) << r.err;
    }
}

// ---------------------------------------------------------------------------------------------
// The TCP listeners: ip-to-vsock, ip-to-vsock-transparent, transparent-port-to-vsock (both names)

namespace {

struct TcpTool {
    std::string name;
    std::string vsock;     // the -v value
    std::string proxying;  // what "Proxying to: " shows for it
};

const std::vector<TcpTool> kTcpTools = {
    {"ip-to-vsock", "1:5000", vsock_debug(1, 5000)},
    {"ip-to-vsock-transparent", "1:1200", vsock_debug(1, 1200)},
    {"transparent-port-to-vsock", "1", "1"},
    {"port-to-vsock-transparent", "1", "1"},
};

}  // namespace

TEST(CompatCliTcpListener, MalformedListeningAddress) {
    for (const auto& tool : kTcpTools) {
        for (const std::string ip :
             {"127.0.0.1", "8080", "localhost:8080", "192.168.1.10:", "192.168.1.10:abc",
              "1.2.3.4:70000", "::1:8080", "[::1]", "vsock:1:80", ""}) {
            SCOPED_TRACE(tool.name + " -i '" + ip + "'");
            Result r = run_tool(tool.name, {"-i", ip, "-v", tool.vsock});
            EXPECT_EQ(r.status, 1);
            EXPECT_EQ(r.out, "Listening on: \"" + ip + "\"\nProxying to: " + tool.proxying + "\n");
            EXPECT_EQ(first_line(r.err),
                      "Error: Failed to bind listener: malformed listening address:port");
            EXPECT_NE(r.err.find("\n\nCaused by:\n    "), std::string::npos) << r.err;
        }
    }
}

TEST(CompatCliTcpListener, AddressAlreadyInUse) {
    for (const auto& tool : kTcpTools) {
        SCOPED_TRACE(tool.name);
        const uint16_t port = free_port();
        unique_fd held = listen_tcp(port);
        Result r = run_tool(tool.name, {"-i", loopback(port), "-v", tool.vsock});
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.out,
                  "Listening on: \"" + loopback(port) + "\"\nProxying to: " + tool.proxying + "\n");
        EXPECT_EQ(r.err, "Error: Address already in use\n");
    }
}

TEST(CompatCliTcpListener, PermissionDeniedForAPrivilegedPort) {
    const passwd* pw = ::getpwnam("nobody");
    PFP_REQUIRE(pw ? "" : "the user nobody");
    const passwd nobody = *pw;
    uint32_t start = 1024;
    std::ifstream("/proc/sys/net/ipv4/ip_unprivileged_port_start") >> start;
    // A free port below the unprivileged range (checked as root, then used as nobody).
    std::optional<uint16_t> port;
    for (uint16_t p = 999; p > 900 && !port; --p) {
        if (p >= start) continue;
        unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(p);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) port = p;
    }
    PFP_REQUIRE(port ? "" : "a free port below " + std::to_string(start));
    struct stat st {};
    PFP_REQUIRE(::stat(tool_path("pf-proxy-compat").c_str(), &st) == 0 && (st.st_mode & S_IXOTH)
                    ? ""
                    : "pf-proxy-compat executable by nobody");

    for (const auto& tool : kTcpTools) {
        SCOPED_TRACE(tool.name);
        Result r = run_tool(tool.name, {"-i", loopback(*port), "-v", tool.vsock}, nobody);
        PFP_REQUIRE(r.status != 126 ? "" : "switching to the user nobody");
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.out, "Listening on: \"" + loopback(*port) +
                             "\"\nProxying to: " + tool.proxying + "\n");
        EXPECT_EQ(r.err, "Error: Permission denied\n");
    }
}

TEST(CompatCliTcpListener, TransparentPortToVsockTakesACidOnly) {
    // clap parses --vsock as a u32; its message, exit 1 (clap's own status is 2; the tools'
    // documentation says 1).
    for (const std::string name : {"transparent-port-to-vsock", "port-to-vsock-transparent"}) {
        for (const auto& [arg, why] : std::vector<std::pair<std::string, std::string>>{
                 {"88:1200", "invalid digit found in string"},
                 {"abc", "invalid digit found in string"},
                 {"", "cannot parse integer from empty string"},
                 {"4294967296", "number too large to fit in target type"}}) {
            SCOPED_TRACE(name + " -v '" + arg + "'");
            Result r = run_tool(name, {"-i", "127.0.0.1:1200", "-v", arg});
            EXPECT_EQ(r.status, 1);
            EXPECT_EQ(r.out, "");
            EXPECT_EQ(r.err, "error: invalid value '" + arg + "' for '--vsock <VSOCK>': " + why +
                                 "\n\nFor more information, try '--help'.\n");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// vsock-to-ip-transparent

TEST(CompatCliVsockToIpTransparent, BindFailures) {
    const uint32_t port = free_vsock_port();
    Result r = run_tool("vsock-to-ip-transparent", {"-v", vsock_arg(88, port)});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.out, "Listening on: " + vsock_debug(88, port) + "\n");
    EXPECT_EQ(r.err,
              "Error: Failed to bind listener to vsock: incorrect CID:port\n\nCaused by:\n    "
              "Cannot assign requested address (os error 99)\n");

    unique_fd held = vsock_listener(port);
    r = run_tool("vsock-to-ip-transparent", {"--vsock-addr", vsock_arg(kCidAny, port)});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.out, "Listening on: " + vsock_debug(kCidAny, port) + "\n");
    EXPECT_EQ(first_line(r.err), "Error: Failed to bind listener to vsock: incorrect CID:port");
}

TEST(CompatCliVsockToIpTransparent, PfProxyOptionsAreChecked) {
    Result r = run_tool("vsock-to-ip-transparent", {"-v", "3:1200", "--allow", "10.0.0.0/33:443"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("error: invalid value '10.0.0.0/33:443' for '--allow <CIDR:PORTS>': ", 0),
              0u)
        << r.err;

    r = run_tool("vsock-to-ip-transparent", {"-v", "3:1200", "--header", "v5"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err.rfind("error: invalid value 'v5' for '--header <FORMAT>'", 0), 0u) << r.err;
}

// ---------------------------------------------------------------------------------------------
// Usage errors: clap's messages, exit status 1 as the tools' documentation says

TEST(CompatCliUsage, MissingUnknownRepeatedArguments) {
    for (const auto& tool : kTools) {
        SCOPED_TRACE(tool.name);
        Result r = run_tool(tool.name, {});
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.out, "");
        EXPECT_EQ(
            r.err.rfind("error: the following required arguments were not provided:\n  --", 0), 0u)
            << r.err;
        EXPECT_NE(r.err.find("\nUsage: " + tool.name + " "), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("\n\nFor more information, try '--help'.\n"), std::string::npos);

        std::vector<std::string> ok = {"-v", tool.cid_only ? "1" : "1:2"};
        if (tool.has_ip) {
            ok.push_back("-i");
            ok.push_back("127.0.0.1:1");
        }
        auto with = [&](std::vector<std::string> extra) {
            std::vector<std::string> a = ok;
            a.insert(a.end(), extra.begin(), extra.end());
            return run_tool(tool.name, a);
        };
        r = with({"--bogus"});
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(first_line(r.err), "error: unexpected argument '--bogus' found");

        r = with({"extra"});
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(first_line(r.err), "error: unexpected argument 'extra' found");

        r = with({"-v", "3:4"});
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(first_line(r.err), std::string("error: the argument '--vsock") +
                                         (tool.cid_only ? " <VSOCK>" : "-addr <VSOCK_ADDR>") +
                                         "' cannot be used multiple times");

        r = with({"-v"});
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.err, std::string("error: a value is required for '--vsock") +
                             (tool.cid_only ? " <VSOCK>" : "-addr <VSOCK_ADDR>") +
                             "' but none was supplied\n\nFor more information, try '--help'.\n");

        // No abbreviations: clap matches whole option names only.
        if (!tool.cid_only) {
            r = with({"--vsock-ad", "1:2"});
            EXPECT_EQ(r.status, 1);
            EXPECT_EQ(first_line(r.err), "error: unexpected argument '--vsock-ad' found");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// vsockproxy

TEST(CompatCliVsockproxy, ArgumentErrors) {
    const std::string usage =
        "usage: vsockproxy <local_port> <remote_cid> <remote_port> <allowed_cid>\n";
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{}, std::vector<std::string>{"8080"},
          std::vector<std::string>{"8080", "3", "9090"}}) {
        Result r = run_tool("vsockproxy", args);
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.out, usage);  // the seed prints its usage on stdout
        EXPECT_EQ(r.err, "");
    }
    struct Case {
        std::vector<std::string> args;
        std::string err;
    };
    const std::vector<Case> cases = {
        {{"abc", "3", "9090", "0"},
         "vsockproxy: invalid <local_port> 'abc': expected a number 0-4294967295\n"},
        {{"8080", "-1", "9090", "0"},
         "vsockproxy: invalid <remote_cid> '-1': expected a number 0-4294967295\n"},
        {{"8080", "3", "90x", "0"},
         "vsockproxy: invalid <remote_port> '90x': expected a number 0-4294967295\n"},
        {{"8080", "3", "9090", "4294967296"},
         "vsockproxy: invalid <allowed_cid> '4294967296': expected a number 0-4294967295\n"},
        {{"8080", "3", "9090", ""},
         "vsockproxy: invalid <allowed_cid> '': expected a number 0-4294967295\n"},
        {{"--bogus", "8080", "3", "9090", "0"}, "vsockproxy: unknown option '--bogus'\n"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.err);
        Result r = run_tool("vsockproxy", c.args);
        EXPECT_EQ(r.status, 1);
        EXPECT_EQ(r.out, "");
        EXPECT_EQ(r.err, c.err + usage);
    }
}

TEST(CompatCliVsockproxy, BindToAPortInUseFails) {
    const uint32_t port = free_vsock_port();
    unique_fd held = vsock_listener(port);
    Result r = run_tool("vsockproxy", {std::to_string(port), "1", "5000", "0"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.out, "vsockproxy started (local port " + std::to_string(port) +
                         ", remote cid 1, remote port 5000, allowed_cid 0)\n"
                         "Failed to bind: Address already in use\n");
    EXPECT_EQ(r.err, "");
}

// ---------------------------------------------------------------------------------------------
// Starting: the seed's startup lines on stdout, the listener really open, exit 0 on SIGTERM.
// Nothing connects to these proxies.

namespace {

// The listener is opened before the worker is spawned, so once the supervisor runs, binding the
// address must fail (probing earlier could race with the supervisor's own bind).
template <class Taken>
void expect_listening_then_clean_stop(Running& r, Taken taken) {
    ASSERT_TRUE(r.wait_supervising()) << r.err();
    EXPECT_TRUE(taken()) << r.err();
    EXPECT_EQ(r.terminate(), 0) << r.err();
}

}  // namespace

TEST(CompatCliStart, VsockToIp) {
    const uint32_t vport = free_vsock_port();
    const uint16_t port = free_port();
    Running r("vsock-to-ip", {"-v", vsock_arg(kCidAny, vport), "-i", loopback(port)});
    const std::string lines = "Listening on: " + vsock_debug(kCidAny, vport) + "\nProxying to: \"" +
                              loopback(port) + "\"\n";
    ASSERT_TRUE(r.wait_out(lines)) << r.out() << r.err();
    expect_listening_then_clean_stop(r, [&] { return vsock_port_taken(vport); });
    EXPECT_EQ(r.out(), lines);
}

TEST(CompatCliStart, IpToVsock) {
    const uint16_t port = free_port();
    Running r("ip-to-vsock", {"-i", loopback(port), "-v", "1:5000"});
    const std::string lines =
        "Listening on: \"" + loopback(port) + "\"\nProxying to: " + vsock_debug(1, 5000) + "\n";
    ASSERT_TRUE(r.wait_out(lines)) << r.out() << r.err();
    expect_listening_then_clean_stop(r, [&] { return tcp_port_listening(port); });
    EXPECT_EQ(r.out(), lines);
}

TEST(CompatCliStart, VsockToIpTransparent) {
    const uint32_t vport = free_vsock_port();
    Running r("vsock-to-ip-transparent",
              {"--vsock-addr", vsock_arg(kCidAny, vport), "--allow", "127.0.0.1/32:8080"});
    const std::string lines = "Listening on: " + vsock_debug(kCidAny, vport) + "\n";
    ASSERT_TRUE(r.wait_out(lines)) << r.out() << r.err();
    expect_listening_then_clean_stop(r, [&] { return vsock_port_taken(vport); });
    EXPECT_EQ(r.out(), lines);
}

TEST(CompatCliStart, IpToVsockTransparent) {
    const uint16_t port = free_port();
    Running r("ip-to-vsock-transparent", {"--ip-addr", loopback(port), "--vsock-addr", "1:1200"});
    const std::string lines =
        "Listening on: \"" + loopback(port) + "\"\nProxying to: " + vsock_debug(1, 1200) + "\n";
    ASSERT_TRUE(r.wait_out(lines)) << r.out() << r.err();
    expect_listening_then_clean_stop(r, [&] { return tcp_port_listening(port); });
    EXPECT_EQ(r.out(), lines);
}

TEST(CompatCliStart, TransparentPortToVsockBothNames) {
    for (const std::string name : {"transparent-port-to-vsock", "port-to-vsock-transparent"}) {
        SCOPED_TRACE(name);
        const uint16_t port = free_port();
        Running r(name, {"-i", loopback(port), "-v", "1"});
        const std::string lines = "Listening on: \"" + loopback(port) + "\"\nProxying to: 1\n";
        ASSERT_TRUE(r.wait_out(lines)) << r.out() << r.err();
        expect_listening_then_clean_stop(r, [&] { return tcp_port_listening(port); });
        EXPECT_EQ(r.out(), lines);
    }
}

TEST(CompatCliStart, Vsockproxy) {
    const uint32_t vport = free_vsock_port();
    Running r("vsockproxy", {std::to_string(vport), "1", "5000", "7"});
    const std::string started = "vsockproxy started (local port " + std::to_string(vport) +
                                ", remote cid 1, remote port 5000, allowed_cid 7)\n";
    ASSERT_TRUE(r.wait_out(started)) << r.out() << r.err();
    expect_listening_then_clean_stop(r, [&] { return vsock_port_taken(vport); });
    EXPECT_EQ(r.out(), started + "vsockproxy finished\n");
}

TEST(CompatCliStart, UserOptionDropsPrivileges) {
    const passwd* pw = ::getpwnam("nobody");
    PFP_REQUIRE(pw ? "" : "the user nobody");
    const uid_t uid = pw->pw_uid;
    const uint16_t port = free_port();
    Running r("ip-to-vsock", {"-i", loopback(port), "-v", "1:5000", "--user", "nobody"});
    ASSERT_TRUE(r.wait_supervising()) << r.err();
    const std::string u = std::to_string(uid);
    EXPECT_EQ(status_field(r.pid(), "Uid"), u + "\t" + u + "\t" + u + "\t" + u);
    EXPECT_EQ(r.terminate(), 0) << r.err();
}

TEST(CompatCliStart, UnknownUserFailsAtStart) {
    const uint16_t port = free_port();
    Result res = run_tool("ip-to-vsock",
                          {"-i", loopback(port), "-v", "1:5000", "--user", "no-such-user-pfp"});
    EXPECT_EQ(res.status, 1);
    EXPECT_NE(res.err.find("no-such-user-pfp"), std::string::npos) << res.err;
}

TEST(CompatCliStart, PfProxyEndpointFormsAreAccepted) {
    const uint32_t vport = free_vsock_port();
    const uint16_t port = free_port();
    Running r("vsock-to-ip",
              {"-v", "vsock:any:" + std::to_string(vport), "-i", "tcp:" + loopback(port)});
    const std::string lines = "Listening on: " + vsock_debug(kCidAny, vport) +
                              "\nProxying to: \"tcp:" + loopback(port) + "\"\n";
    ASSERT_TRUE(r.wait_out(lines)) << r.out() << r.err();
    expect_listening_then_clean_stop(r, [&] { return vsock_port_taken(vport); });
}

TEST(CompatCliVsockAddress, PfProxyEndpointFormErrors) {
    Result r = run_tool("ip-to-vsock", {"-i", "127.0.0.1:1", "-v", "vsock:1:original-port"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err,
              "Error: invalid endpoint \"vsock:1:original-port\": original-port is for "
              "transparent-port-to-vsock only\n");
    r = run_tool("vsock-to-ip", {"-v", "vsock:x:1", "-i", "127.0.0.1:1"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(first_line(r.err),
              "Error: invalid endpoint \"vsock:x:1\": CID must be any, host, "
              "local or a number 0-4294967295");
}
