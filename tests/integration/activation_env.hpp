#pragma once
// What systemd gives a service, rebuilt for integration tests: sockets passed by socket
// activation (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, fds from 3 without FD_CLOEXEC) and a
// NOTIFY_SOCKET the test listens on, which receives sd_notify messages and FD store fds.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/unique_fd.hpp"
#include "harness.hpp"

namespace pfp::test {

// The environment and fds of a service systemd starts. Feed hook() to Daemon's before_exec.
class ActivationEnv {
  public:
    // Passes `fd` (borrowed: it must stay open until the Daemon is constructed) as the next fd
    // (3, 4, ...) under FileDescriptorName=name.
    ActivationEnv& pass(int fd, std::string name);
    ActivationEnv& notify_socket(std::string path);

    // Runs in the forked child just before exec: places the fds at 3, 4, ... and sets
    // LISTEN_PID (the child's own pid, which exec keeps), LISTEN_FDS, LISTEN_FDNAMES and
    // NOTIFY_SOCKET. Variables of the test's own environment that would confuse pf-proxyd
    // (LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*) are removed first.
    std::function<void()> hook() const;

  private:
    std::vector<int> fds_;
    std::vector<std::string> names_;
    std::string notify_;
};

// One datagram received on the fake NOTIFY_SOCKET.
struct NotifyMessage {
    std::string text;                         // "KEY=VALUE\nKEY=VALUE..."
    std::vector<ino_t> fds;                   // inodes of the fds it carried (SCM_RIGHTS), in order
    bool has(const std::string& line) const;  // one of the lines is exactly `line`
    std::string value(const std::string& key) const;  // "" if absent
};

// The service manager's side of NOTIFY_SOCKET: an AF_UNIX SOCK_DGRAM socket bound in its own
// temp dir (writable by the unprivileged pf-proxyd), and an FD store kept as systemd keeps it:
// FDSTORE=1 adds the fds under FDNAME (default "stored"), FDSTOREREMOVE=1 closes every fd of
// FDNAME, fds sent without FDSTORE=1 are closed.
class NotifySocket {
  public:
    NotifySocket();
    const std::string& path() const { return path_; }

    // Receives what has arrived, then waits up to `timeout` for a message at index >= from
    // that satisfies `pred`; returns its index, or -1 on timeout.
    int wait_for(const std::function<bool(const NotifyMessage&)>& pred,
                 std::chrono::milliseconds timeout = 20s, size_t from = 0);
    // Receives whatever has arrived without waiting.
    void drain();
    const std::vector<NotifyMessage>& messages() const { return messages_; }
    std::string dump() const;  // every message so far, for failure output

    // The store: fds under `name` (borrowed), every entry, and an entry put there directly (as
    // an earlier pf-proxyd would have).
    std::vector<int> stored(const std::string& name) const;
    const std::vector<std::pair<std::string, unique_fd>>& store() const { return store_; }
    void put(const std::string& name, unique_fd fd);
    // Passes the whole store to the next start, as systemd does (LISTEN_FDNAMES = FDNAME).
    void pass_store(ActivationEnv& env) const;

  private:
    bool receive_one();  // false if nothing was pending
    TempDir dir_;
    std::string path_;
    unique_fd sock_;
    std::vector<NotifyMessage> messages_;
    std::vector<std::pair<std::string, unique_fd>> store_;
};

// Listening sockets as the .socket unit would create them (all close-on-exec here).
unique_fd listen_unix(const std::string& path);
// AF_VSOCK on VMADDR_CID_ANY, a port the kernel picks; `port` receives it. Never connected.
unique_fd listen_vsock_any(uint32_t& port);
// A TCP socket bound to 127.0.0.1:port that does not listen.
unique_fd bound_tcp(uint16_t port);
// A connected Unix stream client with send/receive timeouts ("@name": abstract); -1 fd on
// failure.
unique_fd connect_unix(const std::string& path, std::chrono::milliseconds timeout = 20s);

ino_t socket_inode(int fd);
// fd numbers of `pid` that refer to socket `ino` (readlink "socket:[INO]").
std::vector<int> fds_of_socket(pid_t pid, ino_t ino);
// Every process that holds socket `ino` open.
std::vector<pid_t> holders_of_socket(ino_t ino);
// Processes whose cmdline contains `text`.
std::vector<pid_t> processes_with_cmdline(const std::string& text);
// /proc/PID/environ entries ("KEY=VALUE").
std::vector<std::string> environ_of(pid_t pid);

// The lines of a log containing `text`.
std::vector<std::string> lines_with(const std::string& log, const std::string& text);
// The message part of a pf-proxyd log line ("... pf-proxyd[PID] LEVEL: MESSAGE").
std::string message_of(const std::string& line);

}  // namespace pfp::test
