#pragma once
// Sockets from the service manager: those passed by socket activation (LISTEN_FDS, matched to
// proxies by FileDescriptorName) and those pf-proxyd itself left in systemd's FD store
// (FDSTORE=1) so that a restart of pf-proxyd loses no queued connection.
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "policy/model.hpp"

namespace pfp::supervisor {

// The FDNAME under which a proxy's self-opened listener is stored: "pfp-store.NAME". Proxy
// names never contain ':' (which systemd forbids in names), so every proxy name maps.
std::string store_name(const std::string& proxy);

class PassedSockets {
  public:
    struct Entry {
        int number = -1;   // the fd number it arrived as, for messages
        std::string name;  // FileDescriptorName= or the FDNAME it was stored under
        unique_fd fd;
    };

    PassedSockets() = default;
    explicit PassedSockets(std::vector<Entry> entries) : entries_(std::move(entries)) {}

    // Reads LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES (sd_listen_fds_with_names) and unsets them, so
    // no worker inherits them. Throws on a malformed environment.
    static PassedSockets from_environment();

    // Removes and returns every socket with this name (systemd may pass several under one).
    std::vector<Entry> take(const std::string& name);
    void give_back(Entry e);  // a proxy stopped using it; a later reload may take it again
    const std::vector<Entry>& remaining() const { return entries_; }
    std::vector<Entry> take_all();

  private:
    std::vector<Entry> entries_;
};

// Checks that a passed socket is what the proxy needs: the family of its listen_family, the
// socket type, and listening. Throws a one-line error naming the fd, its name and the proxy.
void check_passed_socket(const PassedSockets::Entry& e, const policy::Proxy& proxy);

// The endpoint a passed socket is bound to ("tcp:127.0.0.1:8080", "vsock:any:5000", ...), which
// is what its worker is told to listen on.
Endpoint bound_endpoint(int fd);

// True if `fd` is a listening socket bound where `e` says (a stored listener still fits).
bool listens_on(int fd, const Endpoint& e);

// sd_notify to the FD store; both are no-ops without NOTIFY_SOCKET. Failures are logged, not
// thrown: losing the store costs queued connections on a restart, not correctness.
void store_fd(const std::string& name, int fd);
void remove_stored_fd(const std::string& name);

}  // namespace pfp::supervisor
