#pragma once
// Network namespaces, veth pairs and iptables rules for integration tests, all RAII: the real
// `ip` and `iptables`/`ip6tables` commands, run as root (docs/testing.md). Every object undoes
// what it did in its destructor, also when a test fails.
//
// Code runs inside a namespace in one of two ways:
//   NetNs::run(f)           f on a fresh thread that has entered the namespace (setns affects only
//                           the calling thread). Sockets keep the namespace they were created in,
//                           and a process forked from that thread starts in it: so this is how a
//                           test makes listeners, client sockets and pf-proxyd (start_daemon) in N.
//   NetNs::run_in_child(f)  f in a forked child that has entered the namespace; the string f
//                           returns comes back through a pipe. Bounded by a timeout (SIGKILL).
//                           The child allocates and starts threads, so no other thread of the
//                           test may be starting or busy at the fork: GCC 12's ASan takes no
//                           allocator lock around fork, and a lock another thread held then stays
//                           taken in the child, which hangs until the timeout. Start helper
//                           threads once the child has shown up (e.g. from a server's handler).
#include <sys/types.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "harness.hpp"
#include "tests/support/require.hpp"

namespace pfp::test {

// Why namespace tests cannot run on this machine ("" when they can): not root, or `ip`,
// `iptables` or `ip6tables` missing, or `ip netns add` failing.
std::string netns_unavailable_reason();

// Skips the test when run by hand, fails it under PFPROXY_REQUIRE_ALL (tests/support/require.hpp).
#define PFP_REQUIRE_NETNS() PFP_REQUIRE(::pfp::test::netns_unavailable_reason())

// Absolute path of a system tool ("ip", "iptables"...), or "" when not installed.
std::string find_tool(const std::string& name);

// Runs a tool found by find_tool; throws std::runtime_error with the command and its output
// when it fails.
std::string must_run(const std::string& tool, const std::vector<std::string>& args);

// Outcome of NetNs::run_in_child.
struct ChildResult {
    bool ok = false;     // the child ran f to completion and exited 0
    std::string output;  // what f returned, or why it failed
};

// `ip netns add pfpt-<pid>-<n>-<tag>`, lo up; `ip netns del` on destruction (which also removes
// its interfaces and its iptables rules).
class NetNs {
  public:
    explicit NetNs(const std::string& tag);
    ~NetNs();
    NetNs(const NetNs&) = delete;
    NetNs& operator=(const NetNs&) = delete;

    const std::string& name() const { return name_; }

    // `ip -n NAME args...`.
    void ip(const std::vector<std::string>& args) const;
    // `ip netns exec NAME argv...` (argv[0] a tool name, found by find_tool).
    std::string exec(const std::vector<std::string>& argv) const;

    // Runs f on a thread inside the namespace and returns its result (exceptions propagate).
    template <class F>
    auto run(F f) const -> std::invoke_result_t<F> {
        using R = std::invoke_result_t<F>;
        std::exception_ptr error;
        if constexpr (std::is_void_v<R>) {
            std::thread t([&] {
                try {
                    enter();
                    f();
                } catch (...) {
                    error = std::current_exception();
                }
            });
            t.join();
            if (error) std::rethrow_exception(error);
        } else {
            std::unique_ptr<R> out;
            std::thread t([&] {
                try {
                    enter();
                    out = std::make_unique<R>(f());
                } catch (...) {
                    error = std::current_exception();
                }
            });
            t.join();
            if (error) std::rethrow_exception(error);
            return std::move(*out);
        }
    }

    // Forks; the child enters the namespace, runs f and sends back its result. The child is
    // killed after `timeout`; the output then names what each of its threads was waiting in (a
    // futex wait in every thread is a deadlock, not a slow peer).
    ChildResult run_in_child(const std::function<std::string()>& f,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

    // Enters the namespace on the calling thread (only for threads the caller owns).
    void enter() const;

  private:
    std::string name_;
};

// A veth pair: `a_name` in namespace a, `b_name` in namespace b, both up. Deleted on destruction
// (one end suffices; if a namespace is already gone the pair went with it).
class Veth {
  public:
    Veth(const NetNs& a, std::string a_name, const NetNs& b, std::string b_name);
    ~Veth();
    Veth(const Veth&) = delete;
    Veth& operator=(const Veth&) = delete;

  private:
    std::string ns_, name_;
};

// One iptables or ip6tables rule in a namespace: `-t TABLE -A CHAIN spec...` on construction,
// `-D` with the same spec on destruction.
class IptablesRule {
  public:
    enum Family { v4, v6 };
    IptablesRule(const NetNs& ns, Family family, std::string table, std::string chain,
                 std::vector<std::string> spec);
    ~IptablesRule();
    IptablesRule(const IptablesRule&) = delete;
    IptablesRule& operator=(const IptablesRule&) = delete;

  private:
    std::string ns_, tool_, table_, chain_;
    std::vector<std::string> spec_;
};

// The nfqueue tests' setting: namespaces a (10.66.0.1) and b (10.66.0.2) joined by a veth, and in
// a an NFQUEUE rule on OUTPUT that queues a's UDP bound for b to `queue`.
struct UdpQueuedPair {
    explicit UdpQueuedPair(int queue);
    // One datagram from a to 10.66.0.2:9, through the queue.
    void send_to_b(const std::string& payload) const;

    NetNs a{"a"}, b{"b"};
    Veth veth{a, "va", b, "vb"};
    std::unique_ptr<IptablesRule> rule;
};

// pf-proxyd started from a thread inside `ns`, so it and its workers live in that namespace.
std::unique_ptr<Daemon> start_daemon(const NetNs& ns, const std::string& policy_json,
                                     std::vector<std::string> extra_args = {});

// Numeric socket addresses: "10.200.1.1" or "fd00::1" with a port.
SockAddr make_addr(const std::string& ip, uint16_t port);

// A TCP listener bound to ip:port inside ns (IPv6: V6ONLY, so v4 and v6 tests do not collide).
unique_fd listen_tcp_in(const NetNs& ns, const std::string& ip, uint16_t port, int backlog = 128);
// A TCP socket created inside ns and connected to ip:port from the calling thread (the socket's
// namespace decides routing and iptables). Returns the errno of a failed connect, 0 on success.
int connect_tcp_in(const NetNs& ns, const std::string& ip, uint16_t port, unique_fd& out,
                   std::chrono::milliseconds timeout = std::chrono::seconds(5));
// Same, in the calling thread's own namespace (for use inside run_in_child).
int connect_tcp_here(const std::string& ip, uint16_t port, unique_fd& out,
                     std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A Unix stream listener at `path` that any user may connect to (mode 0666); the directory must
// be traversable by the workers' user.
unique_fd listen_unix(const std::string& path, int backlog = 64);

}  // namespace pfp::test
