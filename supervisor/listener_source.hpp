#pragma once
// Where each proxy's listener comes from: a socket systemd passed for "systemd:NAME", the FD
// store copy of one an earlier pf-proxyd opened, or a new one opened here. Lives as long as the
// supervisor, so reloads and `pf-proxyctl start` get listeners the same way as start-up.
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "policy/model.hpp"
#include "supervisor/activation.hpp"
#include "supervisor/privileges.hpp"

namespace pfp::supervisor {

struct Listener {
    unique_fd fd;
    Endpoint bound;  // what the worker listens on (a passed socket's real address)
    enum class Origin { opened, stored, activated } origin = Origin::opened;
    PassedSockets::Entry passed;  // activated: the entry, returned when the proxy lets go
    bool store_pending = false;   // the FD store does not have it yet: commit() sends it
    // The kind's other fds (raw injectors), in its row's order after the listener: opened with
    // the listener, while the supervisor still holds the capability they need.
    std::vector<unique_fd> others;
    // A datagram proxy with several workers: the SO_REUSEPORT sockets of workers 1..N-1 (worker 0
    // reads `fd`), bound to the same address, so the kernel's hash of a client's address keeps
    // it on one worker. Kept for the proxy's life: a restarted worker and the next generation's
    // worker of the same index read the same socket.
    std::vector<unique_fd> group;
    // The socket worker `index` reads.
    int worker_fd(size_t index) const {
        return index == 0 || group.empty() ? fd.get() : group.at(index - 1).get();
    }
    explicit operator bool() const { return static_cast<bool>(fd); }
};

class ListenerSource {
  public:
    ListenerSource(const Privileges& privs, std::optional<Identity> identity, PassedSockets passed);

    // The proxy's listener. Throws std::runtime_error naming the proxy and what was wrong.
    Listener obtain(const policy::Proxy& proxy);

    // The same socket as `donor` (another proxy's, or the proxy's own under an earlier
    // configuration) for `proxy`: a reload that renames a proxy keeps its listener. Throws.
    Listener share(const policy::Proxy& proxy, const Listener& donor);

    // The kind's other fds (raw injectors) opened anew for `proxy`: a reload that changes a
    // stream-to-raw proxy's upstream keeps its listener and swaps only these. Throws.
    std::vector<unique_fd> reopen_others(const policy::Proxy& proxy);

    // The FD store learns of a listener only once it is really in use (start-up done, reload
    // applied): a refused reload must leave the store as it was.
    void commit(const policy::Proxy& proxy, Listener& l);
    // A listener obtained for a reload that was refused: closed without touching the store.
    void discard(Listener& l);

    // The proxy no longer uses it: an activated socket goes back to the pool, a stored one
    // leaves the FD store (so it really closes), an opened one just closes.
    void release(const policy::Proxy& proxy, Listener& l);

    // At start-up, after every proxy took its sockets: warns about passed sockets no proxy
    // named, and drops stored listeners of proxies the policy no longer has.
    void report_unused();

  private:
    Listener obtain_listener(const policy::Proxy& proxy);
    const Privileges& privs_;
    std::optional<Identity> identity_;
    PassedSockets passed_;
};

}  // namespace pfp::supervisor
