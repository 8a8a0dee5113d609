#include "activation_env.hpp"

#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pfp::test {

namespace fs = std::filesystem;

namespace {

std::runtime_error failure(const std::string& what) {
    return std::runtime_error(what + ": " + std::strerror(errno));
}

bool all_digits(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), ::isdigit);
}

}  // namespace

ActivationEnv& ActivationEnv::pass(int fd, std::string name) {
    fds_.push_back(fd);
    names_.push_back(std::move(name));
    return *this;
}

ActivationEnv& ActivationEnv::notify_socket(std::string path) {
    notify_ = std::move(path);
    return *this;
}

std::function<void()> ActivationEnv::hook() const {
    // Everything the child needs is computed here, so that it only copies fds and sets variables.
    std::string names;
    for (const auto& n : names_) names += (names.empty() ? "" : ":") + n;
    return [fds = fds_, names, count = std::to_string(fds_.size()), notify = notify_] {
        for (const char* v : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                              "WATCHDOG_PID", "WATCHDOG_USEC"})
            ::unsetenv(v);
        const int n = static_cast<int>(fds.size());
        // Copies above every target first, so that moving one to 3 + i never closes a source
        // that sits at a lower target.
        int high[64];
        if (n > 64) ::_exit(126);
        for (int i = 0; i < n; ++i) {
            high[i] = ::fcntl(fds[static_cast<size_t>(i)], F_DUPFD_CLOEXEC, std::max(64, 3 + n));
            if (high[i] < 0) ::_exit(126);
        }
        for (int i = 0; i < n; ++i) {
            // dup2 leaves FD_CLOEXEC clear on the target, as systemd passes them.
            if (::dup2(high[i], 3 + i) < 0) ::_exit(126);
            ::close(high[i]);
        }
        if (n > 0) {
            char pid[32];
            std::snprintf(pid, sizeof pid, "%d", static_cast<int>(::getpid()));
            ::setenv("LISTEN_PID", pid, 1);
            ::setenv("LISTEN_FDS", count.c_str(), 1);
            ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
        }
        if (!notify.empty()) ::setenv("NOTIFY_SOCKET", notify.c_str(), 1);
    };
}

bool NotifyMessage::has(const std::string& line) const {
    std::istringstream s(text);
    for (std::string l; std::getline(s, l);)
        if (l == line) return true;
    return false;
}

std::string NotifyMessage::value(const std::string& key) const {
    std::istringstream s(text);
    for (std::string l; std::getline(s, l);)
        if (l.rfind(key + "=", 0) == 0) return l.substr(key.size() + 1);
    return "";
}

NotifySocket::NotifySocket() : path_(dir_.path() + "/notify") {
    sock_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock_) throw failure("notify socket");
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    if (::bind(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        throw failure("bind " + path_);
    // pf-proxyd drops to an unprivileged user; sending needs write permission on the file.
    ::chmod(path_.c_str(), 0666);
}

bool NotifySocket::receive_one() {
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) return false;
    NotifyMessage m;
    m.text.assign(buf, static_cast<size_t>(n));
    std::vector<unique_fd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
            m.fds.push_back(socket_inode(fd));
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) m.text += "\n(control data truncated)";
    // systemd's order: FDSTOREREMOVE, then FDSTORE of the fds that came along.
    std::string name = m.value("FDNAME");
    if (m.has("FDSTOREREMOVE=1") && !name.empty()) {
        std::erase_if(store_, [&](const auto& e) { return e.first == name; });
    }
    if (m.has("FDSTORE=1")) {
        if (name.empty()) name = "stored";
        for (auto& fd : fds) store_.emplace_back(name, std::move(fd));
    }
    messages_.push_back(std::move(m));
    return true;
}

void NotifySocket::drain() {
    while (receive_one()) {
    }
}

int NotifySocket::wait_for(const std::function<bool(const NotifyMessage&)>& pred,
                           std::chrono::milliseconds timeout, size_t from) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        drain();
        for (size_t i = from; i < messages_.size(); ++i)
            if (pred(messages_[i])) return static_cast<int>(i);
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        if (left.count() <= 0) return -1;
        pollfd p{sock_.get(), POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    }
}

std::string NotifySocket::dump() const {
    std::string out;
    for (size_t i = 0; i < messages_.size(); ++i) {
        std::string t = messages_[i].text;
        std::replace(t.begin(), t.end(), '\n', '|');
        out += "  [" + std::to_string(i) + "] " + t + " (" +
               std::to_string(messages_[i].fds.size()) + " fds)\n";
    }
    return out.empty() ? "  (no messages)\n" : out;
}

std::vector<int> NotifySocket::stored(const std::string& name) const {
    std::vector<int> out;
    for (const auto& e : store_)
        if (e.first == name) out.push_back(e.second.get());
    return out;
}

void NotifySocket::put(const std::string& name, unique_fd fd) {
    store_.emplace_back(name, std::move(fd));
}

void NotifySocket::pass_store(ActivationEnv& env) const {
    for (const auto& e : store_) env.pass(e.second.get(), e.first);
}

unique_fd listen_unix(const std::string& path) {
    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path) throw std::runtime_error("path too long: " + path);
    std::memcpy(a.sun_path, path.data(), path.size());
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(s.get(), 128))
        throw failure("listen_unix " + path);
    return s;
}

unique_fd listen_vsock_any(uint32_t& port) {
    unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) throw failure("socket(AF_VSOCK)");
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = VMADDR_CID_ANY;
    a.svm_port = VMADDR_PORT_ANY;
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(s.get(), 128))
        throw failure("listen_vsock_any");
    socklen_t len = sizeof a;
    if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0)
        throw failure("getsockname(AF_VSOCK)");
    port = a.svm_port;
    return s;
}

unique_fd bound_tcp(uint16_t port) {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        throw failure("bound_tcp " + std::to_string(port));
    return s;
}

unique_fd connect_unix(const std::string& path, std::chrono::milliseconds timeout) {
    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) return unique_fd();
    std::memcpy(a.sun_path, path.data(), path.size());
    socklen_t len = sizeof a;
    if (path[0] == '@') {  // abstract: the name is exactly the bytes after the NUL
        a.sun_path[0] = '\0';
        len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    }
    set_timeouts(s.get(), timeout);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), len) < 0) return unique_fd();
    return s;
}

ino_t socket_inode(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw failure("fstat");
    return st.st_ino;
}

std::vector<int> fds_of_socket(pid_t pid, ino_t ino) {
    std::vector<int> out;
    const std::string want = "socket:[" + std::to_string(ino) + "]";
    try {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
            std::error_code rec;
            if (fs::read_symlink(e.path(), rec).string() == want)
                out.push_back(std::stoi(e.path().filename().string()));
        }
    } catch (const fs::filesystem_error&) {
        // The process exited while its fds were listed.
    }
    std::sort(out.begin(), out.end());
    return out;
}

namespace {

// Every process in /proc for which `keep` holds, sorted.
template <typename Pred>
std::vector<pid_t> processes_where(Pred keep) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (!all_digits(name)) continue;
        const pid_t pid = static_cast<pid_t>(std::stoi(name));
        if (keep(pid)) out.push_back(pid);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

std::vector<pid_t> holders_of_socket(ino_t ino) {
    return processes_where([ino](pid_t pid) { return !fds_of_socket(pid, ino).empty(); });
}

std::vector<pid_t> processes_with_cmdline(const std::string& text) {
    return processes_where([&text](pid_t pid) {
        return pid != ::getpid() && cmdline_of(pid).find(text) != std::string::npos;
    });
}

std::vector<std::string> environ_of(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/environ");
    if (!f) throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/environ");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<std::string> out;
    std::istringstream s(all);
    for (std::string v; std::getline(s, v, '\0');)
        if (!v.empty()) out.push_back(v);
    return out;
}

std::vector<std::string> lines_with(const std::string& log, const std::string& text) {
    std::vector<std::string> out;
    std::istringstream s(log);
    for (std::string l; std::getline(s, l);)
        if (l.find(text) != std::string::npos) out.push_back(l);
    return out;
}

std::string message_of(const std::string& line) {
    const size_t bracket = line.find("] ");
    if (bracket == std::string::npos) return line;
    const size_t colon = line.find(": ", bracket);
    return colon == std::string::npos ? line : line.substr(colon + 2);
}

}  // namespace pfp::test
