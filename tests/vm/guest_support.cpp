#include "guest_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>

namespace pfp::test::vm {

namespace {
constexpr const char* kIptables = "/usr/sbin/iptables";  // iptables-legacy, put there by init

bool wait_writable(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLOUT, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

// A non-blocking connect with a deadline, then blocking again with send/receive timeouts.
bool connect_within(int fd, const sockaddr* a, socklen_t len, std::chrono::milliseconds timeout) {
    const int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int r = ::connect(fd, a, len);
    if (r < 0 && errno != EINPROGRESS) return false;
    if (r < 0) {
        if (!wait_writable(fd, timeout)) {
            errno = ETIMEDOUT;
            return false;
        }
        int err = 0;
        socklen_t el = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            errno = err;
            return false;
        }
    }
    ::fcntl(fd, F_SETFL, flags);
    set_timeouts(fd, timeout);
    return true;
}

// A TCP server on 127.0.0.1:port that hands its first connection to `serve`, in a thread.
class OneShotServer {
  public:
    OneShotServer(uint16_t port, std::function<void(int)> serve)
        : listener_(listen_tcp(port)), thread_([this, serve] {
              unique_fd c = accept_within(listener_.get(), 30s);
              if (c) serve(c.get());
          }) {}
    ~OneShotServer() { join(); }
    void join() {  // after this, what `serve` wrote is safe to read
        if (thread_.joinable()) thread_.join();
    }

  private:
    unique_fd listener_;
    std::thread thread_;
};
}  // namespace

bool vsock_loopback_available() {
    return std::filesystem::exists("/sys/module/vsock_loopback");
}

bool iptables_available() {
    return ::access(kIptables, X_OK) == 0;
}

unique_fd listen_vsock(uint32_t port, int backlog) {
    unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = VMADDR_CID_ANY;
    a.svm_port = port;
    if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(s.get(), backlog) < 0)
        throw std::runtime_error("listen_vsock " + std::to_string(port) + ": " +
                                 std::strerror(errno));
    return s;
}

unique_fd connect_vsock(uint32_t port, std::chrono::milliseconds timeout) {
    if (!vsock_loopback_available()) {  // never connect a vsock socket outside the guest
        errno = EHOSTUNREACH;
        return unique_fd();
    }
    unique_fd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = kLocalCid;
    a.svm_port = port;
    if (!s || !connect_within(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a, timeout))
        return unique_fd();
    return s;
}

unique_fd accept_within(int listener, std::chrono::milliseconds timeout) {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return unique_fd();
    unique_fd c(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (c) set_timeouts(c.get(), timeout);
    return c;
}

uint32_t peer_cid(int vsock_fd) {
    sockaddr_vm a{};
    socklen_t len = sizeof a;
    if (::getpeername(vsock_fd, reinterpret_cast<sockaddr*>(&a), &len) < 0) return 0;
    return a.svm_cid;
}

unique_fd connect_tcp_from(const std::string& source, uint16_t port,
                           std::chrono::milliseconds timeout) {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &src.sin_addr);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) < 0 ||
        !connect_within(s.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst, timeout))
        return unique_fd();
    return s;
}

IptablesRule::IptablesRule(std::string table, std::vector<std::string> rule)
    : table_(std::move(table)), rule_(std::move(rule)) {
    std::vector<std::string> argv = {kIptables, "-w", "-t", table_, "-A"};
    argv.insert(argv.end(), rule_.begin(), rule_.end());
    CommandResult r = run_command(argv);
    ok_ = r.status == 0;
    output_ = r.output;
}

IptablesRule::~IptablesRule() {
    if (!ok_) return;
    std::vector<std::string> argv = {kIptables, "-w", "-t", table_, "-D"};
    argv.insert(argv.end(), rule_.begin(), rule_.end());
    run_command(argv);
}

Redirect::Redirect(const std::string& source, uint16_t dport, uint16_t to_port)
    : IptablesRule("nat", {"OUTPUT", "-p", "tcp", "-s", source + "/32", "-d", "127.0.0.1/32",
                           "--dport", std::to_string(dport), "-j", "REDIRECT", "--to-ports",
                           std::to_string(to_port)}) {}

OutputRule::OutputRule(std::vector<std::string> rule)
    : IptablesRule("filter", [&rule] {
          rule.insert(rule.begin(), "OUTPUT");
          return std::move(rule);
      }()) {}

std::string proxy(const std::string& name, const std::string& listen, const std::string& upstream,
                  const std::string& extra) {
    return "{\"name\": \"" + name + "\", \"listen\": \"" + listen + "\", \"upstream\": \"" +
           upstream + "\"" + (extra.empty() ? "" : ", " + extra) + "}";
}

std::string policy(const std::vector<std::string>& proxies, const std::string& top_extra) {
    std::string s = "{" + (top_extra.empty() ? "" : top_extra + ", ") + "\"proxies\": [";
    for (size_t i = 0; i < proxies.size(); ++i) s += (i ? ", " : "") + proxies[i];
    return s + "]}";
}

std::string tcp(uint16_t port) {
    return "tcp:127.0.0.1:" + std::to_string(port);
}

std::string hex(const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        if (!out.empty()) out += ' ';
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

void expect_client_half_close_then_reply(const Daemon& d, uint16_t in, uint16_t server,
                                         bool conversation) {
    std::string server_got;
    OneShotServer srv(server, [&](int fd) {
        if (conversation && !answer_converse(fd)) return;
        if (!read_to_eof(fd, server_got)) return;
        const std::string reply = "after your eof: " + server_got;
        write_all(fd, reply.data(), reply.size());
    });
    unique_fd c = connect_tcp(in, 20s);
    ASSERT_TRUE(c) << d.log();
    set_timeouts(c.get(), 20s);
    if (conversation) {
        ASSERT_TRUE(converse(c.get())) << d.log();
        expect_thread_pairs(d, 1);
    }
    ASSERT_TRUE(write_all(c.get(), "request", 7));
    ::shutdown(c.get(), SHUT_WR);
    std::string reply;
    EXPECT_TRUE(read_to_eof(c.get(), reply)) << d.log();
    EXPECT_EQ(reply, "after your eof: request");
    srv.join();
    EXPECT_EQ(server_got, "request");
}

void expect_server_half_close_then_client_sends(const Daemon& d, uint16_t in, uint16_t server,
                                                bool conversation) {
    std::string server_got;
    OneShotServer srv(server, [&](int fd) {
        if (conversation && !answer_converse(fd)) return;
        write_all(fd, "bye", 3);
        ::shutdown(fd, SHUT_WR);
        read_to_eof(fd, server_got);
    });
    unique_fd c = connect_tcp(in, 20s);
    ASSERT_TRUE(c) << d.log();
    set_timeouts(c.get(), 20s);
    if (conversation) {
        ASSERT_TRUE(converse(c.get())) << d.log();
        expect_thread_pairs(d, 1);
    }
    std::string first;
    EXPECT_TRUE(read_to_eof(c.get(), first)) << d.log();  // "bye" and the server's FIN
    EXPECT_EQ(first, "bye");
    ASSERT_TRUE(write_all(c.get(), "late words", 10));
    ::shutdown(c.get(), SHUT_WR);
    char b;
    EXPECT_EQ(::recv(c.get(), &b, 1, 0), 0) << d.log();  // closed once both FINs have passed
    srv.join();
    EXPECT_EQ(server_got, "late words");
}

void expect_thread_pairs(const Daemon& d, size_t pairs) {
    for (pid_t w : d.workers())
        EXPECT_TRUE(wait_thread_count(w, 1 + 2 * pairs))
            << "worker " << w << ": " << thread_count(w) << " threads, not " << 1 + 2 * pairs;
}

bool write_text(int fd, const std::string& text) {
    return write_all(fd, text.data(), text.size());
}

bool echoes(int fd, const std::string& text) {
    if (!write_all(fd, text.data(), text.size())) return false;
    std::string back(text.size(), '\0');
    return read_exact(fd, back.data(), back.size()) && back == text;
}

}  // namespace pfp::test::vm
