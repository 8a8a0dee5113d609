#include "supervisor/daemon.hpp"

#include <unistd.h>

#include <filesystem>

#include "common/log.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/privileges.hpp"
#include "supervisor/supervisor.hpp"

namespace pfp::supervisor {

namespace {

std::string default_worker_path() {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto beside = self.parent_path() / "pf-proxy-worker";
        if (std::filesystem::exists(beside, ec)) return beside.string();
    }
    return std::string(PFPROXY_LIBEXECDIR) + "/pf-proxy-worker";
}

}  // namespace

int run_daemon(policy::Policy pol, const DaemonOptions& options) {
    try {
        std::optional<Identity> identity;
        if (pol.user)
            identity = resolve_identity(*pol.user, pol.group);
        else if (::geteuid() == 0)
            log::warning("running as root: set \"user\" in ", options.source,
                         " to drop to a system user");
        const std::string worker = options.worker_path.value_or(default_worker_path());
        if (::access(worker.c_str(), X_OK) != 0)
            throw std::runtime_error("worker binary " + worker + " is not executable");

        Privileges privs(caps_to_open(pol), identity);
        std::vector<unique_fd> listeners;
        for (const auto& p : pol.proxies) {
            listeners.push_back(open_listener(p, privs, identity));
            log::info("proxy \"", p.name, "\": ", kind_name(p.kind), " ", to_string(p.listen),
                      " -> ", describe_upstream(p), ", ", p.workers, " worker(s)");
        }
        privs.settle(caps_to_keep(pol));
        log::notice("pf-proxyd " PFPROXY_VERSION " running ", pol.proxies.size(), " proxies from ",
                    options.source, " as uid ", ::getuid());
        Supervisor sup(std::move(pol), std::move(listeners), worker);
        return sup.run();
    } catch (const std::exception& e) {
        log::error(e.what());
        return 1;
    }
}

}  // namespace pfp::supervisor
