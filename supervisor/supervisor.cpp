#include "supervisor/supervisor.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include <cstring>

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/pidfd.hpp"
#include "common/worker_config.hpp"
#include "supervisor/dispatch.hpp"
#include "supervisor/spawn.hpp"

namespace pfp::supervisor {

namespace {
constexpr auto kReadyTimeout = std::chrono::seconds(10);
constexpr auto kStopGrace = std::chrono::seconds(5);  // past drain_timeout, before SIGKILL

WorkerConfig worker_config(const policy::Policy& pol, const policy::Proxy& p, int index,
                           int generation) {
    WorkerConfig c;
    c.proxy = p.name;
    c.kind = p.kind;
    c.index = index;
    c.generation = generation;
    c.listen = to_string(p.listen);
    c.upstream = p.upstream_mode == policy::UpstreamMode::fixed ? to_string(p.upstream) : "";
    c.upstream_mode = p.upstream_mode == policy::UpstreamMode::fixed ? "fixed"
                      : p.upstream_mode == policy::UpstreamMode::destination_header
                          ? "destination-header"
                          : "original-destination";
    c.max_connections = (p.max_connections + p.workers - 1) / p.workers;
    c.connect_timeout = p.connect_timeout;
    c.idle_timeout = p.idle_timeout;
    c.drain_timeout = pol.drain_timeout;
    c.tcp_nodelay = p.tcp_nodelay;
    c.keepalive = p.keepalive.enabled;
    c.keepalive_idle = p.keepalive.idle;
    c.keepalive_interval = p.keepalive.interval;
    c.keepalive_count = p.keepalive.count;
    c.splice = p.splice;
    c.send_original_destination = p.send_original_destination;
    c.header = p.header == policy::HeaderFormat::oyster_v4 ? "oyster-v4" : "standard";
    c.proxy_protocol = p.proxy_protocol;
    c.allow = p.allow;
    c.allowed_cids = p.allowed_cids;
    c.allowed_sources = p.allowed_sources;
    c.log_connections = p.log_connections;
    c.statistics = p.statistics;
    return c;
}

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

Supervisor::Supervisor(policy::Policy policy, std::vector<unique_fd> listeners,
                       std::string worker_path)
    : policy_(std::move(policy)), worker_path_(std::move(worker_path)) {
    for (size_t i = 0; i < policy_.proxies.size(); ++i) {
        ProxyState p{policy_.proxies[i], std::move(listeners.at(i)), false, {}};
        for (int s = 0; s < p.config.workers; ++s) p.slots.emplace_back(p.config.restart);
        proxies_.push_back(std::move(p));
    }
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
}

std::string Supervisor::label(const WorkerProcess& w) const {
    return "proxy \"" + proxies_[w.proxy].config.name + "\" worker " + std::to_string(w.index) +
           " (pid " + std::to_string(w.pid) + ")";
}

int Supervisor::run() {
    for (size_t p = 0; p < proxies_.size(); ++p)
        for (size_t s = 0; s < proxies_[p].slots.size(); ++s) start_worker(p, s);
    loop_.run([this] { return stopping_ && no_workers_left(); },
              [this](Clock::time_point now) { return tick(now); });
    log::info("all workers stopped; exiting");
    return 0;
}

bool Supervisor::no_workers_left() const {
    for (const auto& p : proxies_)
        for (const auto& s : p.slots)
            if (s.worker) return false;
    return true;
}

void Supervisor::start_worker(size_t proxy, size_t slot_index) {
    ProxyState& p = proxies_[proxy];
    WorkerSlot& slot = p.slots[slot_index];
    slot.restart_at.reset();
    auto w = std::make_unique<WorkerProcess>();
    w->owner = this;
    w->proxy = proxy;
    w->index = static_cast<int>(slot_index);
    w->generation = ++slot.generation;
    w->pid_watch.w = w.get();
    w->control_watch.w = w.get();
    try {
        SpawnedWorker sp = spawn_worker(
            worker_path_, "pf-proxy-worker: " + p.config.name + "/" + std::to_string(slot_index));
        w->pid = sp.pid;
        w->pidfd = std::move(sp.pidfd);
        w->control = std::move(sp.control);
        w->started = Clock::now();
        w->deadline = w->started + kReadyTimeout;
        if (!loop_.add(w->pidfd.get(), EPOLLIN, &w->pid_watch)) throw_errno("epoll_ctl(pidfd)");
        if (!loop_.add(w->control.get(), EPOLLIN, &w->control_watch))
            throw_errno("epoll_ctl(control)");
        // The message waits in the socket until the worker reads it; the worker verifies the
        // fd before trusting it.
        ipc::send(w->control.get(), ipc::Type::handover,
                  worker_config(policy_, p.config, w->index, w->generation).to_json(),
                  {p.listener.get()});
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

void Supervisor::worker_message(WorkerProcess& w) {
    std::optional<ipc::Message> m;
    try {
        m = ipc::receive(w.control.get(), ipc::kMaxFromWorker);
    } catch (const system_error& e) {
        if (e.code() == EAGAIN) return;
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
    Verdict v = permit(w.state, *m);
    if (!v.allowed) {
        kill_worker(w, "protocol violation: " + v.reason);
        loop_.remove(w.control.get());
        return;
    }
    switch (m->type) {
        case ipc::Type::ready:
            w.state = WorkerProcess::State::running;
            log::info(label(w), " ready");
            notify_ready_once();
            break;
        case ipc::Type::stats:
            w.stats = ipc::decode_stats(m->payload);  // size already checked by permit()
            break;
        default:
            break;
    }
}

void Supervisor::notify_ready_once() {
    if (ready_notified_) return;
    for (const auto& p : proxies_) {
        if (p.failed) continue;
        for (const auto& s : p.slots)
            if (!s.worker || s.worker->state != WorkerProcess::State::running) return;
    }
    ready_notified_ = true;
    log::notice("all ", proxies_.size(), " proxies ready");
    ::sd_notifyf(0, "READY=1\nSTATUS=%zu proxies running", proxies_.size());
}

void Supervisor::worker_exited(WorkerProcess& w) {
    int status = 0;
    pid_t r;
    do {
        r = ::waitpid(w.pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return;  // spurious wake-up; the pidfd reports again
    ProxyState& p = proxies_[w.proxy];
    WorkerSlot& slot = p.slots[static_cast<size_t>(w.index)];
    auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - w.started);
    ExitInfo info = classify_exit(status, w.stop_requested || stopping_);
    loop_.remove(w.pidfd.get());
    if (w.control) loop_.remove(w.control.get());
    exited_.push_back(std::move(slot.worker));  // `w` stays valid until the batch ends

    if (info.cls == ExitClass::stopped || stopping_ || p.failed) {
        log::info(label(w), " ", info.text);
        return;
    }
    if (info.cls == ExitClass::fatal) {
        log::error(label(w), " ", info.text);
        fail_proxy(p, "worker " + info.text + "; restarting cannot help");
        return;
    }
    auto delay = slot.backoff.failed(uptime);
    if (!delay) {
        log::error(label(w), " ", info.text);
        fail_proxy(p, "crash loop: " + std::to_string(slot.backoff.consecutive_failures()) +
                          " consecutive failures");
        return;
    }
    log::warning(label(w), " ", info.text, " after ", ms(uptime), "; restarting in ", ms(*delay));
    slot.restart_at = Clock::now() + *delay;
}

void Supervisor::fail_proxy(ProxyState& p, const std::string& why) {
    if (p.failed) return;
    p.failed = true;
    log::error("proxy \"", p.config.name, "\" failed: ", why,
               "; not restarting it, other proxies keep running");
    // Clients must be refused, not left waiting in a backlog nobody accepts from.
    p.listener.reset();
    for (auto& s : p.slots) {
        s.restart_at.reset();
        if (s.worker) {
            s.worker->stop_requested = true;
            ::pidfd_send_signal(s.worker->pidfd.get(), SIGKILL, nullptr, 0);
        }
    }
    ::sd_notifyf(0, "STATUS=proxy %s failed: %s", p.config.name.c_str(), why.c_str());
}

void Supervisor::on_signal() {
    signalfd_siginfo si;
    while (::read(signals_.fd.get(), &si, sizeof si) == sizeof si) {
        int sig = static_cast<int>(si.ssi_signo);
        if (sig == SIGHUP) {
            log::warning("SIGHUP: live reload is not implemented in this version; ignoring");
            continue;
        }
        if (stopping_) {
            log::warning("SIG", sigabbrev_np(sig), " again: killing the remaining workers now");
            stop_deadline_ = Clock::now();
            continue;
        }
        begin_stop(sigabbrev_np(sig));
    }
}

void Supervisor::begin_stop(const char* why) {
    stopping_ = true;
    stop_deadline_ = Clock::now() + policy_.drain_timeout + kStopGrace;
    ::sd_notify(0, "STOPPING=1");
    log::notice("SIG", why, ": stopping; draining connections for up to ",
                ms(policy_.drain_timeout));
    uint32_t drain_ms = static_cast<uint32_t>(policy_.drain_timeout.count());
    std::string payload(sizeof drain_ms, '\0');
    std::memcpy(payload.data(), &drain_ms, sizeof drain_ms);
    for (auto& p : proxies_) {
        p.listener.reset();  // our copy; the workers close theirs on DRAIN
        for (auto& s : p.slots) {
            s.restart_at.reset();
            if (!s.worker) continue;
            s.worker->stop_requested = true;
            s.worker->state = WorkerProcess::State::draining;
            try {
                ipc::send(s.worker->control.get(), ipc::Type::drain, payload);
            } catch (const std::exception&) {
                // A worker that cannot hear us ends at the deadline like any other.
                ::pidfd_send_signal(s.worker->pidfd.get(), SIGTERM, nullptr, 0);
            }
        }
    }
}

std::optional<Clock::time_point> Supervisor::tick(Clock::time_point now) {
    exited_.clear();
    std::optional<Clock::time_point> next;
    auto consider = [&](Clock::time_point t) {
        if (!next || t < *next) next = t;
    };
    if (stopping_) {
        if (now >= stop_deadline_) {
            for (auto& p : proxies_)
                for (auto& s : p.slots)
                    if (s.worker) ::pidfd_send_signal(s.worker->pidfd.get(), SIGKILL, nullptr, 0);
        } else {
            consider(stop_deadline_);
        }
        return next;
    }
    for (size_t pi = 0; pi < proxies_.size(); ++pi) {
        ProxyState& p = proxies_[pi];
        if (p.failed) continue;
        for (size_t si = 0; si < p.slots.size(); ++si) {
            WorkerSlot& s = p.slots[si];
            if (!s.worker && s.restart_at) {
                if (now >= *s.restart_at)
                    start_worker(pi, si);
                else
                    consider(*s.restart_at);
            }
            if (s.worker && s.worker->state == WorkerProcess::State::starting) {
                if (now >= s.worker->deadline) {
                    kill_worker(*s.worker,
                                "no READY within " + std::to_string(kReadyTimeout.count()) + " s");
                    s.worker->deadline = now + std::chrono::hours(1);  // killed once
                } else {
                    consider(s.worker->deadline);
                }
            }
        }
    }
    return next;
}

}  // namespace pfp::supervisor
