#include "netns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>

namespace pfp::test {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPrefix = "pfpt-";

// "tid state wchan" of each thread of a live process, from /proc: tells a hung child (a futex
// wait everywhere, e.g. futex_do_wait) from one waiting on its sockets (e.g. wait_woken).
std::string thread_waits(pid_t pid) {
    std::string out;
    std::error_code ec;
    const fs::path tasks = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& t : fs::directory_iterator(tasks, ec)) {
        std::ifstream stat(t.path() / "stat");
        std::string line;
        std::getline(stat, line);
        const size_t paren = line.rfind(')');  // the name may hold spaces
        const char state = paren + 2 < line.size() ? line[paren + 2] : '?';
        std::ifstream wchan(t.path() / "wchan");
        std::string w;
        std::getline(wchan, w);
        if (!out.empty()) out += ", ";
        out += t.path().filename().string() + " " + state + " " + (w.empty() ? "-" : w);
    }
    return out.empty() ? "(none listed)" : out;
}

std::string joined(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
    return s;
}

std::string tool_or_throw(const std::string& name) {
    std::string t = find_tool(name);
    if (t.empty()) throw std::runtime_error(name + " is not installed");
    return t;
}

// Namespaces left behind by test processes that died before their destructors ran (SIGKILL,
// a crash): named pfpt-<pid>-..., and that pid no longer exists.
void remove_stale_namespaces() {
    std::error_code ec;
    if (!fs::is_directory("/run/netns", ec)) return;
    const std::string ip = find_tool("ip");
    if (ip.empty()) return;
    for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(kPrefix, 0) != 0) continue;
        const std::string rest = name.substr(std::strlen(kPrefix));
        const pid_t pid = static_cast<pid_t>(std::atol(rest.c_str()));
        if (pid <= 0 || pid == ::getpid()) continue;
        if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
        run_command({ip, "netns", "del", name});
    }
}

std::string next_name(const std::string& tag) {
    static std::atomic<int> counter{0};
    return kPrefix + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + tag;
}

}  // namespace

std::string find_tool(const std::string& name) {
    for (const char* dir :
         {"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"}) {
        std::string p = std::string(dir) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return "";
}

std::string must_run(const std::string& tool, const std::vector<std::string>& args) {
    std::vector<std::string> argv{tool_or_throw(tool)};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run_command(argv);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        throw std::runtime_error("`" + joined(argv) + "` failed (status " +
                                 std::to_string(r.status) + "): " + r.output);
    return r.output;
}

std::string netns_unavailable_reason() {
    static std::once_flag once;
    static std::string reason;
    std::call_once(once, [] {
        if (::geteuid() != 0) {
            reason = "network namespace tests need root (ip netns add, iptables)";
            return;
        }
        for (const char* t : {"ip", "iptables", "ip6tables"}) {
            if (find_tool(t).empty()) {
                reason = std::string(t) + " is not installed (scripts/install-deps.sh installs " +
                         "iproute2 and iptables)";
                return;
            }
        }
        remove_stale_namespaces();
        // One probe: namespaces and the nat table (REDIRECT) work here.
        try {
            NetNs probe("probe");
            probe.exec({"iptables", "-w", "-t", "nat", "-L", "OUTPUT", "-n"});
            probe.exec({"ip6tables", "-w", "-t", "nat", "-L", "OUTPUT", "-n"});
        } catch (const std::exception& e) {
            reason = std::string("network namespaces or iptables nat unusable here: ") + e.what();
        }
    });
    return reason;
}

// ---- NetNs --------------------------------------------------------------------------------------

NetNs::NetNs(const std::string& tag) : name_(next_name(tag)) {
    must_run("ip", {"netns", "add", name_});
    try {
        ip({"link", "set", "lo", "up"});
    } catch (...) {
        run_command({find_tool("ip"), "netns", "del", name_});
        throw;
    }
}

NetNs::~NetNs() {
    run_command({find_tool("ip"), "netns", "del", name_});
}

void NetNs::ip(const std::vector<std::string>& args) const {
    std::vector<std::string> a{"-n", name_};
    a.insert(a.end(), args.begin(), args.end());
    must_run("ip", a);
}

std::string NetNs::exec(const std::vector<std::string>& argv) const {
    std::vector<std::string> a{"netns", "exec", name_, tool_or_throw(argv.at(0))};
    a.insert(a.end(), argv.begin() + 1, argv.end());
    return must_run("ip", a);
}

void NetNs::enter() const {
    const std::string path = "/run/netns/" + name_;
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
    if (::setns(fd.get(), CLONE_NEWNET) < 0)
        throw std::runtime_error("setns " + path + ": " + std::strerror(errno));
}

ChildResult NetNs::run_in_child(const std::function<std::string()>& f,
                                std::chrono::milliseconds timeout) const {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) throw std::runtime_error("pipe2");
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(p[0]);
        ::close(p[1]);
        throw std::runtime_error("fork");
    }
    if (pid == 0) {
        ::close(p[0]);
        std::string out;
        int code = 0;
        try {
            enter();
            out = f();
        } catch (const std::exception& e) {
            out = std::string("exception in namespace child: ") + e.what();
            code = 1;
        } catch (...) {
            out = "unknown exception in namespace child";
            code = 1;
        }
        const char* d = out.data();
        size_t n = out.size();
        while (n > 0) {
            ssize_t w = ::write(p[1], d, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            d += w;
            n -= static_cast<size_t>(w);
        }
        ::_exit(code);
    }
    ::close(p[1]);
    unique_fd rd(p[0]);
    ChildResult r;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    bool timed_out = false;
    char buf[4096];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd pfd{rd.get(), POLLIN, 0};
        int pr = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) {
            timed_out = pr == 0;
            break;
        }
        ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        r.output.append(buf, static_cast<size_t>(n));
    }
    const std::string threads = timed_out ? thread_waits(pid) : std::string();
    if (timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (timed_out) {
        r.output = "namespace child timed out after " + std::to_string(timeout.count()) +
                   " ms; its threads were in: " + threads + "; partial output: " + r.output;
        return r;
    }
    r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!r.ok && WIFSIGNALED(status))
        r.output += " (namespace child killed by signal " + std::to_string(WTERMSIG(status)) + ")";
    return r;
}

// ---- Veth, IptablesRule -------------------------------------------------------------------------

Veth::Veth(const NetNs& a, std::string a_name, const NetNs& b, std::string b_name)
    : ns_(a.name()), name_(std::move(a_name)) {
    must_run("ip", {"link", "add", name_, "netns", a.name(), "type", "veth", "peer", "name", b_name,
                    "netns", b.name()});
    try {
        a.ip({"link", "set", name_, "up"});
        b.ip({"link", "set", b_name, "up"});
    } catch (...) {
        run_command({find_tool("ip"), "-n", ns_, "link", "del", name_});
        throw;
    }
}

Veth::~Veth() {
    run_command({find_tool("ip"), "-n", ns_, "link", "del", name_});
}

IptablesRule::IptablesRule(const NetNs& ns, Family family, std::string table, std::string chain,
                           std::vector<std::string> spec)
    : ns_(ns.name()),
      tool_(family == v4 ? "iptables" : "ip6tables"),
      table_(std::move(table)),
      chain_(std::move(chain)),
      spec_(std::move(spec)) {
    std::vector<std::string> a{"netns", "exec", ns_,   tool_or_throw(tool_), "-w", "-t",
                               table_,  "-A",   chain_};
    a.insert(a.end(), spec_.begin(), spec_.end());
    must_run("ip", a);
}

IptablesRule::~IptablesRule() {
    const std::string t = find_tool(tool_);
    if (t.empty()) return;
    std::vector<std::string> a{find_tool("ip"), "netns", "exec", ns_, t, "-w", "-t",
                               table_,          "-D",    chain_};
    a.insert(a.end(), spec_.begin(), spec_.end());
    run_command(a);  // fails harmlessly when the namespace is already gone
}

// ---- Daemons and sockets ------------------------------------------------------------------------

std::unique_ptr<Daemon> start_daemon(const NetNs& ns, const std::string& policy_json,
                                     std::vector<std::string> extra_args) {
    // The fork inside Daemon's constructor happens on a thread that is inside ns, so pf-proxyd
    // and every worker it spawns live there. pf-proxyd sets no parent-death signal for itself,
    // so the thread ending does not end it.
    return ns.run([&] { return std::make_unique<Daemon>(policy_json, extra_args); });
}

SockAddr make_addr(const std::string& ip, uint16_t port) {
    SockAddr a;
    auto* in4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    if (::inet_pton(AF_INET, ip.c_str(), &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        a.len = sizeof *in4;
    } else if (::inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        a.len = sizeof *in6;
    } else {
        throw std::runtime_error("not a numeric IP address: " + ip);
    }
    return a;
}

unique_fd listen_tcp_in(const NetNs& ns, const std::string& ip, uint16_t port, int backlog) {
    const SockAddr a = make_addr(ip, port);
    return ns.run([&] {
        unique_fd s(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!s) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        int one = 1;
        ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (a.family() == AF_INET6)
            ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (::bind(s.get(), a.get(), a.len) < 0 || ::listen(s.get(), backlog) < 0)
            throw std::runtime_error("listen on " + ip + ":" + std::to_string(port) + " in " +
                                     ns.name() + ": " + std::strerror(errno));
        return s;
    });
}

int connect_tcp_here(const std::string& ip, uint16_t port, unique_fd& out,
                     std::chrono::milliseconds timeout) {
    const SockAddr a = make_addr(ip, port);
    unique_fd s(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) return errno;
    set_timeouts(s.get(), timeout);  // SO_SNDTIMEO bounds connect() too
    if (::connect(s.get(), a.get(), a.len) < 0) return errno;
    out = std::move(s);
    return 0;
}

int connect_tcp_in(const NetNs& ns, const std::string& ip, uint16_t port, unique_fd& out,
                   std::chrono::milliseconds timeout) {
    const SockAddr a = make_addr(ip, port);
    unique_fd s =
        ns.run([&] { return unique_fd(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0)); });
    if (!s) return errno;
    set_timeouts(s.get(), timeout);
    if (::connect(s.get(), a.get(), a.len) < 0) return errno;
    out = std::move(s);
    return 0;
}

unique_fd listen_unix(const std::string& path, int backlog) {
    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path) throw std::runtime_error("unix path too long: " + path);
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    ::unlink(path.c_str());
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(s.get(), backlog) < 0)
        throw std::runtime_error("listen on unix:" + path + ": " + std::strerror(errno));
    ::chmod(path.c_str(), 0666);
    return s;
}

UdpQueuedPair::UdpQueuedPair(int queue) {
    a.ip({"addr", "add", "10.66.0.1/24", "dev", "va"});
    b.ip({"addr", "add", "10.66.0.2/24", "dev", "vb"});
    rule = std::make_unique<IptablesRule>(
        a, IptablesRule::v4, "filter", "OUTPUT",
        std::vector<std::string>{"-d", "10.66.0.2", "-p", "udp", "-j", "NFQUEUE", "--queue-num",
                                 std::to_string(queue)});
}

void UdpQueuedPair::send_to_b(const std::string& payload) const {
    a.run([&payload] {
        const SockAddr to = make_addr("10.66.0.2", 9);
        unique_fd u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        return ::sendto(u.get(), payload.data(), payload.size(), 0, to.get(), to.len);
    });
}

}  // namespace pfp::test
