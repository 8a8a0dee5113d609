#include "supervisor/activation.hpp"

#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "common/log.hpp"
#include "common/socket_util.hpp"
#include "common/worker_kind.hpp"

namespace pfp::supervisor {

namespace {

constexpr std::string_view kStorePrefix = "pfp-store.";

int int_option(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    if (::getsockopt(fd, level, name, &v, &len) < 0) return -1;
    return v;
}

std::string type_text(int type) {
    if (type == SOCK_STREAM) return "SOCK_STREAM";
    if (type == SOCK_DGRAM) return "SOCK_DGRAM";
    if (type == SOCK_SEQPACKET) return "SOCK_SEQPACKET";
    return "type " + std::to_string(type);
}

struct Need {
    std::vector<int> families;
    int type;
    bool listening;
    std::string text;
};

Need need_of(Scheme family) {
    switch (family) {
        case Scheme::tcp:
            return {
                {AF_INET, AF_INET6}, SOCK_STREAM, true, "a listening TCP socket (ListenStream=)"};
        case Scheme::udp:
            return {{AF_INET, AF_INET6}, SOCK_DGRAM, false, "a UDP socket (ListenDatagram=)"};
        case Scheme::unix_stream:
            return {{AF_UNIX}, SOCK_STREAM, true, "a listening Unix stream socket (ListenStream=)"};
        case Scheme::vsock:
            return {{AF_VSOCK},
                    SOCK_STREAM,
                    true,
                    "a listening vsock stream socket (ListenStream=vsock::PORT)"};
        default:
            return {{}, 0, false, "a socket of a family no proxy takes"};
    }
}

}  // namespace

std::string store_name(const std::string& proxy) {
    return std::string(kStorePrefix) + proxy;
}

PassedSockets PassedSockets::from_environment() {
    char** raw = nullptr;
    const int n = ::sd_listen_fds_with_names(1, &raw);
    if (n < 0) {
        throw std::runtime_error(std::string("socket activation: cannot read LISTEN_FDS: ") +
                                 std::strerror(-n));
    }
    struct Free {
        void operator()(char** v) const {
            for (char** p = v; p && *p; ++p) std::free(*p);
            std::free(v);
        }
    };
    std::unique_ptr<char*, Free> names(raw);
    std::vector<Entry> entries;
    for (int i = 0; i < n; ++i) {
        Entry e;
        e.number = SD_LISTEN_FDS_START + i;
        e.fd.reset(e.number);
        e.name = raw && raw[i] ? raw[i] : "unknown";
        entries.push_back(std::move(e));
    }
    return PassedSockets(std::move(entries));
}

std::vector<PassedSockets::Entry> PassedSockets::take(const std::string& name) {
    std::vector<Entry> out;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->name == name) {
            out.push_back(std::move(*it));
            it = entries_.erase(it);
        } else {
            ++it;
        }
    }
    return out;
}

void PassedSockets::give_back(Entry e) {
    entries_.push_back(std::move(e));
}

std::vector<PassedSockets::Entry> PassedSockets::take_all() {
    return std::exchange(entries_, {});
}

void check_passed_socket(const PassedSockets::Entry& e, const policy::Proxy& proxy) {
    const Scheme family = proxy.listen_family.value_or(proxy.listen.scheme);
    const Need need = need_of(family);
    const int fd = e.fd.get();
    const int domain = int_option(fd, SOL_SOCKET, SO_DOMAIN);
    const int type = int_option(fd, SOL_SOCKET, SO_TYPE);
    const std::string what =
        "fd " + std::to_string(e.number) + " (FileDescriptorName=" + e.name + ") passed by systemd";
    const std::string needs = "proxy \"" + proxy.name + "\" (" +
                              std::string(kind_name(proxy.kind)) + ") needs " + need.text;
    if (domain < 0 || type < 0) {
        throw std::runtime_error(what + " is not a socket; " + needs);
    }
    bool family_ok = false;
    for (int f : need.families) family_ok |= f == domain;
    if (!family_ok || type != need.type) {
        throw std::runtime_error(what + " is " + family_name(domain) + " " + type_text(type) +
                                 "; " + needs);
    }
    if (need.listening && int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) != 1) {
        throw std::runtime_error(what +
                                 " is not listening (Accept=yes passes connections, not "
                                 "listeners); " +
                                 needs);
    }
}

Endpoint bound_endpoint(int fd) {
    SockAddr a;
    a.len = sizeof a.storage;
    if (::getsockname(fd, a.get(), &a.len) < 0) {
        throw std::runtime_error(std::string("getsockname: ") + std::strerror(errno));
    }
    const int type = int_option(fd, SOL_SOCKET, SO_TYPE);
    switch (a.family()) {
        case AF_INET:
        case AF_INET6:
            return parse_endpoint((type == SOCK_DGRAM ? "udp:" : "tcp:") + format_sockaddr(a));
        case AF_VSOCK: {
            const auto* vm = reinterpret_cast<const sockaddr_vm*>(a.get());
            const std::string cid =
                vm->svm_cid == VMADDR_CID_ANY ? "any" : std::to_string(vm->svm_cid);
            return parse_endpoint("vsock:" + cid + ":" + std::to_string(vm->svm_port));
        }
        case AF_UNIX: {
            const auto* un = reinterpret_cast<const sockaddr_un*>(a.get());
            const size_t off = offsetof(sockaddr_un, sun_path);
            if (a.len <= off) throw std::runtime_error("an unnamed Unix socket cannot listen");
            std::string path(un->sun_path, a.len - off);
            if (path.front() == '\0') {
                path.front() = '@';
            } else if (auto nul = path.find('\0'); nul != std::string::npos) {
                path.resize(nul);
            }
            return parse_endpoint("unix:" + path);
        }
        default:
            throw std::runtime_error("a socket of " + family_name(a.family()));
    }
}

bool listens_on(int fd, const Endpoint& e) {
    // A bound UDP socket serves as it is; every other kind must still listen.
    if (e.scheme != Scheme::udp && int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) != 1) return false;
    if (e.scheme == Scheme::fc_vsock) {
        // Bound to PATH_PORT (supervisor/listeners.cpp).
        Endpoint as_unix;
        try {
            as_unix = bound_endpoint(fd);
        } catch (const std::exception&) {
            return false;
        }
        return as_unix.scheme == Scheme::unix_stream &&
               as_unix.path == e.path + "_" + std::to_string(e.port);
    }
    Endpoint bound;
    try {
        bound = bound_endpoint(fd);
    } catch (const std::exception&) {
        return false;
    }
    if (bound.scheme != e.scheme) return false;
    if (e.scheme == Scheme::unix_stream) {
        if (bound.path != e.path) return false;
        // The file may have been removed or replaced while the socket sat in the store.
        struct stat st {};
        return e.path.front() == '@' || (::stat(e.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode));
    }
    return to_string(bound) == to_string(e);
}

void store_fd(const std::string& name, int fd) {
    const std::string msg = "FDSTORE=1\nFDNAME=" + name;
    int r = ::sd_pid_notify_with_fds(0, 0, msg.c_str(), &fd, 1);
    if (r < 0)
        log::warning("cannot store listener ", name, " in systemd's FD store: ", std::strerror(-r));
}

void remove_stored_fd(const std::string& name) {
    const std::string msg = "FDSTOREREMOVE=1\nFDNAME=" + name;
    int r = ::sd_notify(0, msg.c_str());
    if (r < 0)
        log::warning("cannot remove ", name, " from systemd's FD store: ", std::strerror(-r));
}

}  // namespace pfp::supervisor
