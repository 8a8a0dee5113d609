#include "harness.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pfp::test {

namespace fs = std::filesystem;

std::string bin_dir() {
    return PFPROXY_BIN_DIR;
}

uint16_t free_port() {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        throw std::runtime_error("free_port bind");
    socklen_t len = sizeof a;
    ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

TempDir::TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pfproxy-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = tmpl;
    // Workers and a dropped supervisor (nobody) must read the policy and write nothing here.
    ::chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << content;
    ::chmod(p.c_str(), 0644);
    return p;
}

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

bool wait_text(const std::string& path, const std::string& text, std::chrono::milliseconds timeout,
               int count) {
    auto end = std::chrono::steady_clock::now() + timeout;
    do {
        std::string l = read_file(path);
        int n = 0;
        for (size_t pos = l.find(text); pos != std::string::npos; pos = l.find(text, pos + 1)) ++n;
        if (n >= count) return true;
        std::this_thread::sleep_for(20ms);
    } while (std::chrono::steady_clock::now() < end);
    return false;
}

// execv's argument vector, pointing into `args` (which must outlive it).
std::vector<char*> exec_argv(const std::vector<std::string>& args) {
    std::vector<char*> out;
    for (const auto& a : args) out.push_back(const_cast<char*>(a.c_str()));
    out.push_back(nullptr);
    return out;
}

}  // namespace

Daemon::Daemon(const std::string& policy_json, std::vector<std::string> extra_args, rlim_t nofile,
               std::function<void()> before_exec) {
    policy_path_ = dir_.write("policy.json", policy_json);
    log_path_ = dir_.path() + "/pf-proxyd.log";
    control_path_ = dir_.path() + "/control.sock";
    std::vector<std::string> args = {bin_dir() + "/pf-proxyd", "--policy", policy_path_};
    // Each daemon its own control socket, never the system's /run/pf-proxy.
    if (std::find(extra_args.begin(), extra_args.end(), "--control") == extra_args.end()) {
        args.insert(args.end(), {"--control", control_path_});
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    // Everything the child needs is made here: a forked child of this threaded process may not
    // allocate (another thread may hold the allocator's lock at the fork, as under ASan).
    const std::vector<char*> argv = exec_argv(args);
    ::unsetenv("JOURNAL_STREAM");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
        int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(fd, 2);
        ::dup2(fd, 1);
        int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        if (nofile > 0) {
            rlimit r{nofile, nofile};
            ::setrlimit(RLIMIT_NOFILE, &r);
        }
        if (before_exec) before_exec();
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
}

Daemon::~Daemon() {
    if (!reaped_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    // Workers notice the lost supervisor (PDEATHSIG) and drain; make sure none outlive the test.
    for (int i = 0; i < 50; ++i) {
        bool any = false;
        for (pid_t w : workers()) {
            ::kill(w, SIGKILL);
            any = true;
        }
        if (!any) break;
        std::this_thread::sleep_for(20ms);
    }
}

std::string Daemon::log() const {
    return read_file(log_path_);
}

bool Daemon::wait_log(const std::string& text, std::chrono::milliseconds timeout, int count) const {
    return wait_text(log_path_, text, timeout, count);
}

bool Daemon::wait_ready(std::chrono::milliseconds timeout) const {
    // A daemon that exits (a refused start) is not waited for until the timeout. WNOWAIT: the
    // exit status stays for wait_exit().
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (log().find("proxies ready") != std::string::npos) return true;
        siginfo_t si{};
        const bool exited =
            pid_ > 0 && !reaped_ &&
            ::waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == pid_;
        if (exited) return log().find("proxies ready") != std::string::npos;
        if (std::chrono::steady_clock::now() >= end) return false;
        std::this_thread::sleep_for(20ms);
    }
}

std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    for (const auto& e : fs::directory_iterator("/proc")) {
        const std::string name = e.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
        std::ifstream f(e.path() / "stat");
        std::string stat;
        std::getline(f, stat);
        auto close = stat.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(stat.substr(close + 2));
        char state;
        pid_t ppid;
        rest >> state >> ppid;
        if (state != 'Z' && ppid == parent) out.push_back(static_cast<pid_t>(std::stoi(name)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<pid_t> Daemon::workers() const {
    return pid_ > 0 ? children_of(pid_) : std::vector<pid_t>{};
}

std::vector<pid_t> Daemon::wait_workers(size_t n, const std::vector<pid_t>& old,
                                        std::chrono::milliseconds timeout) const {
    auto end = std::chrono::steady_clock::now() + timeout;
    std::vector<pid_t> w;
    do {
        w = workers();
        bool fresh = std::none_of(w.begin(), w.end(), [&](pid_t p) {
            return std::find(old.begin(), old.end(), p) != old.end();
        });
        if (w.size() == n && fresh) return w;
        std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < end);
    return w;
}

void Daemon::signal(int sig) const {
    ::kill(pid_, sig);
}

int Daemon::wait_exit(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    do {
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            reaped_ = true;
            return status;
        }
        std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < end);
    return -1;
}

std::string cmdline_of(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    while (!s.empty() && s.back() == '\0') s.pop_back();
    std::replace(s.begin(), s.end(), '\0', ' ');
    return s;
}

RunningCommand::RunningCommand(const std::vector<std::string>& argv) {
    out_path_ = dir_.path() + "/stdout";
    err_path_ = dir_.path() + "/stderr";
    int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const std::vector<char*> args = exec_argv(argv);  // nothing is allocated after the fork
    ::unsetenv("JOURNAL_STREAM");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
        ::dup2(out, 1);
        ::dup2(err, 2);
        int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(out);
    ::close(err);
}

RunningCommand::~RunningCommand() {
    if (reaped_ || pid_ <= 0) return;
    for (pid_t c : children_of(pid_)) ::kill(c, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
}

std::string RunningCommand::out() const {
    return read_file(out_path_);
}

std::string RunningCommand::err() const {
    return read_file(err_path_);
}

bool RunningCommand::wait_out(const std::string& text, std::chrono::milliseconds timeout) const {
    return wait_text(out_path_, text, timeout, 1);
}

bool RunningCommand::wait_err(const std::string& text, std::chrono::milliseconds timeout,
                              int count) const {
    return wait_text(err_path_, text, timeout, count);
}

int RunningCommand::terminate(std::chrono::milliseconds timeout) {
    if (reaped_) return -1;
    ::kill(pid_, SIGTERM);
    auto end = std::chrono::steady_clock::now() + timeout;
    do {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            reaped_ = true;
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
        }
        std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < end);
    return -1;
}

CommandResult run_command(const std::vector<std::string>& argv) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) < 0) throw std::runtime_error("pipe");
    const std::vector<char*> args = exec_argv(argv);  // nothing is allocated after the fork
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(pipefd[1], 1);
        ::dup2(pipefd[1], 2);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(pipefd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {status, out};
}

std::string status_field(pid_t pid, const std::string& field) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            std::string v = line.substr(field.size() + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            return v;
        }
    }
    return "";
}

bool Daemon::rewrite_policy(const std::string& text) const {
    const std::string tmp = policy_path_ + ".new";
    {
        std::ofstream f(tmp, std::ios::trunc);
        f << text;
        if (!f.flush()) return false;
    }
    return std::rename(tmp.c_str(), policy_path_.c_str()) == 0;
}

std::string read_text(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::vector<std::string> fd_targets(pid_t pid) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
        std::error_code ec;
        out.push_back(e.path().filename().string() + " -> " +
                      fs::read_symlink(e.path(), ec).string());
    }
    return out;
}

pid_t worker_of(const Daemon& d, const std::string& name, int slot) {
    const std::string tag = "pf-proxy-worker: " + name + "/" + std::to_string(slot);
    for (pid_t w : d.workers()) {
        const std::string cmd = cmdline_of(w);
        const size_t at = cmd.find(tag);
        // "a/1" must not match "a/10"
        if (at != std::string::npos &&
            (at + tag.size() == cmd.size() || cmd[at + tag.size()] == ' '))
            return w;
    }
    return -1;
}

int int_option(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

std::vector<unique_fd> socket_copies(pid_t pid) {
    std::vector<unique_fd> out;
    unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
        const auto target = fs::read_symlink(e.path(), ec);
        if (ec || target.string().rfind("socket:", 0) != 0) continue;
        const int number = std::stoi(e.path().filename().string());
        unique_fd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), number, 0)));
        if (fd) out.push_back(std::move(fd));
    }
    return out;
}

unique_fd listen_tcp(uint16_t port, int backlog) {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(s.get(), backlog) < 0)
        throw std::runtime_error("listen_tcp " + std::to_string(port) + ": " + strerror(errno));
    return s;
}

int try_connect_tcp(uint16_t port, unique_fd& out) {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    set_timeouts(s.get(), 10s);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return errno;
    out = std::move(s);
    return 0;
}

unique_fd connect_tcp(uint16_t port, std::chrono::milliseconds timeout) {
    unique_fd s;
    if (try_connect_tcp(port, s) != 0) return unique_fd();
    set_timeouts(s.get(), timeout);
    return s;
}

bool wait_refused(uint16_t port, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    do {
        unique_fd c;
        if (try_connect_tcp(port, c) == ECONNREFUSED) return true;
        std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < end);
    return false;
}

void set_timeouts(int fd, std::chrono::milliseconds t) {
    timeval tv{static_cast<time_t>(t.count() / 1000),
               static_cast<suseconds_t>((t.count() % 1000) * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool write_all(int fd, const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

bool read_to_eof(int fd, std::string& out) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) return true;
        out.append(buf, static_cast<size_t>(n));
    }
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= end) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

std::string read_until_end(int fd, std::string& got) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return "eof";
        if (n < 0) {
            if (errno == ECONNRESET) return "reset";
            if (errno == EAGAIN) return "timeout";
            return std::string("error: ") + std::strerror(errno);
        }
        got.append(buf, static_cast<size_t>(n));
    }
}

bool read_exact(int fd, void* data, size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
        ssize_t r = ::recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

bool converse(int fd) {
    for (const char c : {'1', '2'}) {
        char back = 0;
        if (!write_all(fd, &c, 1) || !read_exact(fd, &back, 1) || back != c) return false;
    }
    return true;
}

bool answer_converse(int fd) {
    for (int i = 0; i < 2; ++i) {
        char c = 0;
        if (!read_exact(fd, &c, 1) || !write_all(fd, &c, 1)) return false;
    }
    return true;
}

size_t thread_count(pid_t pid) {
    std::error_code ec;
    size_t n = 0;
    for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/task", ec), end;
         !ec && it != end; it.increment(ec))
        ++n;
    return n;
}

bool wait_thread_count(pid_t pid, size_t n) {
    return wait_until([&] { return thread_count(pid) == n; });
}

void raise_nofile(rlim_t n) {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_max < n) r.rlim_max = n;  // root may raise the hard limit
    r.rlim_cur = n;
    ::setrlimit(RLIMIT_NOFILE, &r);
}

void Fnv::add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    size_t i = 0;
    while (i < n && npending != 0) {  // finish a word begun by the previous call
        pending |= static_cast<uint64_t>(b[i++]) << (8 * npending);
        if (++npending == 8) {
            h = (h ^ pending) * 1099511628211ULL;
            pending = 0;
            npending = 0;
        }
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, b + i, 8);
        h = (h ^ w) * 1099511628211ULL;
    }
    for (; i < n; ++i) pending |= static_cast<uint64_t>(b[i]) << (8 * npending++);
}

uint64_t Fnv::value() const {
    return npending ? ((h ^ pending ^ (static_cast<uint64_t>(npending) << 59)) * 1099511628211ULL)
                    : h;
}

void fill_pattern(std::vector<char>& buf, uint64_t seed) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (auto& c : buf) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c = static_cast<char>(x);
    }
}

Transfer send_and_receive(int fd, size_t total, uint64_t seed) {
    Transfer t;
    std::thread writer([&] {
        std::vector<char> buf(kTransferChunk);
        Fnv h;
        size_t left = total;
        uint64_t s = seed;
        while (left > 0) {
            fill_pattern(buf, s++);
            size_t n = std::min(left, buf.size());
            h.add(buf.data(), n);
            if (!write_all(fd, buf.data(), n)) {
                t.ok = false;
                break;
            }
            left -= n;
        }
        t.sent_hash = h.value();
        ::shutdown(fd, SHUT_WR);
    });
    Fnv h;
    std::vector<char> buf(kTransferChunk);
    for (;;) {
        ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            t.ok = false;
            break;
        }
        if (n == 0) break;
        h.add(buf.data(), static_cast<size_t>(n));
        t.received += static_cast<size_t>(n);
    }
    writer.join();
    t.received_hash = h.value();
    return t;
}

std::string tcp_proxy_json(const std::string& name, uint16_t listen, uint16_t upstream,
                           const std::string& extra) {
    return "{\"name\": \"" + name + "\", \"listen\": \"tcp:127.0.0.1:" + std::to_string(listen) +
           "\", \"upstream\": \"tcp:127.0.0.1:" + std::to_string(upstream) + "\"" + extra + "}";
}

EchoServer::EchoServer(uint16_t port) : EchoServer(listen_tcp(port)) {}

EchoServer::EchoServer(unique_fd listener) : listener_(std::move(listener)) {
    thread_ = std::thread([this] {
        while (!stop_) {
            pollfd p{listener_.get(), POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            conns_.emplace_back([fd] {
                unique_fd c(fd);
                set_timeouts(c.get(), 60s);
                char buf[65536];
                ssize_t n;
                while ((n = ::recv(c.get(), buf, sizeof buf, 0)) > 0)
                    if (!write_all(c.get(), buf, static_cast<size_t>(n))) return;
                ::shutdown(c.get(), SHUT_WR);
            });
        }
    });
}

EchoServer::~EchoServer() {
    stop_ = true;
    thread_.join();
    for (auto& t : conns_) t.join();
}

}  // namespace pfp::test
