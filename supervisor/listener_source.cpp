#include "supervisor/listener_source.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

#include "common/log.hpp"
#include "supervisor/listeners.hpp"

namespace pfp::supervisor {

ListenerSource::ListenerSource(const Privileges& privs, std::optional<Identity> identity,
                               PassedSockets passed)
    : privs_(privs), identity_(std::move(identity)), passed_(std::move(passed)) {}

namespace {

// A stored datagram socket heads the group of per-worker sockets: one stored by a pf-proxyd that
// ran the proxy with one worker has no SO_REUSEPORT yet, and gets it now (set after bind, it
// still lets the others join: the kernel makes the group when the second socket binds).
bool joins_group(int fd, const policy::Proxy& proxy) {
    if (!socket_per_worker(proxy)) return true;
    int on = 0;
    socklen_t len = sizeof on;
    if (::getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on != 0) return true;
    on = 1;
    return ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0;
}

}  // namespace

Listener ListenerSource::obtain(const policy::Proxy& proxy) {
    Listener l = obtain_listener(proxy);
    try {
        l.group = open_worker_sockets(proxy, privs_, identity_);
        l.others = open_other_fds(proxy, privs_);
    } catch (...) {
        discard(l);
        throw;
    }
    return l;
}

std::vector<unique_fd> ListenerSource::reopen_others(const policy::Proxy& proxy) {
    return open_other_fds(proxy, privs_);
}

Listener ListenerSource::obtain_listener(const policy::Proxy& proxy) {
    Listener l;
    if (const FdRole first = kind_row(proxy.kind).fds.front();
        first == FdRole::nfqueue || first == FdRole::nflog) {
        // Bound to its queue (or group) for the supervisor's whole life, so a restarted worker
        // reads the same one; never put in the FD store (a stored copy would keep it bound).
        SocketRequest req;
        req.role = first;
        req.endpoint = proxy.listen;
        req.queue_maxlen = proxy.queue_maxlen;
        req.fail_open = proxy.fail_open;
        req.gso = proxy.gso;
        req.nflog_threshold = proxy.nflog_threshold;
        req.nflog_timeout_cs = static_cast<uint32_t>(proxy.nflog_timeout.count() / 10);
        req.nflog_buffer = proxy.nflog_buffer;
        try {
            l.fd = open_socket(req, &privs_);
        } catch (const socket_error& e) {
            std::string msg = "proxy \"" + proxy.name + "\": cannot read " +
                              to_string(proxy.listen) + ": " + e.what();
            throw std::runtime_error(msg);
        }
        l.bound = proxy.listen;
        return l;
    }
    if (proxy.listen.scheme == Scheme::systemd) {
        auto found = passed_.take(proxy.listen.name);
        if (found.empty()) {
            throw std::runtime_error("proxy \"" + proxy.name +
                                     "\": systemd passed no socket named " + proxy.listen.name +
                                     " (set FileDescriptorName=" + proxy.listen.name +
                                     " in its .socket unit)");
        }
        if (found.size() > 1) {
            std::string fds;
            for (const auto& e : found) fds += " " + std::to_string(e.number);
            for (auto& e : found) passed_.give_back(std::move(e));
            throw std::runtime_error("proxy \"" + proxy.name + "\": systemd passed " +
                                     std::to_string(found.size()) + " sockets named " +
                                     proxy.listen.name + " (fds" + fds +
                                     "); a proxy takes one listener");
        }
        try {
            check_passed_socket(found.front(), proxy);
            l.bound = bound_endpoint(found.front().fd.get());
        } catch (...) {
            passed_.give_back(std::move(found.front()));
            throw;
        }
        // Our own dup: the entry keeps the original for a later reload or restart.
        l.fd.reset(::fcntl(found.front().fd.get(), F_DUPFD_CLOEXEC, 3));
        if (!l.fd) {
            passed_.give_back(std::move(found.front()));
            throw std::runtime_error("proxy \"" + proxy.name + "\": dup of fd " +
                                     std::to_string(found.front().number) + " failed");
        }
        set_nonblocking(l.fd.get());
        tune_listener(l.fd.get(), proxy);
        l.origin = Listener::Origin::activated;
        l.passed = std::move(found.front());
        return l;
    }
    // A listener an earlier pf-proxyd stored: still queued connections, no capability needed.
    for (auto& e : passed_.take(store_name(proxy.name))) {
        const bool same = !l.fd && listens_on(e.fd.get(), proxy.listen);
        if (same && joins_group(e.fd.get(), proxy)) {
            l.fd = std::move(e.fd);
            l.origin = Listener::Origin::stored;
        } else {
            log::info("dropping the stored listener ", e.name, " (fd ", e.number, "): ",
                      same
                          ? "SO_REUSEPORT cannot be set on it, and each of the " +
                                std::to_string(proxy.workers) + " workers needs a socket of its own"
                          : "it does not listen on " + to_string(proxy.listen) + " any more");
            l.store_pending = true;  // its entry is replaced by the new listener's
        }
    }
    if (l.fd) {
        set_nonblocking(l.fd.get());
        tune_listener(l.fd.get(), proxy);
        ::listen(l.fd.get(), proxy.backlog);                 // the policy's backlog, if it changed
        apply_socket_file_access(proxy, privs_, identity_);  // the policy's, if they changed
        log::info("proxy \"", proxy.name, "\": reusing the listener on ", to_string(proxy.listen),
                  " from systemd's FD store");
    } else {
        l.fd = open_listener(proxy, privs_, identity_);
        l.origin = Listener::Origin::opened;
        l.store_pending = true;
    }
    l.bound = proxy.listen;
    return l;
}

void ListenerSource::commit(const policy::Proxy& proxy, Listener& l) {
    if (!l.store_pending) return;
    l.store_pending = false;
    // The store keeps every fd sent under a name: drop the old entry first or both are kept.
    remove_stored_fd(store_name(proxy.name));
    if (l.origin != Listener::Origin::activated) store_fd(store_name(proxy.name), l.fd.get());
}

void ListenerSource::discard(Listener& l) {
    if (l.origin == Listener::Origin::activated && l.passed.fd) {
        passed_.give_back(std::move(l.passed));
    }
    l.fd.reset();
    l.group.clear();
    l.others.clear();
}

Listener ListenerSource::share(const policy::Proxy& proxy, const Listener& donor) {
    if (std::string why = worker_sockets_mismatch(proxy, donor.group.size()); !why.empty())
        throw std::runtime_error(why);
    Listener l;
    l.fd.reset(::fcntl(donor.fd.get(), F_DUPFD_CLOEXEC, 3));
    if (!l.fd) {
        throw std::runtime_error("proxy \"" + proxy.name + "\": cannot share the listener on " +
                                 to_string(proxy.listen) + ": " + std::strerror(errno));
    }
    l.bound = donor.bound;
    for (const auto& fd : donor.group) {
        l.group.emplace_back(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
        if (!l.group.back())
            throw std::runtime_error(
                "proxy \"" + proxy.name +
                "\": cannot share its workers' sockets: " + std::strerror(errno));
    }
    for (const auto& fd : donor.others) {
        l.others.emplace_back(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
        if (!l.others.back())
            throw std::runtime_error("proxy \"" + proxy.name +
                                     "\": cannot share its raw sockets: " + std::strerror(errno));
    }
    // An activated socket stays systemd's (the donor keeps the entry); any other is stored
    // under the new proxy's name once the reload commits.
    l.origin = donor.origin == Listener::Origin::activated ? Listener::Origin::activated
                                                           : Listener::Origin::opened;
    l.store_pending = l.origin != Listener::Origin::activated;
    tune_listener(l.fd.get(), proxy);
    return l;
}

void ListenerSource::release(const policy::Proxy& proxy, Listener& l) {
    if (l.origin == Listener::Origin::activated) {
        if (l.passed.fd) passed_.give_back(std::move(l.passed));
    } else if (l.fd) {
        remove_stored_fd(store_name(proxy.name));
    }
    l.fd.reset();
    l.group.clear();
    l.others.clear();
}

void ListenerSource::report_unused() {
    for (auto& e : passed_.take_all()) {
        if (e.name.starts_with("pfp-store.")) {
            log::info("dropping the stored listener ", e.name, " (fd ", e.number,
                      "): the policy has no such proxy");
            remove_stored_fd(e.name);
        } else {
            log::warning("fd ", e.number, " (FileDescriptorName=", e.name,
                         ") passed by systemd is not used by any proxy");
            passed_.give_back(std::move(e));  // a reload may add the proxy that uses it
        }
    }
}

}  // namespace pfp::supervisor
