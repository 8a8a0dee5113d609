// The supervisor's answers to the control socket: status, reload, and per-proxy restart, stop
// and start. Reload is transactional: every listener the new policy needs is obtained before
// anything running changes, so an error leaves the old policy in force.
#include <unistd.h>

#include <cstdlib>

#include "common/log.hpp"
#include "common/worker_kind.hpp"
#include "policy/parse.hpp"
#include "policy/psk.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/supervisor.hpp"
#include "supervisor/upstream_names.hpp"

namespace pfp::supervisor {

namespace {

constexpr auto kListenRetry = std::chrono::seconds(2);

const char* state_name(ProxyState::State s) {
    switch (s) {
        case ProxyState::State::active:
            return "running";
        case ProxyState::State::stopped:
            return "stopped";
        case ProxyState::State::failed:
            return "failed";
        case ProxyState::State::removed:
            return "draining";
    }
    return "?";
}

const char* worker_state(WorkerProcess::State s) {
    switch (s) {
        case WorkerProcess::State::starting:
            return "starting";
        case WorkerProcess::State::running:
            return "running";
        case WorkerProcess::State::draining:
            return "draining";
    }
    return "?";
}

bool same_address(const policy::Proxy& a, const policy::Proxy& b) {
    return to_string(a.listen) == to_string(b.listen) && a.listen_family == b.listen_family &&
           a.ipv6_only == b.ipv6_only;
}

// Raw injectors are bound to the upstream's device and opened with the listener: a listener
// whose kind has them is the same only with the same kind and upstream.
bool same_listen(const policy::Proxy& a, const policy::Proxy& b) {
    const bool others = kind_row(a.kind).fds.size() > 1 || kind_row(b.kind).fds.size() > 1;
    if (others && (a.kind != b.kind || to_string(a.upstream) != to_string(b.upstream)))
        return false;
    return same_address(a, b);
}

}  // namespace

void add_counters(ProxyCounters& c, const ipc::StreamStats& s) {
    c.accepted += s.accepted;
    c.active += s.active;
    c.bytes_up += s.bytes_up;
    c.bytes_down += s.bytes_down;
    c.connect_failures += s.connect_failures;
    c.accept_errors += s.accept_errors;
    c.denied += s.denied;
}

void add_counters(ProxyCounters& c, const ipc::DatagramStats& s) {
    c.accepted += s.flows_created;
    c.active += s.flows_active;
    c.bytes_up += s.bytes_up;
    c.bytes_down += s.bytes_down;
    c.connect_failures += s.flow_errors;
    c.denied += s.denied;
    if (!c.datagram) c.datagram.emplace();
    for (const auto& f : ipc::datagram_fields()) (*c.datagram).*f.field += s.*f.field;
}

ProxyCounters Supervisor::counters(const ProxyState& p) const {
    ProxyCounters c = p.gone;
    const auto add = [&c](const WorkerProcess& w) {
        add_counters(c, w.stats);
        if (w.datagram_stats) add_counters(c, *w.datagram_stats);
        if (w.packet_stats) add_counters(c, *w.packet_stats);
        if (w.tunnel_stats) add_counters(c, *w.tunnel_stats);
    };
    for (const auto& s : p.slots)
        if (s.worker) add(*s.worker);
    for (const auto& w : p.retiring) add(*w);
    // A datagram proxy shows its datagram counters before its first report too.
    if (kind_row(p.config.kind).family == KindFamily::datagram && !c.datagram) c.datagram.emplace();
    if (kind_row(p.config.kind).family == KindFamily::packet && !c.packet) c.packet.emplace();
    if (kind_row(p.config.kind).family == KindFamily::tunnel && !c.tunnel) c.tunnel.emplace();
    return c;
}

DaemonStatus Supervisor::status() {
    DaemonStatus d;
    d.version = PFPROXY_VERSION;
    d.pid = ::getpid();
    d.policy = policy_.path;
    d.policy_generation = policy_generation_;
    d.state = stopping_                ? "stopping"
              : ready_                 ? "running"
              : policy_generation_ > 1 ? "reloading"
                                       : "starting";
    d.uptime_seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    for (const auto* list : {&proxies_, &removed_}) {
        for (const auto& pp : *list) {
            const ProxyState& p = *pp;
            ProxyStatus s;
            s.name = p.config.name;
            s.kind = std::string(kind_name(p.config.kind));
            s.listen = to_string(p.config.listen);
            s.upstream = describe_upstream(p.config);
            s.state = state_name(p.state);
            bool all_running = !p.slots.empty();
            for (const auto& slot : p.slots) {
                all_running &= slot.worker && slot.worker->state == WorkerProcess::State::running;
            }
            if (p.state == ProxyState::State::active && !all_running) {
                s.state = p.retiring.empty() ? "starting" : "reloading";
            }
            s.generation = p.generation;
            s.restarts = p.restarts;
            s.last_exit = p.last_exit;
            auto worker = [](const WorkerProcess& w) {
                return WorkerStatus{w.pid, w.index, w.generation, worker_state(w.state)};
            };
            for (const auto& slot : p.slots)
                if (slot.worker) s.workers.push_back(worker(*slot.worker));
            for (const auto& w : p.retiring) s.workers.push_back(worker(*w));
            s.counters = counters(p);
            if (p.state != ProxyState::State::removed) s.resolved = names_->status(p.config.name);
            d.proxies.push_back(std::move(s));
        }
    }
    return d;
}

std::string Supervisor::summary() const {
    size_t running = 0, failed = 0, stopped = 0;
    uint64_t active = 0;
    for (const auto& p : proxies_) {
        running += p->state == ProxyState::State::active;
        failed += p->state == ProxyState::State::failed;
        stopped += p->state == ProxyState::State::stopped;
        active += counters(*p).active;
    }
    std::string s =
        std::to_string(running) + " of " + std::to_string(proxies_.size()) + " proxies running";
    if (failed) s += ", " + std::to_string(failed) + " failed";
    if (stopped) s += ", " + std::to_string(stopped) + " stopped";
    s += ", " + std::to_string(active) + " active connections, policy generation " +
         std::to_string(policy_generation_);
    return s;
}

CommandOutcome Supervisor::reload() {
    if (stopping_ || policy_.path.empty()) {
        CommandOutcome out{false,
                           stopping_ ? "pf-proxyd is stopping"
                                     : "nothing to reload: this pf-proxyd was started from a "
                                       "command line, not a policy file",
                           {}};
        log::error("reload refused: ", out.message);
        return out;
    }
    notifier_.reloading();
    auto refuse = [this](CommandOutcome out) {
        log::error("reload of ", policy_.path, " refused: ", out.message,
                   "; still running policy generation ", policy_generation_);
        for (const auto& e : out.errors) log::error("  ", e);
        notifier_.ready(summary());  // systemd expects READY=1 after RELOADING=1, either way
        return out;
    };

    policy::Policy next;
    try {
        next = policy::load_policy(policy_.path);
        policy::load_psks(next, [](const char* name) { return std::getenv(name); });
    } catch (const policy::policy_error& e) {
        CommandOutcome out{
            false, "the policy in " + policy_.path + " is invalid; nothing changed", {}};
        for (const auto& d : e.diagnostics()) out.errors.push_back(d.str());
        return refuse(std::move(out));
    }
    if (next.user != policy_.user || next.group != policy_.group) {
        return refuse({false,
                       "\"user\" and \"group\" cannot change on a reload (pf-proxyd has already "
                       "switched user); restart pf-proxyd instead",
                       {}});
    }

    // Host names next (blocking for names not resolved yet): an unresolvable one refuses it all.
    UpstreamNames::Prepared names;
    try {
        names = names_->prepare(next);
    } catch (const std::exception& e) {
        return refuse({false, e.what(), {}});
    }

    // Every listener first: nothing running changes unless all of them can be had.
    std::vector<ProxyState*> old(next.proxies.size(), nullptr);
    std::vector<Listener> fresh(next.proxies.size());
    std::vector<bool> unchanged(next.proxies.size(), false);
    std::vector<std::optional<std::vector<unique_fd>>> fresh_others(next.proxies.size());
    try {
        for (size_t i = 0; i < next.proxies.size(); ++i) {
            const policy::Proxy& cfg = next.proxies[i];
            old[i] = find(cfg.name);
            // A failed proxy is retried; a stopped one stays stopped until `start`.
            if (old[i] && old[i]->state != ProxyState::State::failed &&
                policy::same_configuration(old[i]->config, cfg)) {
                unchanged[i] = true;
                continue;
            }
            if (old[i] && old[i]->listener && same_listen(old[i]->config, cfg)) {
                if (std::string why = worker_sockets_mismatch(cfg, old[i]->listener.group.size());
                    !why.empty())
                    throw std::runtime_error(why);
                if (std::string why = queue_settings_mismatch(old[i]->config, cfg); !why.empty())
                    throw std::runtime_error(why);
                continue;
            }
            // The same listener with new raw injectors: the old one cannot be opened twice.
            if (old[i] && old[i]->listener && old[i]->config.kind == cfg.kind &&
                same_address(old[i]->config, cfg)) {
                fresh_others[i] = source_.reopen_others(cfg);
                continue;
            }
            ProxyState* donor = nullptr;
            for (auto& o : proxies_)
                if (o->listener && same_listen(o->config, cfg)) donor = o.get();
            fresh[i] = donor ? source_.share(cfg, donor->listener) : source_.obtain(cfg);
        }
    } catch (const std::exception& e) {
        for (auto& l : fresh)
            if (l) source_.discard(l);
        return refuse({false, e.what(), {}});
    }

    names_->commit(std::move(names));
    int changed = 0, added = 0, removed = 0, same = 0;
    std::vector<std::unique_ptr<ProxyState>> kept;
    for (size_t i = 0; i < next.proxies.size(); ++i) {
        const policy::Proxy& cfg = next.proxies[i];
        std::unique_ptr<ProxyState> p;
        if (old[i]) {
            for (auto& o : proxies_)
                if (o.get() == old[i]) p = std::move(o);
        }
        if (!p) {
            source_.commit(cfg, fresh[i]);
            p = make_proxy(cfg, std::move(fresh[i]));
            log::notice("reload: proxy \"", cfg.name, "\" added: ", kind_name(cfg.kind), " ",
                        to_string(cfg.listen), " -> ", describe_upstream(cfg));
            start_generation(*p);
            ++added;
        } else if (unchanged[i]) {
            p->config.pointer = cfg.pointer;
            ++same;
        } else {
            if (fresh[i]) {
                // The new listener's store entry (same name) replaces the old one's at commit.
                source_.discard(p->listener);
                p->listener = std::move(fresh[i]);
                source_.commit(cfg, p->listener);
            }
            // Running workers hold their own copies of the old raw sockets.
            if (fresh_others[i]) p->listener.others = std::move(*fresh_others[i]);
            p->config = cfg;
            ++p->generation;
            p->state = ProxyState::State::active;
            log::notice("reload: proxy \"", cfg.name, "\" changed: generation ", p->generation,
                        " takes over");
            start_generation(*p);
            ++changed;
        }
        kept.push_back(std::move(p));
    }
    for (auto& o : proxies_) {
        if (!o) continue;  // moved to kept
        log::notice("reload: proxy \"", o->config.name,
                    "\" removed: refusing new connections, "
                    "draining ",
                    counters(*o).active, " open one(s)");
        o->state = ProxyState::State::removed;
        source_.release(o->config, o->listener);
        drain_proxy(*o);
        ++removed;
        removed_.push_back(std::move(o));
    }
    proxies_ = std::move(kept);
    // The control socket and the metrics endpoint were opened at start, before privileges
    // were dropped: they keep their settings until pf-proxyd restarts.
    const auto text = [](const std::optional<Endpoint>& e) { return e ? to_string(*e) : ""; };
    const bool start_only_changed = text(next.metrics) != text(policy_.metrics) ||
                                    next.control_users != policy_.control_users ||
                                    next.control_groups != policy_.control_groups;
    policy_ = std::move(next);
    ++policy_generation_;
    std::string msg = "reloaded " + policy_.path + " (policy generation " +
                      std::to_string(policy_generation_) + "): " + std::to_string(same) +
                      " unchanged, " + std::to_string(changed) + " changed, " +
                      std::to_string(added) + " added, " + std::to_string(removed) + " removed";
    if (start_only_changed) {
        msg += "; metrics, control_users and control_groups take effect at the next start";
    }
    log::notice(msg);
    // Removed proxies whose workers were already gone have nothing to drain.
    std::erase_if(removed_, [this](const auto& r) { return !has_workers(*r); });
    ready_ = false;
    check_ready();
    return {true, msg, {}};
}

CommandOutcome Supervisor::restart_proxy(const std::string& name) {
    ProxyState* p = find(name);
    if (!p) return {false, "no proxy named \"" + name + "\"", {}};
    if (stopping_) return {false, "pf-proxyd is stopping", {}};
    if (p->state != ProxyState::State::active) return start_proxy(name);
    ++p->generation;
    log::notice("proxy \"", name, "\": restart requested; generation ", p->generation,
                " takes over");
    start_generation(*p);
    return {true,
            "proxy \"" + name + "\" restarting: generation " + std::to_string(p->generation) +
                " takes over, the previous one drains",
            {}};
}

CommandOutcome Supervisor::stop_proxy(const std::string& name) {
    ProxyState* p = find(name);
    if (!p) return {false, "no proxy named \"" + name + "\"", {}};
    if (p->state == ProxyState::State::stopped)
        return {false, "proxy \"" + name + "\" is already stopped", {}};
    const uint64_t active = counters(*p).active;
    p->state = ProxyState::State::stopped;
    source_.release(p->config, p->listener);
    drain_proxy(*p);
    log::notice("proxy \"", name, "\" stopped by request: refusing new connections, draining ",
                active, " open one(s)");
    check_ready();
    return {true,
            "proxy \"" + name + "\" stopped; " + std::to_string(active) +
                " open connection(s) draining",
            {}};
}

CommandOutcome Supervisor::start_proxy(const std::string& name) {
    ProxyState* p = find(name);
    if (!p) return {false, "no proxy named \"" + name + "\"", {}};
    if (stopping_) return {false, "pf-proxyd is stopping", {}};
    if (p->state == ProxyState::State::active) {
        return {false, "proxy \"" + name + "\" is already running", {}};
    }
    if (!p->listener) {
        try {
            p->listener = source_.obtain(p->config);
            source_.commit(p->config, p->listener);
        } catch (const std::exception& e) {
            // Workers told to drain a moment ago may still hold the old socket (and so the
            // address): try again from the loop until they have let go of it.
            if (!has_workers(*p)) return {false, e.what(), {}};
            p->state = ProxyState::State::active;
            ++p->generation;
            p->listen_retry_until = Clock::now() + kListenRetry;
            log::notice("proxy \"", name, "\" starting by request, generation ", p->generation,
                        ", once its previous workers release ", to_string(p->config.listen));
            return {true,
                    "proxy \"" + name + "\" starting, generation " + std::to_string(p->generation) +
                        ", once its previous workers release " + to_string(p->config.listen),
                    {}};
        }
    }
    p->state = ProxyState::State::active;
    ++p->generation;
    log::notice("proxy \"", name, "\" started by request, generation ", p->generation);
    start_generation(*p);
    return {
        true, "proxy \"" + name + "\" started, generation " + std::to_string(p->generation), {}};
}

std::optional<Clock::time_point> Supervisor::retry_listen(ProxyState& p, Clock::time_point now) {
    try {
        p.listener = source_.obtain(p.config);
        source_.commit(p.config, p.listener);
    } catch (const std::exception& e) {
        if (now < *p.listen_retry_until) return now + std::chrono::milliseconds(20);
        p.listen_retry_until.reset();
        fail_proxy(p, e.what());
        return std::nullopt;
    }
    p.listen_retry_until.reset();
    log::notice("proxy \"", p.config.name, "\" started, generation ", p.generation);
    start_generation(p);
    return std::nullopt;
}

bool Supervisor::has_workers(const ProxyState& p) const {
    if (!p.retiring.empty()) return true;
    for (const auto& s : p.slots)
        if (s.worker) return true;
    return false;
}

}  // namespace pfp::supervisor
