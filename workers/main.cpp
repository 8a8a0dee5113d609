// pf-proxy-worker: receives one proxy's sockets from pf-proxyd on fd 3, locks itself down and
// serves. Order: handover -> verify fds and capabilities -> build everything the loop needs ->
// rlimits -> lock down -> READY -> serve. Nothing that needs a syscall the sandbox forbids may be
// left for after lock-down.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include "common/address_message.hpp"
#include "common/error.hpp"
#include "common/event_loop.hpp"
#include "common/exit_codes.hpp"
#include "common/ipc.hpp"
#include "common/kcp/crypto.hpp"
#include "common/log.hpp"
#include "common/socket_util.hpp"
#include "workers/handover.hpp"
#include "workers/sandbox.hpp"
#include "workers/worker_body.hpp"

#ifdef PFPROXY_SANITIZE
// LeakSanitizer stops the world with ptrace, which the sandbox forbids.
extern "C" const char* __asan_default_options() {
    // use_sigaltstack=0: a relay thread ("relay": "threads") starts after lock-down, and the
    // runtime would give it an alternate signal stack with sigaltstack(), which the filter
    // allows only as a query.
    return "detect_leaks=0:use_sigaltstack=0";
}
#endif

#ifdef PFPROXY_HOSTILE_HOOK
// Test-only builds (tests/hostile/, never installed) play a compromised worker here: after the
// real lock-down and READY, with the real profile, capabilities and uid.
void hostile_after_lockdown(int control_fd, const pfp::Handover& h);
#endif

namespace pfp::worker {
namespace {

class Worker {
  public:
    Worker(Received r, EventLoop& loop) : handover_(std::move(r.handover)), loop_(loop) {
        tag_ = handover_.tag();
        body_ = make_worker_body(handover_, std::move(r.fds), loop_);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        if (::sigprocmask(SIG_BLOCK, &set, nullptr) < 0) throw_errno("sigprocmask");
        signals_.fd.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
        if (!signals_.fd) throw_errno("signalfd");
        signals_.self = this;
        control_.self = this;
        int fl = ::fcntl(kControlFd, F_GETFL);
        if (fl < 0 || ::fcntl(kControlFd, F_SETFL, fl | O_NONBLOCK) < 0)
            throw_errno("fcntl(control channel)");
        struct sigaction ign {};
        ign.sa_handler = SIG_IGN;
        ::sigaction(SIGPIPE, &ign, nullptr);  // peers vanish; errors come back as EPIPE
        if (!loop_.add(signals_.fd.get(), EPOLLIN, &signals_)) throw_errno("epoll_ctl(signalfd)");
        if (!loop_.add(kControlFd, EPOLLIN, &control_)) throw_errno("epoll_ctl(control)");
    }

    const Handover& handover() const { return handover_; }

    void serve() {
        body_->start();
        ipc::send(kControlFd, ipc::Type::ready, "");
        log::info(tag_, ": ", kind_name(handover_.kind), " worker ready, generation ",
                  handover_.generation);
#ifdef PFPROXY_HOSTILE_HOOK
        hostile_after_lockdown(kControlFd, handover_);
#endif
        next_stats_ = Clock::now();
        loop_.run([this] { return finished_; },
                  [this](Clock::time_point now) { return tick(now); });
        // The last counters, so the supervisor's totals count every byte this worker moved.
        if (control_open_) report_stats();
        log::info(tag_, ": stopped");
    }

  private:
    struct Signals : EventSource {
        Worker* self = nullptr;
        unique_fd fd;
        void on_event(uint32_t) override {
            signalfd_siginfo si;
            while (::read(fd.get(), &si, sizeof si) == sizeof si)
                self->begin_drain(self->handover_.drain_timeout, "signal");
        }
    };
    struct Control : EventSource {
        Worker* self = nullptr;
        void on_event(uint32_t) override { self->control_ready(); }
    };

    void control_ready() {
        std::optional<ipc::Message> m;
        try {
            m = ipc::receive(kControlFd, ipc::kMaxToWorker);
        } catch (const system_error& e) {
            if (e.code() == EAGAIN) return;
            // A supervisor that closed its end with our STATS still unread resets the channel:
            // it is gone all the same.
            if (e.code() != ECONNRESET) {
                fail(e.what());
                return;
            }
        } catch (const std::exception& e) {
            fail(e.what());
            return;
        }
        if (!m) {  // the supervisor is gone: finish what we have, take nothing new
            loop_.remove(kControlFd);
            control_open_ = false;
            begin_drain(handover_.drain_timeout, "supervisor gone");
            return;
        }
        if (m->type == ipc::Type::drain && m->payload.size() == sizeof(uint32_t)) {
            uint32_t ms;
            std::memcpy(&ms, m->payload.data(), sizeof ms);
            begin_drain(std::chrono::milliseconds(ms), "supervisor");
            return;
        }
        if (m->type == ipc::Type::addresses) {
            std::vector<SockAddr> set;
            try {
                set = ipc::decode_addresses(m->payload);
            } catch (const std::exception& e) {
                fail(e.what());
                return;
            }
            std::string text;
            for (const SockAddr& a : set) text += (text.empty() ? "" : ", ") + format_sockaddr(a);
            if (body_->update_upstream(std::move(set))) {
                log::info(tag_, ": upstream addresses now ", text);
                return;
            }
        }
        fail(std::string("unexpected ") + ipc::type_name(m->type) + " message");
    }

    void fail(const std::string& why) {
        log::error(tag_, ": control channel: ", why);
        ::_exit(exit_code::handover);
    }

    void begin_drain(std::chrono::milliseconds timeout, const char* who) {
        if (draining_) return;
        draining_ = true;
        drain_deadline_ = Clock::now() + timeout;
        body_->stop_accepting();
        log::info(tag_, ": draining (asked by ", who, "), ", body_->active(),
                  " connection(s) open, up to ", timeout.count(), " ms");
    }

    std::optional<Clock::time_point> tick(Clock::time_point now) {
        auto next = body_->tick(now);
        if (draining_) {
            if (body_->active() == 0) {
                finished_ = true;
            } else if (now >= drain_deadline_) {
                log::warning(tag_, ": drain timeout, closing ", body_->active(), " connection(s)");
                finished_ = true;
            }
            if (!next || drain_deadline_ < *next) next = drain_deadline_;
        }
        if (control_open_ && now >= next_stats_) {
            report_stats();
            next_stats_ = now + std::chrono::seconds(1);
        }
        if (control_open_ && (!next || next_stats_ < *next)) next = next_stats_;
        return next;
    }

    void report_stats() {
        std::string payload = body_->encoded_stats();
        if (payload == last_stats_) return;
        try {
            ipc::send(kControlFd, ipc::Type::stats, payload);
            last_stats_ = std::move(payload);
        } catch (const std::exception&) {
            // A full or closed channel loses one report; the next tick tries again.
        }
    }

    Handover handover_;
    EventLoop& loop_;
    std::string tag_;
    std::unique_ptr<WorkerBody> body_;
    Signals signals_;
    Control control_;
    bool control_open_ = true;
    bool draining_ = false;
    bool finished_ = false;
    Clock::time_point drain_deadline_{};
    Clock::time_point next_stats_{};
    std::string last_stats_;
};

// The socket domains this worker's upstreams can have: its own upstream's family only. A host
// name's later address sets may bring either IP family, and a destination the client chooses any
// family of the row: the row's domains then.
std::vector<int> worker_upstream_domains(const Handover& h) {
    const KindRow& row = kind_row(h.kind);
    const std::vector<int> all(row.upstream_domains.begin(), row.upstream_domains.end());
    if (all.empty()) return all;  // stream-to-raw creates no socket
    const auto* so = std::get_if<StreamOptions>(&h.options);
    const auto* dgo = std::get_if<DatagramOptions>(&h.options);
    const auto* tuo = std::get_if<TunnelOptions>(&h.options);
    if ((so && !so->upstream_host.empty()) || (dgo && !dgo->upstream_host.empty()) ||
        (tuo && !tuo->upstream_host.empty()))
        return all;
    const auto up = sandbox::own_upstream(h);
    if (!up) return all;
    for (int d : all)
        if (d == up->family()) return {d};
    throw handover_refused("upstream " + to_string(*up) + " is not a socket kind " +
                           std::string(row.name) + " may create");
}

// A setup failure for want of a resource (fds, memory) may pass: the supervisor restarts the
// worker with backoff. Anything else means this handover can never work.
int setup_exit_code(const std::exception& e) {
    if (const auto* sys = dynamic_cast<const system_error*>(&e)) {
        switch (sys->code()) {
            case EMFILE:
            case ENFILE:
            case ENOMEM:
            case ENOBUFS:
            case EAGAIN:
            case EINTR:
                return exit_code::resource;
        }
    }
    return exit_code::config;
}

int run() {
    Received received;
    try {
        received = receive_handover(kControlFd);
    } catch (const std::exception& e) {
        log::error("handover failed: ", e.what());
        return exit_code::handover;
    }
    const WorkerKind kind = received.handover.kind;
    std::vector<int> upstream_domains;
    sandbox::LandlockRules landlock_rules;
    std::optional<sandbox::FilesystemView> view;
    int listener_fd = -1;
    const std::string tag = received.handover.tag();
    try {
        verify_fds(received.handover, received.fds);
        verify_capabilities(received.handover);
        upstream_domains = worker_upstream_domains(received.handover);
        landlock_rules = sandbox::landlock_rules(received.handover);
        view = sandbox::filesystem_view(received.handover);
        for (size_t i = 0; i < received.handover.fds.size(); ++i)
            if (received.handover.fds[i].role == FdRole::stream_listener ||
                received.handover.fds[i].role == FdRole::nfqueue ||
                received.handover.fds[i].role == FdRole::nflog ||
                received.handover.fds[i].role == FdRole::datagram_socket)
                listener_fd = received.fds[i].get();
    } catch (const std::exception& e) {
        log::error(tag, ": handover refused: ", e.what());
        return exit_code::config;
    }
    if (view && !view->directory.empty() && ::access(view->directory.c_str(), F_OK) != 0) {
        // Its view is that directory: wait for it with the supervisor's backoff.
        log::error(tag, ": setup failed (will be retried): upstream directory ", view->directory,
                   ": ", std::strerror(errno));
        return exit_code::resource;
    }
    std::optional<EventLoop> loop;
    std::unique_ptr<Worker> worker;
    try {
        loop.emplace();
        // OpenSSL reads its configuration and loads providers on first use: files, which the
        // lock-down forbids from here on.
        if (kind_row(kind).family == KindFamily::tunnel) kcp::warm_up_crypto();
        worker = std::make_unique<Worker>(std::move(received), *loop);
        raise_fd_limit();
    } catch (const std::exception& e) {
        const int code = setup_exit_code(e);
        log::error(tag, ": setup failed", code == exit_code::resource ? " (will be retried)" : "",
                   ": ", e.what());
        return code;
    }
    try {
        sandbox::Profile profile = sandbox::narrowed(sandbox::profile_for(kind), upstream_domains);
        // "relay": "threads": the explicit variant that may start relay threads. They start
        // only after this lock-down, so each inherits the filter, NoNewPrivs, the dropped
        // capabilities and Landlock (the last two are per thread).
        if (const auto* so = std::get_if<StreamOptions>(&worker->handover().options);
            so && so->relay_threads > 0)
            profile = sandbox::with_thread_relay(profile);
        profile.listener_fd = listener_fd;
        if (view && !profile.capabilities.empty()) {
            // The nfqueue reader with a unix: upstream: its CAP_NET_ADMIN would not survive a
            // user namespace. Its control-socket refusal by peer pid still holds.
            log::warning(tag, ": no filesystem view: it keeps ",
                         sandbox::capability_names(sandbox::capability_mask(profile.capabilities)),
                         ", which a user namespace would void");
            view.reset();
        }
        const auto report =
            sandbox::lock_down(profile, sandbox::FilterMode::kill, landlock_rules, view);
        log::info(tag, ": landlock ", report.landlock);
        if (report.view && report.view->entered)
            log::info(tag, ": filesystem view: ", report.view->text);
        else if (report.view)
            log::warning(tag, ": filesystem view ", report.view->text);
    } catch (const std::exception& e) {
        log::error(tag, ": lock-down failed: ", e.what());
        return exit_code::sandbox;
    }
    worker->serve();
    return exit_code::ok;
}

}  // namespace
}  // namespace pfp::worker

int main() {
    try {
        return pfp::worker::run();
    } catch (const std::exception& e) {
        pfp::log::error("fatal: ", e.what());
        return pfp::exit_code::failure;
    }
}
