#include "supervisor/supervisor.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>

#include "common/address_message.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "common/pidfd.hpp"
#include "supervisor/dispatch.hpp"
#include "supervisor/handover_builder.hpp"
#include "supervisor/spawn.hpp"
#include "supervisor/upstream_names.hpp"

namespace pfp::supervisor {

namespace {
constexpr auto kReadyTimeout = std::chrono::seconds(10);
constexpr auto kStopGrace = std::chrono::seconds(5);  // past drain_timeout, before SIGKILL

}  // namespace

std::string implausible_stats(const ipc::StreamStats& before, const ipc::StreamStats& after,
                              Clock::duration elapsed, int max_connections) {
    struct Counter {
        const char* name;
        uint64_t old_value, new_value, per_second;
    };
    const Counter counters[] = {
        {"accepted", before.accepted, after.accepted, kMaxConnectionsPerSecond},
        {"bytes_up", before.bytes_up, after.bytes_up, kMaxBytesPerSecond},
        {"bytes_down", before.bytes_down, after.bytes_down, kMaxBytesPerSecond},
        {"connect_failures", before.connect_failures, after.connect_failures,
         kMaxConnectionsPerSecond},
        {"accept_errors", before.accept_errors, after.accept_errors, kMaxConnectionsPerSecond},
        {"denied", before.denied, after.denied, kMaxConnectionsPerSecond},
    };
    // Whole seconds, rounded up, plus one: a report right after start is bounded too.
    const auto seconds = static_cast<uint64_t>(
        std::chrono::ceil<std::chrono::seconds>(std::max(elapsed, Clock::duration::zero()))
            .count() +
        1);
    for (const Counter& c : counters) {
        if (c.new_value < c.old_value)
            return std::string(c.name) + " went down from " + std::to_string(c.old_value) + " to " +
                   std::to_string(c.new_value);
        if (c.new_value - c.old_value > c.per_second * seconds)
            return std::string(c.name) + " grew by " + std::to_string(c.new_value - c.old_value) +
                   " in " + std::to_string(seconds) + " s";
    }
    if (after.active > static_cast<uint64_t>(max_connections) || after.active > after.accepted)
        return "active " + std::to_string(after.active) + " is more than the worker can hold";
    return "";
}

std::string implausible_stats(const ipc::DatagramStats& before, const ipc::DatagramStats& after,
                              Clock::duration elapsed, int max_flows) {
    // A datagram is a "connection" here: no worker receives 4 M a second.
    if (std::string why = counters_implausible(
            before, after, elapsed, ipc::datagram_fields(), &ipc::DatagramStats::flows_active,
            {&ipc::DatagramStats::bytes_up, &ipc::DatagramStats::bytes_down});
        !why.empty())
        return why;
    if (after.flows_active > static_cast<uint64_t>(max_flows) ||
        after.flows_active > after.flows_created)
        return "flows_active " + std::to_string(after.flows_active) +
               " is more than the worker can hold";
    return "";
}

namespace {

std::string ms(std::chrono::milliseconds d) {
    return std::to_string(d.count()) + " ms";
}
}  // namespace

void WorkerProcess::PidWatch::on_event(uint32_t) {
    w->owner->worker_exited(*w);
}
void WorkerProcess::ControlWatch::on_event(uint32_t) {
    w->owner->worker_message(*w);
}
void WorkerProcess::LogWatch::on_event(uint32_t) {
    w->owner->worker_log(*w);
}

Supervisor::Supervisor(policy::Policy policy, std::vector<Listener> listeners,
                       ListenerSource& source, std::string worker_path)
    : policy_(std::move(policy)), source_(source), worker_path_(std::move(worker_path)) {
    for (size_t i = 0; i < policy_.proxies.size(); ++i)
        proxies_.push_back(make_proxy(policy_.proxies[i], std::move(listeners.at(i))));
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) < 0) throw_errno("sigprocmask");
    signals_.s = this;
    signals_.fd.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signals_.fd) throw_errno("signalfd");
    if (!loop_.add(signals_.fd.get(), EPOLLIN, &signals_)) throw_errno("epoll_ctl(signalfd)");
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ign, nullptr);
    names_ = std::make_unique<UpstreamNames>(
        loop_, [this](const std::string& proxy, const std::vector<SockAddr>& addresses) {
            send_addresses(proxy, addresses);
        });
    names_->commit(names_->prepare(policy_));
    tickers_.push_back([this](Clock::time_point now) { return names_->tick(now); });
}

Supervisor::~Supervisor() = default;

void Supervisor::send_addresses(const std::string& proxy, const std::vector<SockAddr>& set) {
    ProxyState* p = find(proxy);
    if (!p) return;
    const std::string payload = ipc::encode_addresses(set);
    for (auto& slot : p->slots) {
        WorkerProcess* w = slot.worker.get();
        // Older generations may have had another upstream; they drain with what they have.
        if (!w || !w->control || w->generation != p->generation ||
            w->state == WorkerProcess::State::draining)
            continue;
        try {
            ipc::send(w->control.get(), ipc::Type::addresses, payload);
        } catch (const std::exception& e) {
            // A worker that cannot take it is restarted (or dying): its next handover has the set.
            log::warning(label(*w), ": cannot send the new upstream addresses: ", e.what());
        }
    }
}

std::unique_ptr<ProxyState> Supervisor::make_proxy(policy::Proxy config, Listener listener) {
    auto p = std::make_unique<ProxyState>();
    p->config = std::move(config);
    p->listener = std::move(listener);
    return p;
}

std::string Supervisor::label(const WorkerProcess& w) const {
    return "proxy \"" + w.proxy->config.name + "\" worker " + std::to_string(w.index) + " (pid " +
           std::to_string(w.pid) + ")";
}

int Supervisor::run() {
    for (auto& p : proxies_) start_generation(*p);
    loop_.run([this] { return stopping_ && no_workers_left(); },
              [this](Clock::time_point now) { return tick(now); });
    log::info("all workers stopped; exiting");
    return 0;
}

bool Supervisor::no_workers_left() const {
    for (const auto* list : {&proxies_, &removed_})
        for (const auto& p : *list)
            if (has_workers(*p)) return false;
    return true;
}

bool Supervisor::is_worker(pid_t pid) const {
    for (const auto* list : {&proxies_, &removed_}) {
        for (const auto& p : *list) {
            for (const auto& s : p->slots)
                if (s.worker && s.worker->pid == pid) return true;
            for (const auto& w : p->retiring)
                if (w->pid == pid) return true;
        }
    }
    return false;
}

ProxyState* Supervisor::find(const std::string& name) {
    for (auto& p : proxies_)
        if (p->config.name == name) return p.get();
    return nullptr;
}

// A new generation of workers for the proxy's current configuration and listener. Workers of
// the previous generation keep serving until every new one is READY, then drain.
void Supervisor::start_generation(ProxyState& p) {
    if (p.config.allow_any) {
        log::warning("proxy \"", p.config.name,
                     "\" is an open relay (allow: \"any\"): it connects wherever its clients "
                     "say, except the protected ranges; list the destinations in allow instead");
    }
    if (kind_row(p.config.kind).family == KindFamily::tunnel && p.config.psk.empty())
        log::warning("proxy ", p.config.name,
                     ": KCP tunnel is unauthenticated (no psk_file or psk_env)");
    for (auto& s : p.slots) {
        if (s.worker) p.retiring.push_back(std::move(s.worker));
    }
    p.slots.clear();
    for (int i = 0; i < p.config.workers; ++i) p.slots.emplace_back(p.config.restart);
    for (size_t i = 0; i < p.slots.size(); ++i) start_worker(p, i);
    ready_ = false;
}

void Supervisor::start_worker(ProxyState& p, size_t slot_index) {
    WorkerSlot& slot = p.slots[slot_index];
    slot.restart_at.reset();
    auto w = std::make_unique<WorkerProcess>();
    w->owner = this;
    w->proxy = &p;
    w->index = static_cast<int>(slot_index);
    w->generation = p.generation;
    w->pid_watch.w = w.get();
    w->control_watch.w = w.get();
    w->log_watch.w = w.get();
    try {
        const KindRow& row = kind_row(p.config.kind);
        SpawnedWorker sp = spawn_worker(
            worker_path_, "pf-proxy-worker: " + p.config.name + "/" + std::to_string(slot_index),
            {row.capabilities.begin(), row.capabilities.end()});
        w->pid = sp.pid;
        w->pidfd = std::move(sp.pidfd);
        w->control = std::move(sp.control);
        w->log = std::move(sp.log);
        w->log_relay.set_label(label(*w));
        w->started = Clock::now();
        w->stats_at = w->started;
        w->deadline = w->started + kReadyTimeout;
        if (!loop_.add(w->pidfd.get(), EPOLLIN, &w->pid_watch)) throw_errno("epoll_ctl(pidfd)");
        if (!loop_.add(w->control.get(), EPOLLIN, &w->control_watch))
            throw_errno("epoll_ctl(control)");
        if (!loop_.add(w->log.get(), EPOLLIN, &w->log_watch)) throw_errno("epoll_ctl(log pipe)");
        // The message waits in the socket until the worker reads it; the worker verifies the
        // fd before trusting it.
        Handover h = build_handover(p.config, p.listener.bound, w->index, p.generation,
                                    policy_.drain_timeout);
        if (const auto* set = names_->addresses(p.config.name))
            set_resolved_upstream(h, p.config.upstream, *set);
        std::vector<int> fds{p.listener.worker_fd(slot_index)};
        for (const auto& fd : p.listener.others) fds.push_back(fd.get());
        ipc::send(w->control.get(), ipc::Type::handover, h.to_json(), fds);
    } catch (const std::exception& e) {
        log::error("proxy \"", p.config.name, "\" worker ", slot_index, ": ", e.what());
        if (w->pid > 0) {
            // Registered pidfd or not, reap it through the normal exit path.
            if (w->pidfd) ::pidfd_send_signal(w->pidfd.get(), SIGKILL, nullptr, 0);
            slot.worker = std::move(w);
            return;
        }
        auto delay = slot.backoff.failed(std::chrono::milliseconds(0));
        if (!delay)
            fail_proxy(p, "cannot start workers");
        else
            slot.restart_at = Clock::now() + *delay;
        return;
    }
    log::info(label(*w), " started, generation ", w->generation);
    slot.worker = std::move(w);
}

void Supervisor::kill_worker(WorkerProcess& w, const std::string& why) {
    log::error(label(w), ": ", why, "; killing it");
    ::pidfd_send_signal(w.pidfd.get(), SIGKILL, nullptr, 0);
}

void Supervisor::drain_worker(WorkerProcess& w) {
    if (w.state == WorkerProcess::State::draining) return;
    w.stop_requested = true;
    w.state = WorkerProcess::State::draining;
    w.deadline = Clock::now() + policy_.drain_timeout + kStopGrace;
    uint32_t drain_ms = static_cast<uint32_t>(policy_.drain_timeout.count());
    std::string payload(sizeof drain_ms, '\0');
    std::memcpy(payload.data(), &drain_ms, sizeof drain_ms);
    try {
        ipc::send(w.control.get(), ipc::Type::drain, payload);
    } catch (const std::exception&) {
        // A worker that cannot hear us drains on SIGTERM, and is killed at the deadline.
        ::pidfd_send_signal(w.pidfd.get(), SIGTERM, nullptr, 0);
    }
}

void Supervisor::drain_proxy(ProxyState& p) {
    for (auto& s : p.slots) {
        s.restart_at.reset();
        if (s.worker) drain_worker(*s.worker);
    }
    for (auto& w : p.retiring) drain_worker(*w);
}

void Supervisor::retire_old_generation_when_ready(ProxyState& p) {
    if (p.retiring.empty()) return;
    for (const auto& s : p.slots)
        if (!s.worker || s.worker->state != WorkerProcess::State::running) return;
    for (auto& w : p.retiring) {
        if (w->state == WorkerProcess::State::draining) continue;
        log::info(label(*w), " (generation ", w->generation, ") hands over to generation ",
                  p.generation, "; draining");
        drain_worker(*w);
    }
}

void Supervisor::worker_log(WorkerProcess& w) {
    if (!w.log_relay.drain(w.log.get(), Clock::now())) {
        loop_.remove(w.log.get());
        w.log.reset();
    }
}

void Supervisor::worker_message(WorkerProcess& w) {
    std::optional<ipc::Message> m;
    try {
        m = ipc::receive(w.control.get(), ipc::kMaxFromWorker, 0);
    } catch (const system_error& e) {
        if (e.code() == EAGAIN) return;
        if (e.code() == ECONNRESET && (stopping_ || w.state == WorkerProcess::State::draining)) {
            // It drained on a SIGTERM of its own (a terminal's Ctrl-C signals the whole process
            // group) and exited before reading our DRAIN: an end, not a fault. Its pidfd reports
            // how it exited.
            loop_.remove(w.control.get());
            return;
        }
        kill_worker(w, std::string("control channel: ") + e.what());
        loop_.remove(w.control.get());
        return;
    } catch (const std::exception& e) {
        kill_worker(w, std::string("protocol violation: ") + e.what());
        loop_.remove(w.control.get());
        return;
    }
    if (!m) {  // the worker is going away; its pidfd reports the end
        loop_.remove(w.control.get());
        return;
    }
    // A worker told to drain before it said READY (a second reload, a stop) still says it once.
    const auto state = w.state == WorkerProcess::State::draining && !w.said_ready
                           ? WorkerProcess::State::starting
                           : w.state;
    Verdict v = permit(state, *m, kind_row(w.proxy->config.kind).family);
    if (!v.allowed) {
        kill_worker(w, "protocol violation: " + v.reason);
        loop_.remove(w.control.get());
        return;
    }
    switch (v.handler) {
        case MessageHandler::ready:
            on_ready(w, *m);
            break;
        case MessageHandler::stats:
            on_stats(w, *m);
            break;
        case MessageHandler::none:
            break;
    }
}

void Supervisor::on_ready(WorkerProcess& w, const ipc::Message&) {
    w.said_ready = true;
    if (w.state == WorkerProcess::State::draining) return;
    w.state = WorkerProcess::State::running;
    log::info(label(w), " ready");
    retire_old_generation_when_ready(*w.proxy);
    check_ready();
}

void Supervisor::on_stats(WorkerProcess& w, const ipc::Message& m) {
    if (kind_row(w.proxy->config.kind).family == KindFamily::packet) {
        const auto next = ipc::decode_packet_stats(m.payload);  // size checked by permit()
        const auto now = Clock::now();
        const std::string wrong =
            implausible_stats(w.packet_stats.value_or(ipc::PacketStats{}), next, now - w.stats_at);
        if (!wrong.empty()) {
            kill_worker(w, "protocol violation: STATS " + wrong);
            loop_.remove(w.control.get());
            return;
        }
        w.packet_stats = next;
        w.stats_at = now;
        return;
    }
    if (kind_row(w.proxy->config.kind).family == KindFamily::tunnel) {
        const auto next = ipc::decode_tunnel_stats(m.payload);  // size checked by permit()
        const auto now = Clock::now();
        const TunnelOptions o = tunnel_options(w.proxy->config);
        const auto max_active = static_cast<uint64_t>(
            w.proxy->config.kind == WorkerKind::kcp_server ? o.max_sessions : o.max_connections);
        const std::string wrong = implausible_stats(w.tunnel_stats.value_or(ipc::TunnelStats{}),
                                                    next, now - w.stats_at, max_active);
        if (!wrong.empty()) {
            kill_worker(w, "protocol violation: STATS " + wrong);
            loop_.remove(w.control.get());
            return;
        }
        w.tunnel_stats = next;
        w.stats_at = now;
        return;
    }
    if (kind_row(w.proxy->config.kind).family == KindFamily::datagram) {
        const auto next = ipc::decode_datagram_stats(m.payload);  // size checked by permit()
        const auto now = Clock::now();
        const std::string wrong =
            implausible_stats(w.datagram_stats.value_or(ipc::DatagramStats{}), next,
                              now - w.stats_at, datagram_options(w.proxy->config).max_flows);
        if (!wrong.empty()) {
            kill_worker(w, "protocol violation: STATS " + wrong);
            loop_.remove(w.control.get());
            return;
        }
        w.datagram_stats = next;
        w.stats_at = now;
        return;
    }
    const ipc::StreamStats next = ipc::decode_stream_stats(m.payload);  // size checked by permit()
    const auto now = Clock::now();
    const std::string wrong =
        implausible_stats(w.stats, next, now - w.stats_at, connections_per_worker(w.proxy->config));
    if (!wrong.empty()) {
        kill_worker(w, "protocol violation: STATS " + wrong);
        loop_.remove(w.control.get());
        return;
    }
    w.stats = next;
    w.stats_at = now;
}

// READY=1 once every worker of the current generation of every active proxy runs: at start and
// after each reload (which sent RELOADING=1).
void Supervisor::check_ready() {
    if (ready_ || stopping_) return;
    size_t active = 0;
    for (const auto& p : proxies_) {
        if (p->state != ProxyState::State::active) continue;
        ++active;
        for (const auto& s : p->slots)
            if (!s.worker || s.worker->state != WorkerProcess::State::running) return;
    }
    ready_ = true;
    const size_t others = proxies_.size() - active;
    log::notice("all ", active, " proxies ready (policy generation ", policy_generation_, ")",
                others ? "; " + std::to_string(others) + " stopped or failed" : std::string());
    notifier_.ready(summary());
}

void Supervisor::worker_exited(WorkerProcess& w) {
    int status = 0;
    pid_t r;
    do {
        r = ::waitpid(w.pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return;  // spurious wake-up; the pidfd reports again
    ProxyState& p = *w.proxy;
    auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - w.started);
    ExitInfo info = classify_exit(status, w.stop_requested || stopping_);
    loop_.remove(w.pidfd.get());
    if (w.control) loop_.remove(w.control.get());
    if (w.log) {  // its last words come before the supervisor's note of its end
        // A pipe holds 64 KiB, a drain takes as much: bounded even if a writer survived it.
        for (int i = 0; i < 4 && w.log_relay.drain(w.log.get(), Clock::now()); ++i) {
        }
        w.log_relay.flush(Clock::now());
        loop_.remove(w.log.get());
        w.log.reset();
    }
    // Its counters stay in the proxy's totals; active connections died with it.
    ipc::StreamStats gone = w.stats;
    gone.active = 0;
    add_counters(p.gone, gone);
    if (w.datagram_stats) {
        ipc::DatagramStats ended = *w.datagram_stats;
        ended.flows_active = 0;
        add_counters(p.gone, ended);
    }
    if (w.packet_stats) {
        ipc::PacketStats ended = *w.packet_stats;
        ended.streams_active = 0;
        add_counters(p.gone, ended);
    }
    if (w.tunnel_stats) {
        ipc::TunnelStats ended = *w.tunnel_stats;
        ended.sessions_active = 0;
        add_counters(p.gone, ended);
    }
    if (info.cls != ExitClass::stopped) p.last_exit = info.text;

    auto old = std::find_if(p.retiring.begin(), p.retiring.end(),
                            [&w](const auto& held) { return held.get() == &w; });
    if (old != p.retiring.end()) {
        log::info(label(w), " (generation ", w.generation, ") ", info.text);
        exited_.push_back(std::move(*old));  // `w` stays valid until the batch ends
        p.retiring.erase(old);
    } else {
        WorkerSlot& slot = p.slots[static_cast<size_t>(w.index)];
        exited_.push_back(std::move(slot.worker));
        const bool expected =
            info.cls == ExitClass::stopped || stopping_ || p.state != ProxyState::State::active;
        if (expected) {
            log::info(label(w), " ", info.text);
        } else if (info.cls == ExitClass::fatal) {
            log::error(label(w), " ", info.text);
            fail_proxy(p, "worker " + info.text + "; restarting cannot help");
        } else if (auto delay = slot.backoff.failed(uptime)) {
            log::warning(label(w), " ", info.text, " after ", ms(uptime), "; restarting in ",
                         ms(*delay));
            slot.restart_at = Clock::now() + *delay;
            ++p.restarts;
        } else {
            log::error(label(w), " ", info.text);
            fail_proxy(p, "crash loop: " + std::to_string(slot.backoff.consecutive_failures()) +
                              " consecutive failures");
        }
    }
    if (p.state == ProxyState::State::removed) {
        if (!has_workers(p)) {
            log::info("proxy \"", p.config.name, "\" removed: its last connection is gone");
            for (auto it = removed_.begin(); it != removed_.end(); ++it) {
                if (it->get() == &p) {
                    // Workers in exited_ point at it until the batch ends; keep it alive as long.
                    removed_done_.push_back(std::move(*it));
                    removed_.erase(it);
                    break;
                }
            }
        }
    }
}

void Supervisor::fail_proxy(ProxyState& p, const std::string& why) {
    if (p.state == ProxyState::State::failed) return;
    p.state = ProxyState::State::failed;
    log::error("proxy \"", p.config.name, "\" failed: ", why,
               "; not restarting it, other proxies keep running");
    // Clients must be refused, not left waiting in a backlog nobody accepts from.
    source_.release(p.config, p.listener);
    for (auto& s : p.slots) {
        s.restart_at.reset();
        if (s.worker) {
            s.worker->stop_requested = true;
            ::pidfd_send_signal(s.worker->pidfd.get(), SIGKILL, nullptr, 0);
        }
    }
    // An older generation still serving its connections finishes them.
    for (auto& w : p.retiring) drain_worker(*w);
    notifier_.status("proxy " + p.config.name + " failed: " + why);
    check_ready();
}

void Supervisor::stop_on_hangup() {
    hangup_stops_ = true;
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&set, sig);
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) < 0) throw_errno("sigprocmask");
    if (::signalfd(signals_.fd.get(), &set, SFD_NONBLOCK | SFD_CLOEXEC) < 0)
        throw_errno("signalfd");
}

void Supervisor::on_signal() {
    signalfd_siginfo si;
    while (::read(signals_.fd.get(), &si, sizeof si) == sizeof si) {
        int sig = static_cast<int>(si.ssi_signo);
        if (sig == SIGHUP && !hangup_stops_) {
            log::notice("SIGHUP: reloading ", policy_.path);
            reload();  // logs its outcome
            continue;
        }
        if (stopping_) {
            // A closed terminal can hang up more than once, and a service manager's SIGTERM after
            // a hang-up is its first stop request: neither is an operator's "stop, now".
            if (sig == SIGHUP) continue;
            if (stopped_by_hangup_) {
                stopped_by_hangup_ = false;
                log::notice("SIG", sigabbrev_np(sig), " after a hang-up: still draining");
                continue;
            }
            log::warning("SIG", sigabbrev_np(sig), " again: killing the remaining workers now");
            stop_deadline_ = Clock::now();
            continue;
        }
        stopped_by_hangup_ = sig == SIGHUP;
        begin_stop(sigabbrev_np(sig));
    }
}

void Supervisor::begin_stop(const char* why) {
    stopping_ = true;
    stop_deadline_ = Clock::now() + policy_.drain_timeout + kStopGrace;
    notifier_.stopping();
    log::notice("SIG", why, ": stopping; draining connections for up to ",
                ms(policy_.drain_timeout));
    for (auto* list : {&proxies_, &removed_}) {
        for (auto& p : *list) {
            p->listener.fd.reset();  // our copy; the workers close theirs on DRAIN
            p->listener.group.clear();
            p->listener.others.clear();
            drain_proxy(*p);
        }
    }
}

std::optional<Clock::time_point> Supervisor::tick(Clock::time_point now) {
    exited_.clear();
    removed_done_.clear();
    std::optional<Clock::time_point> next;
    auto consider = [&](std::optional<Clock::time_point> t) {
        if (t && (!next || *t < *next)) next = t;
    };
    consider(notifier_.tick(now));
    for (auto& t : tickers_) consider(t(now));
    if (stopping_) {
        if (now >= stop_deadline_) {
            for (auto* list : {&proxies_, &removed_}) {
                for (auto& p : *list) {
                    for (auto& s : p->slots)
                        if (s.worker)
                            ::pidfd_send_signal(s.worker->pidfd.get(), SIGKILL, nullptr, 0);
                    for (auto& w : p->retiring)
                        ::pidfd_send_signal(w->pidfd.get(), SIGKILL, nullptr, 0);
                }
            }
        } else {
            consider(stop_deadline_);
        }
        return next;
    }
    for (auto& p : proxies_)
        if (p->listen_retry_until) consider(retry_listen(*p, now));
    for (auto* list : {&proxies_, &removed_}) {
        for (auto& pp : *list) {
            ProxyState& p = *pp;
            for (auto& w : p.retiring) {
                consider(w->log_relay.tick(now));
                if (w->state != WorkerProcess::State::draining) continue;
                if (now >= w->deadline) {
                    kill_worker(*w,
                                "still running " + ms(policy_.drain_timeout) + " into its drain");
                    w->deadline = now + std::chrono::hours(1);  // killed once
                } else {
                    consider(w->deadline);
                }
            }
            for (size_t si = 0; si < p.slots.size(); ++si) {
                WorkerSlot& s = p.slots[si];
                if (!s.worker && s.restart_at && p.state == ProxyState::State::active) {
                    if (now >= *s.restart_at)
                        start_worker(p, si);
                    else
                        consider(*s.restart_at);
                }
                if (!s.worker) continue;
                consider(s.worker->log_relay.tick(now));
                const bool starting = s.worker->state == WorkerProcess::State::starting;
                const bool draining = s.worker->state == WorkerProcess::State::draining;
                if (!starting && !draining) continue;
                if (now >= s.worker->deadline) {
                    kill_worker(
                        *s.worker,
                        starting
                            ? "no READY within " + std::to_string(kReadyTimeout.count()) + " s"
                            : "still running " + ms(policy_.drain_timeout) + " into its drain");
                    s.worker->deadline = now + std::chrono::hours(1);  // killed once
                } else {
                    consider(s.worker->deadline);
                }
            }
        }
    }
    if (now >= next_status_) {  // STATUS= at most once a second
        notifier_.status(summary());
        next_status_ = now + std::chrono::seconds(1);
    }
    return next;
}

}  // namespace pfp::supervisor
