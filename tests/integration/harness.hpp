#pragma once
// Test support for integration tests: runs the real pf-proxyd on a policy written to a temp
// file, and provides loopback servers and clients. No mocks: real processes and sockets.
#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"

namespace pfp::test {

using namespace std::chrono_literals;

std::string bin_dir();

// Waits until `done()` holds, checking every few milliseconds; false when `timeout` passes first.
// The timeout only catches hangs: a test waits for an event, never asserts how soon it came.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 20s);
// One policy proxy entry: tcp:127.0.0.1:listen -> tcp:127.0.0.1:upstream, plus `extra` members
// (", \"workers\": 2").
std::string tcp_proxy_json(const std::string& name, uint16_t listen, uint16_t upstream,
                           const std::string& extra = "");
uint16_t free_port();  // bound-then-closed loopback port

// A temp directory removed on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    const std::string& path() const { return path_; }
    std::string write(const std::string& name, const std::string& content) const;

  private:
    std::string path_;
};

// pf-proxyd running on a policy; stderr captured to a log file.
class Daemon {
  public:
    // nofile > 0: RLIMIT_NOFILE (soft and hard) of pf-proxyd and so of its workers.
    // before_exec runs in the child just before exec, after stdio is set up (e.g. to place
    // sockets and LISTEN_* variables for socket activation).
    Daemon(const std::string& policy_json, std::vector<std::string> extra_args = {},
           rlim_t nofile = 0, std::function<void()> before_exec = {});
    ~Daemon();  // SIGKILL if still running

    // Waits until the log contains `text` (count-th occurrence). False on timeout.
    bool wait_log(const std::string& text, std::chrono::milliseconds timeout = 20s,
                  int count = 1) const;
    bool wait_ready(std::chrono::milliseconds timeout = 20s) const;
    std::string log() const;
    pid_t pid() const { return pid_; }
    std::vector<pid_t> workers() const;  // live children, sorted
    // Waits for a worker set that differs from `old` and has `n` members.
    std::vector<pid_t> wait_workers(size_t n, const std::vector<pid_t>& old = {},
                                    std::chrono::milliseconds timeout = 20s) const;
    void signal(int sig) const;
    // Waits for exit; returns the wait status, or -1 on timeout.
    int wait_exit(std::chrono::milliseconds timeout = 30s);
    const std::string& policy_path() const { return policy_path_; }
    // As an operator would before a reload: writes a new file beside the policy and renames it
    // over the old one. False if either step failed.
    bool rewrite_policy(const std::string& text) const;
    const std::string& control_path() const { return control_path_; }  // --control PATH

  private:
    TempDir dir_;
    std::string policy_path_;
    std::string control_path_;
    std::string log_path_;
    pid_t pid_ = -1;
    bool reaped_ = false;
};

// Live (non-zombie) children of `parent`, sorted, read from /proc.
std::vector<pid_t> children_of(pid_t parent);

// /proc/PID/cmdline with the NULs between arguments as spaces ("" if gone). A worker's reads
// "/path/pf-proxy-worker pf-proxy-worker: NAME/SLOT".
std::string cmdline_of(pid_t pid);

// A command that keeps running (a seed tool, for instance), stdout and stderr each in a file,
// stdin /dev/null. Killed (SIGKILL, with its children) on destruction unless it has exited.
class RunningCommand {
  public:
    explicit RunningCommand(const std::vector<std::string>& argv);
    ~RunningCommand();
    RunningCommand(const RunningCommand&) = delete;
    RunningCommand& operator=(const RunningCommand&) = delete;

    pid_t pid() const { return pid_; }
    std::string out() const;
    std::string err() const;
    // Wait until stdout / stderr contains `text` (count-th occurrence). False on timeout.
    bool wait_out(const std::string& text, std::chrono::milliseconds timeout = 20s) const;
    bool wait_err(const std::string& text, std::chrono::milliseconds timeout = 20s,
                  int count = 1) const;
    // SIGTERM, then the exit status (128 + signal for a signal), or -1 on timeout.
    int terminate(std::chrono::milliseconds timeout = 40s);

  private:
    TempDir dir_;
    std::string out_path_, err_path_;
    pid_t pid_ = -1;
    bool reaped_ = false;
};

// Runs a command to completion; returns exit status and combined output.
struct CommandResult {
    int status;
    std::string output;
};
CommandResult run_command(const std::vector<std::string>& argv);

// /proc/PID/status field value, e.g. status_field(pid, "CapEff") -> "0000000000000000".
std::string status_field(pid_t pid, const std::string& field);
// A whole file as text ("" if it cannot be read), e.g. /proc/PID/environ.
std::string read_text(const std::string& path);
std::vector<std::string> fd_targets(pid_t pid);  // readlink of every /proc/PID/fd/N
// The worker of proxy `name`, slot `slot` ("pf-proxy-worker: NAME/SLOT"), among the daemon's
// live children; -1 if none.
pid_t worker_of(const Daemon& d, const std::string& name, int slot = 0);
// getsockopt of an int option; -1 if it fails.
int int_option(int fd, int level, int name);
// A copy of every socket fd process `pid` holds (pidfd_getfd: root may take another process's
// fds), to read the options the process set on its sockets.
std::vector<unique_fd> socket_copies(pid_t pid);

unique_fd listen_tcp(uint16_t port, int backlog = 4096);
unique_fd connect_tcp(uint16_t port, std::chrono::milliseconds timeout = 5s);  // -1 fd on fail
// Connect result with errno for "refused" checks.
int try_connect_tcp(uint16_t port, unique_fd& out);
// Waits until a connect to the loopback port is refused (every copy of its listener closed).
bool wait_refused(uint16_t port, std::chrono::milliseconds timeout = 20s);
void set_timeouts(int fd, std::chrono::milliseconds t);
bool write_all(int fd, const void* data, size_t n);
// Reads until EOF; false on error/timeout.
bool read_to_eof(int fd, std::string& out);
// Reads until the connection ends and says how: "eof", "reset", "timeout" (SO_RCVTIMEO passed:
// the peer left the connection hanging) or "error: ...".
std::string read_until_end(int fd, std::string& got);
bool read_exact(int fd, void* data, size_t n);
void raise_nofile(rlim_t n);

// Two one-byte exchanges with an echoing peer ("1", then "2"). `"relay": "threads"` hands a
// connection to its thread pair when the client speaks again after an answer, so a connection
// that has conversed is threaded (bound permitting); one that only made one exchange is not.
bool converse(int fd);
// The echoing side of converse(): reads and returns two bytes, one at a time.
bool answer_converse(int fd);
// The threads of a live process (/proc/PID/task), 0 once it is gone.
size_t thread_count(pid_t pid);
// Waits (up to 20 s) until `pid` runs exactly `n` threads: its loop thread and (n - 1) / 2 pairs.
bool wait_thread_count(pid_t pid, size_t n);

// Deterministic pseudo-random bytes and a 64-bit FNV-1a running hash.
// The hash does not depend on how the stream was cut into reads.
struct Fnv {
    uint64_t h = 1469598103934665603ULL;
    uint64_t pending = 0;
    int npending = 0;
    void add(const void* p, size_t n);
    uint64_t value() const;
};
void fill_pattern(std::vector<char>& buf, uint64_t seed);

// Sends `total` pattern bytes then shuts down writing, and hashes what comes back, both at once.
struct Transfer {
    uint64_t sent_hash = 0, received_hash = 0;
    size_t received = 0;
    bool ok = true;
};
// The pattern is fill_pattern(seed), fill_pattern(seed + 1), ... in chunks of this size.
constexpr size_t kTransferChunk = 256 << 10;
Transfer send_and_receive(int fd, size_t total, uint64_t seed);

// An echo server on a loopback TCP port (or any listening stream socket), a thread per
// connection; passes the client's FIN back once everything before it is echoed.
class EchoServer {
  public:
    explicit EchoServer(uint16_t port);
    explicit EchoServer(unique_fd listener);
    ~EchoServer();
    EchoServer(const EchoServer&) = delete;
    EchoServer& operator=(const EchoServer&) = delete;

  private:
    unique_fd listener_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::vector<std::thread> conns_;
};

}  // namespace pfp::test
