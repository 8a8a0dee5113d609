// The stream-to-raw body (declared in worker_body.hpp): accepts one stream at a time, frames the IP
// packets on it by their own headers (common/packet_framer.hpp) and sends each through the raw
// socket of its family, which the supervisor opened (and bound to the device for raw:DEVICE). The
// worker holds no capability: sending on a raw socket someone else opened needs none.
//
// One stream at a time, as the deployed tools: while a stream is open the listener is out of the
// event loop, so a second client waits in the listen backlog until the first ends (logged when a
// stream starts). A stream with an invalid header ends (it cannot be resynchronised); a packet the
// policy's filters drop (common/packet_filter.hpp) or the kernel refuses (no route, too big) is
// counted by reason and the stream goes on. The packets of one read go out in batches (sendmmsg,
// one call per run of one family). When a raw socket's send buffer is full the stream is not read
// until it has room: back-pressure, no loss.
//
// A TCP packet larger than its route takes (a whole GSO packet) is cut into segments that fit
// (common/tcp_segment.hpp) when the policy names the route's MTU, or, with "route_mtu": "auto",
// the MTU the kernel reports for its destination (workers/route_mtus.hpp). The supervisor sets
// IP_RECVERR / IPV6_RECVERR on both raw sockets, so every refusal for size names that MTU.
#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/endpoint.hpp"
#include "common/log.hpp"
#include "common/packet_filter.hpp"
#include "common/packet_framer.hpp"
#include "common/tcp_segment.hpp"
#include "workers/route_mtus.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {
namespace {

// The kernel's MSG_PROBE ("do not send, only probe the path"), which glibc names MSG_PROXY.
constexpr int kMsgProbe = 0x10;

class RawInjector final : public WorkerBody {
  public:
    RawInjector(const Handover& h, const PacketOptions& o, std::vector<unique_fd> fds,
                EventLoop& loop)
        : loop_(loop),
          tag_(h.tag()),
          upstream_(o.upstream),
          listener_(std::move(fds.at(0))),
          raw4_(std::move(fds.at(1))),
          raw6_(std::move(fds.at(2))),
          filter_(make_filter(o)),
          route_mtu_(o.route_mtu),
          route_mtu_auto_(o.route_mtu_auto),
          arena_(o.route_mtu != 0 || o.route_mtu_auto ? kArena : 0) {}

    void start() override { listen(true); }

    void stop_accepting() override {
        draining_ = true;
        listen(false);
    }

    size_t active() const override { return client_ ? 1 : 0; }

    std::string encoded_stats() const override {
        ipc::PacketStats s = stats_;
        s.streams_active = active();
        return ipc::encode_stats(s);
    }

    std::optional<Clock::time_point> tick(Clock::time_point) override { return std::nullopt; }

  private:
    struct Watch final : EventSource {
        Watch(RawInjector* s, void (RawInjector::*h)(uint32_t)) : self(s), handler(h) {}
        RawInjector* self;
        void (RawInjector::*handler)(uint32_t);
        void on_event(uint32_t events) override { (self->*handler)(events); }
    };

    void listen(bool on) {
        if (on == listening_ || (on && draining_)) return;
        listening_ = on;
        if (on)
            loop_.add(listener_.get(), EPOLLIN, &listener_watch_);
        else
            loop_.remove(listener_.get());
    }

    void on_listener(uint32_t) {
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        const int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                stats_.stream_errors++;
                log::warning(tag_, ": accept failed: ", std::strerror(errno));
            }
            return;
        }
        client_.reset(fd);
        stats_.streams++;
        framer_.emplace();
        refused_ = 0;
        filtered_ = 0;
        peer_ = format_sockaddr(reinterpret_cast<const sockaddr*>(&peer), len);
        listen(false);
        if (!loop_.add(client_.get(), EPOLLIN | EPOLLRDHUP, &client_watch_)) {
            end_stream("cannot watch the stream: " + std::string(std::strerror(errno)));
            return;
        }
        log::info(tag_, ": packet stream from ", peer_, " -> ", upstream_,
                  " (one stream at a time: another client waits in the listen backlog until "
                  "this one ends)");
    }

    void on_client(uint32_t) {
        if (blocked_) return;
        for (int reads = 0; reads < 16 && client_; ++reads) {
            const auto space = framer_->write_space();
            const ssize_t n = ::read(client_.get(), space.data(), space.size());
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                stats_.stream_errors++;
                end_stream(std::string("read failed: ") + std::strerror(errno));
                return;
            }
            if (n == 0) {
                const std::string eof = framer_->eof_error();
                if (!eof.empty()) stats_.stream_errors++;
                end_stream(eof.empty() ? "closed by the peer" : eof);
                return;
            }
            stats_.bytes_in += static_cast<uint64_t>(n);
            framer_->commit(static_cast<size_t>(n));
            if (!inject_ready() || blocked_) return;
        }
    }

    // Sends every complete packet the framer holds, in batches of one family (one sendmmsg per
    // run of up to kBatch packets: the packets of one read go out in one or a few calls). False
    // when the stream ended (bad header).
    bool inject_ready() {
        if (blocked_ && !flush_batch()) return true;  // still blocked
        if (!carry_.empty()) {
            const auto packet = carry_;
            carry_ = {};
            if (!enqueue(carry_fd_, packet)) return true;
        }
        for (;;) {
            if (batch_n_ == kBatch && !flush_batch()) return true;
            const auto next = framer_->next();
            if (next.status == PacketFramer::Status::need_more) {
                flush_batch();  // blocked or not: resumes when the raw socket has room
                return true;
            }
            if (next.status == PacketFramer::Status::error) {
                flush_batch();  // the packets before the bad header, as far as they go
                stats_.stream_errors++;
                end_stream(framer_->error());
                return false;
            }
            stats_.packets_in++;
            if (const DropReason r = filter_packet(filter_, next.packet); r != DropReason::none) {
                count_drop(r);
                continue;
            }
            const int fd = (next.packet[0] >> 4) == 4 ? raw4_.get() : raw6_.get();
            if (!enqueue(fd, next.packet)) return true;
        }
    }

    // Adds `packet` to the batch; a TCP packet above its route's MTU (a whole GSO packet) as the
    // segments that fit, cut into the arena, which only an empty batch lets it reuse. False when
    // the batch had to go out first and could not: the packet is carried until it has.
    bool enqueue(int fd, std::span<const uint8_t> packet) {
        const size_t mtu = route_mtu_auto_ ? learned_mtu(fd, packet) : route_mtu_;
        const bool cut = mtu != 0 && packet.size() > mtu;
        if (batch_n_ > 0 && (fd != batch_fd_ || cut) && !flush_batch()) {
            carry_ = packet;  // the first of the next batch, once this one is out
            carry_fd_ = fd;
            return false;
        }
        if (cut) {
            std::array<size_t, kBatch> lengths{};
            if (const size_t n = segment_tcp(packet, mtu, arena_, lengths); n > 0) {
                size_t at = 0;
                for (size_t i = 0; i < n; ++i) {
                    add_to_batch(fd, {arena_.data() + at, lengths[i]});
                    counts_[batch_n_ - 1] = i + 1 == n ? packet.size() : 0;
                    at += lengths[i];
                }
                return true;
            }
        }
        add_to_batch(fd, packet);  // a packet not cut goes whole (and may meet EMSGSIZE)
        return true;
    }

    // "route_mtu": "auto": the MTU to cut this packet to (0: it goes whole), from what the kernel
    // said of its destination's route. Not known yet: a send with MSG_PROBE, which routes and
    // checks the size but sends nothing, asks; its refusal's report says the MTU.
    size_t learned_mtu(int fd, std::span<const uint8_t> packet) {
        const auto now = loop_.now();
        RouteMtus::Answer a = mtus_.check(packet, now);
        if (a.verdict == RouteMtus::Verdict::probe) {
            sockaddr_storage dst{};
            const socklen_t len = destination_of(fd, packet, dst);
            if (::sendto(fd, packet.data(), packet.size(), kMsgProbe | MSG_DONTWAIT,
                         reinterpret_cast<const sockaddr*>(&dst), len) >= 0) {
                mtus_.fits(packet, now);
                return 0;
            }
            if (errno != EMSGSIZE) return 0;  // no route...: the send meets it and counts it
            read_errors(fd);
            a = mtus_.check(packet, now);  // still "probe" if no report came: it goes whole
        }
        return a.verdict == RouteMtus::Verdict::cut ? a.mtu : 0;
    }

    // Drains a raw socket's error queue: the kernel's report of each packet it refused for size
    // (ee_info: its route's MTU; the name: the packet's destination). Returns the last MTU
    // reported (0: none). Under "auto" each is learned for its destination.
    size_t read_errors(int fd) {
        size_t mtu = 0;
        for (int i = 0; i < 16; ++i) {  // one report per refusal; bounded all the same
            sockaddr_storage from{};
            alignas(cmsghdr) std::array<char, 256> control{};
            uint8_t byte = 0;
            iovec iov{&byte, 1};
            msghdr msg{};
            msg.msg_name = &from;
            msg.msg_namelen = sizeof from;
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            if (::recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) break;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                const bool report = (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
                                    (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR);
                if (!report || c->cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) continue;
                sock_extended_err e{};
                std::memcpy(&e, CMSG_DATA(c), sizeof e);
                if (e.ee_errno != EMSGSIZE || e.ee_origin != SO_EE_ORIGIN_LOCAL) continue;
                mtu = e.ee_info;
                if (route_mtu_auto_) mtus_.learned(address_of(from), mtu, loop_.now());
            }
        }
        return mtu;
    }

    static std::span<const uint8_t> address_of(const sockaddr_storage& a) {
        if (a.ss_family == AF_INET)
            return {reinterpret_cast<const uint8_t*>(
                        &reinterpret_cast<const sockaddr_in*>(&a)->sin_addr),
                    4};
        if (a.ss_family == AF_INET6)
            return {reinterpret_cast<const uint8_t*>(
                        &reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr),
                    16};
        return {};
    }

    // The framer checked the header: an IPv4 packet has its 20 bytes, an IPv6 one its 40.
    socklen_t destination_of(int fd, std::span<const uint8_t> packet, sockaddr_storage& dst) const {
        dst = {};
        if (fd == raw4_.get()) {
            auto* sin = reinterpret_cast<sockaddr_in*>(&dst);
            sin->sin_family = AF_INET;
            std::memcpy(&sin->sin_addr, packet.data() + 16, 4);
            return sizeof *sin;
        }
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&dst);
        sin6->sin6_family = AF_INET6;
        std::memcpy(&sin6->sin6_addr, packet.data() + 24, 16);
        return sizeof *sin6;
    }

    // The packet stays in the framer's buffer (or the arena), which is not written until the
    // batch is out.
    void add_to_batch(int fd, std::span<const uint8_t> packet) {
        batch_fd_ = fd;
        const size_t i = batch_n_++;
        const socklen_t len = destination_of(fd, packet, addrs_[i]);
        iovs_[i] = {const_cast<uint8_t*>(packet.data()), packet.size()};
        counts_[i] = packet.size();
        msgs_[i] = {};
        msgs_[i].msg_hdr.msg_name = &addrs_[i];
        msgs_[i].msg_hdr.msg_namelen = len;
        msgs_[i].msg_hdr.msg_iov = &iovs_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
    }

    // Sends what is batched. False when the raw socket's buffer is full: the rest stays batched
    // and the stream is not read until it has room (back-pressure, no loss). A packet the kernel
    // refuses (no route, too big) is counted and skipped.
    bool flush_batch() {
        while (batch_sent_ < batch_n_) {
            const int n = ::sendmmsg(batch_fd_, &msgs_[batch_sent_],
                                     static_cast<unsigned>(batch_n_ - batch_sent_), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) {
                    if (!blocked_) block(batch_fd_);
                    return false;
                }
                // sendmmsg reports an error only for the first message it tried.
                stats_.send_errors++;
                if (errno == EMSGSIZE)
                    refuse_too_big(iovs_[batch_sent_].iov_len, read_errors(batch_fd_));
                else
                    refuse(std::strerror(errno));
                ++batch_sent_;
                continue;
            }
            for (size_t i = batch_sent_; i < batch_sent_ + static_cast<size_t>(n); ++i) {
                // The stream's packets: a cut one counts once, with its own size, at its last
                // segment (the supervisor holds packets and bytes out to at most those in).
                stats_.packets_out += counts_[i] != 0 ? 1 : 0;
                stats_.bytes_out += counts_[i];
                stats_.packets_cut += counts_[i] != 0 && iovs_[i].iov_len != counts_[i] ? 1 : 0;
            }
            batch_sent_ += static_cast<size_t>(n);
        }
        batch_n_ = batch_sent_ = 0;
        if (blocked_) unblock();
        return true;
    }

    static PacketFilter make_filter(const PacketOptions& o) {
        PacketFilter f;
        const auto address = [](const std::string& text) {
            auto a = parse_ip_address(text);
            if (!a) throw std::runtime_error("filter: not an IP address: " + text);
            return *a;
        };
        for (const auto& t : o.filter_destinations)
            if (!f.add_destination(address(t)))
                throw std::runtime_error("filter: too many destinations");
        for (const auto& t : o.filter_sources)
            if (!f.add_source(address(t))) throw std::runtime_error("filter: too many sources");
        f.drop_reserved = o.filter_drop_reserved;
        for (const auto& t : o.filter_source_ports) {
            const auto r = parse_port_range(t);
            if (!r || !f.add_source_ports(*r))
                throw std::runtime_error("filter: bad or too many source ports: " + t);
        }
        return f;
    }

    void count_drop(DropReason r) {
        switch (r) {
            case DropReason::malformed:
                stats_.dropped_malformed++;
                break;
            case DropReason::destination:
                stats_.dropped_destination++;
                break;
            case DropReason::source:
                stats_.dropped_source++;
                break;
            case DropReason::reserved:
                stats_.dropped_reserved++;
                break;
            case DropReason::port:
                stats_.dropped_port++;
                break;
            case DropReason::none:
                return;
        }
        if (filtered_++ == 0)
            log::warning(tag_, ": a packet from ", peer_, " was dropped by the filter (",
                         drop_reason_name(r),
                         "); further ones on this stream are counted (pf-proxyctl status)");
    }

    void refuse(const char* why) {
        // The first refusal of a stream is logged; the rest are counted (one summary at its end).
        if (refused_++ == 0)
            log::warning(tag_, ": a packet from ", peer_, " was not injected: ", why,
                         " (further ones on this stream are counted)");
    }

    // A raw socket sends a packet whole or not at all: one above its route's MTU (a whole GSO
    // packet from a reader with "gso", or one from a device with a larger MTU) is refused.
    void refuse_too_big(size_t bytes, size_t mtu) {
        if (refused_ != 0) return refuse("");  // only the first refusal's words are logged
        const std::string route =
            mtu != 0 ? "its route's MTU of " + std::to_string(mtu) : std::string("its route's MTU");
        const std::string what =
            route_mtu_auto_
                ? "; \"route_mtu\": \"auto\" cuts TCP packets only, and learns of a route's "
                  "smaller MTU from such a refusal: the next ones to it are cut"
            : route_mtu_ != 0
                ? "; \"route_mtu\" (" + std::to_string(route_mtu_) +
                      ") cuts TCP packets only, and must not exceed the route's MTU"
                : "; a whole GSO packet (from an nflog reader, or an nfqueue reader with \"gso\") "
                  "needs a local route, or this proxy's \"route_mtu\" to be cut";
        refuse(("a packet of " + std::to_string(bytes) + " bytes is larger than " + route +
                " (EMSGSIZE)" + what)
                   .c_str());
    }

    void block(int fd) {
        blocked_ = true;
        blocked_fd_ = fd;
        loop_.modify(client_.get(), 0, &client_watch_);  // not read until the packet is out
        loop_.add(fd, EPOLLOUT, &raw_watch_);
    }

    void unblock() {
        blocked_ = false;
        loop_.remove(blocked_fd_);
        blocked_fd_ = -1;
        if (client_) loop_.modify(client_.get(), EPOLLIN | EPOLLRDHUP, &client_watch_);
    }

    void on_raw(uint32_t events) {
        if (events & EPOLLERR) read_errors(blocked_fd_);  // a report not read at its refusal
        if (!blocked_ || !client_) return;
        if (inject_ready() && client_ && !blocked_) on_client(EPOLLIN);
    }

    void end_stream(const std::string& why) {
        if (blocked_) unblock();
        batch_n_ = batch_sent_ = 0;  // its packets lie in the framer's buffer, gone with it
        carry_ = {};
        loop_.remove(client_.get());
        client_.reset();
        const uint64_t packets = framer_ ? framer_->packets() : 0;
        std::string refused =
            refused_ ? ", " + std::to_string(refused_) + " not injected" : std::string();
        if (filtered_) refused += ", " + std::to_string(filtered_) + " dropped by the filter";
        log::info(tag_, ": packet stream from ", peer_, " ended after ", packets, " packets",
                  refused, ": ", why);
        framer_.reset();
        listen(true);
    }

    EventLoop& loop_;
    std::string tag_;
    std::string upstream_;
    unique_fd listener_, raw4_, raw6_, client_;
    std::optional<PacketFramer> framer_;  // per stream: a new stream starts on a packet boundary
    // Packets framed but not yet sent, all to batch_fd_ (inside the framer's buffer).
    static constexpr size_t kBatch = 64;
    // One 64 KiB packet's segments: its payload plus a copy of its headers (at most 120 bytes) per
    // segment.
    static constexpr size_t kArena = (64u << 10) + kBatch * 120;
    std::array<mmsghdr, kBatch> msgs_{};
    std::array<iovec, kBatch> iovs_{};
    std::array<sockaddr_storage, kBatch> addrs_{};
    std::array<size_t, kBatch> counts_{};  // the stream bytes a message completes (0: a segment)
    size_t batch_n_ = 0, batch_sent_ = 0;
    int batch_fd_ = -1;
    std::span<const uint8_t> carry_;  // framed while a batch of the other family was blocked
    int carry_fd_ = -1;
    bool listening_ = false, draining_ = false, blocked_ = false;
    int blocked_fd_ = -1;
    PacketFilter filter_;
    // route_mtu: whole TCP packets above it (or above their destination's MTU, learned under
    // "auto") are cut into arena_ (one packet's segments at most kBatch: the MTU is at least
    // 1280, so 64 KiB of payload makes at most 57).
    size_t route_mtu_ = 0;
    bool route_mtu_auto_ = false;
    RouteMtus mtus_;
    std::vector<uint8_t> arena_;
    uint64_t refused_ = 0, filtered_ = 0;
    std::string peer_;
    ipc::PacketStats stats_;
    Watch listener_watch_{this, &RawInjector::on_listener};
    Watch client_watch_{this, &RawInjector::on_client};
    Watch raw_watch_{this, &RawInjector::on_raw};
};

}  // namespace

std::unique_ptr<WorkerBody> make_raw_injector(const Handover& h, const PacketOptions& options,
                                              std::vector<unique_fd> fds, EventLoop& loop) {
    if (fds.size() != 3) throw std::runtime_error("stream-to-raw takes a listener and two raw fds");
    return std::make_unique<RawInjector>(h, options, std::move(fds), loop);
}

}  // namespace pfp::worker
