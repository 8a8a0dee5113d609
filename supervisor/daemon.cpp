#include "supervisor/daemon.hpp"

#include <linux/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/log.hpp"
#include "supervisor/activation.hpp"
#include "supervisor/control_server.hpp"
#include "supervisor/listener_source.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/metrics_server.hpp"
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

// Root, the daemon's own user and the policy's control_users and control_groups.
AccessRule access_rule(const policy::Policy& pol) {
    AccessRule rule;
    for (const auto& u : pol.control_users) rule.uids.push_back(resolve_identity(u, {}).uid);
    for (const auto& g : pol.control_groups) rule.gids.push_back(resolve_group(g));
    return rule;
}

// Files pf-proxyd makes for itself belong to the user it runs as; with control_groups, to the
// first of them, so that its members can connect (mode 0660).
SocketFileAccess socket_access(const std::optional<Identity>& identity, const policy::Policy& pol) {
    SocketFileAccess a;
    if (identity) {
        a.owner = identity->uid;
        a.group = identity->gid;
    }
    if (!pol.control_groups.empty()) a.group = resolve_group(pol.control_groups.front());
    return a;
}

unique_fd open_control(const DaemonOptions& options, const std::optional<Identity>& identity,
                       const policy::Policy& pol, const Privileges& privs) {
    if (options.control_path.empty()) return {};
    try {
        unique_fd fd =
            open_control_socket(options.control_path, socket_access(identity, pol), &privs);
        log::info("control socket ", options.control_path, " (pf-proxyctl --control ",
                  options.control_path, ")");
        return fd;
    } catch (const std::exception& e) {
        if (options.control_required) throw;
        log::warning(e.what(), "; running without a control socket (pass --control PATH)");
        return {};
    }
}

}  // namespace

int run_daemon(policy::Policy pol, const DaemonOptions& options) {
    try {
        std::optional<Identity> identity;
        if (pol.user)
            identity = resolve_identity(*pol.user, pol.group);
        else if (::geteuid() == 0)
            log::warning("running as root: ",
                         options.root_hint.empty()
                             ? "set \"user\" in " + options.source + " to drop to a system user"
                             : options.root_hint);
        const std::string worker = options.worker_path.value_or(default_worker_path());
        if (::access(worker.c_str(), X_OK) != 0)
            throw std::runtime_error("worker binary " + worker + " is not executable");

        std::set<int> caps = caps_to_open(pol);
        if (pol.metrics) caps.merge(metrics_caps(*pol.metrics));
        // The control socket (and a unix: metrics socket) go to the user we switch to.
        if (identity && (identity->uid != ::geteuid() || identity->gid != ::getegid() ||
                         !pol.control_groups.empty())) {
            caps.insert(CAP_CHOWN);
        }
        Privileges privs(caps, identity);
        ListenerSource source(privs, identity, PassedSockets::from_environment());
        std::vector<Listener> listeners;
        for (const auto& p : pol.proxies) {
            listeners.push_back(source.obtain(p));
            source.commit(p, listeners.back());
            log::info("proxy \"", p.name, "\": ", kind_name(p.kind), " ", to_string(p.listen),
                      p.listen.scheme == Scheme::systemd
                          ? " (" + to_string(listeners.back().bound) + ")"
                          : std::string(),
                      " -> ", describe_upstream(p), ", ", p.workers, " worker(s)");
        }
        source.report_unused();
        const AccessRule rule = access_rule(pol);
        unique_fd control = open_control(options, identity, pol, privs);
        struct stat control_file {};
        if (control && ::stat(options.control_path.c_str(), &control_file) != 0) control_file = {};
        unique_fd metrics;
        if (pol.metrics) {
            metrics = open_metrics_listener(*pol.metrics, &privs, socket_access(identity, pol));
            log::info("metrics: Prometheus text format on ", to_string(*pol.metrics),
                      " (GET /metrics)");
        }
        privs.settle(caps_to_keep(pol));
        log::notice("pf-proxyd " PFPROXY_VERSION " running ", pol.proxies.size(), " proxies from ",
                    options.source, " as uid ", ::getuid());
        Supervisor sup(std::move(pol), std::move(listeners), source, worker);
        if (options.hangup_stops) sup.stop_on_hangup();
        std::optional<ControlServer> control_server;
        if (control) {
            control_server.emplace(sup.loop(), std::move(control), sup, rule);
            sup.add_ticker([&](Clock::time_point now) { return control_server->tick(now); });
        }
        std::optional<MetricsServer> metrics_server;
        if (metrics) {
            metrics_server.emplace(sup.loop(), std::move(metrics), sup);
            sup.add_ticker([&](Clock::time_point now) { return metrics_server->tick(now); });
        }
        const int status = sup.run();
        // Our control socket file goes with us; one a newer pf-proxyd made in its place stays.
        struct stat now {};
        if (control_file.st_ino != 0 && ::stat(options.control_path.c_str(), &now) == 0 &&
            now.st_ino == control_file.st_ino && now.st_dev == control_file.st_dev) {
            ::unlink(options.control_path.c_str());
        }
        return status;
    } catch (const std::exception& e) {
        log::error(e.what());
        return 1;
    }
}

}  // namespace pfp::supervisor
