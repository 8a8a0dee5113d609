// The datagram family's body (declared in worker_body.hpp): udp-forward. Datagrams from a client
// address go out through that client's own connected upstream socket (its flow); what comes back
// on it goes to that client through the shared bound socket. Reads and writes move up to kBatch
// datagrams per system call (recvmmsg/sendmmsg) unless batching is off. Every datagram is
// delivered whole or counted as dropped, with the reason.
#include <linux/udp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "common/allow_list.hpp"
#include "common/endpoint.hpp"
#include "common/log.hpp"
#include "workers/datagram_batch.hpp"
#include "workers/flow_table.hpp"
#include "workers/redirected_destination.hpp"
#include "workers/route.hpp"
#include "workers/worker_body.hpp"

namespace pfp::worker {

namespace {

constexpr size_t kBatch = 32;
// Larger than any UDP payload (65507 bytes over IPv4, 65527 over IPv6), so a datagram is read
// whole; MSG_TRUNC is still checked, and such a datagram dropped, never sent on cut.
constexpr size_t kBufferSize = 65536;
// Buffers 64 KiB apart would share cache sets (every datagram's first lines evicting the
// others'); a few cache lines more between them spread the batch over the cache.
constexpr size_t kBufferStride = kBufferSize + 5 * 64;
// Batches per readiness event, so one busy socket cannot starve the others (epoll is
// level-triggered: the rest is read on the next round).
constexpr int kRounds = 8;
// A client's run of datagrams of one size (the last may be shorter) goes upstream as one
// segmented send (send_segmented(), workers/datagram_batch.hpp).
// A draining worker reads no new client datagrams; a flow idle this long has had its answer.
constexpr auto kDrainIdle = std::chrono::seconds(1);

class UdpForwarder final : public WorkerBody, public FlowOwner {
  public:
    UdpForwarder(const Handover& h, const DatagramOptions& o, unique_fd sock, EventLoop& loop)
        : loop_(loop),
          sock_(std::move(sock)),
          upstream_(parse_endpoint(o.upstream)),
          host_upstream_(!o.upstream_host.empty()),
          table_(static_cast<size_t>(o.max_flows)),
          idle_(o.idle_timeout),
          batch_(o.batch ? kBatch : 1),
          log_flows_(o.log_connections),
          tag_(h.tag()),
          in_(kBatch, kBufferSize, kBufferStride) {
        if (!o.allowed_sources.empty()) sources_ = CidrSet::parse(o.allowed_sources);
        addresses_ = upstream_address_set(o.upstream_host, o.upstream_addresses, upstream_);
        if (addresses_.empty()) addresses_.push_back(upstream_.addr);
        for (size_t i = 0; i < kBatch; ++i) {
            out_[i].msg_hdr.msg_iov = &out_iov_[i];
            out_[i].msg_hdr.msg_iovlen = 1;
        }
        client_side_.self = this;
        if (!loop_.add(sock_.get(), EPOLLIN, &client_side_))
            throw std::runtime_error("epoll_ctl(datagram socket) failed");
    }

    void start() override {}
    void stop_accepting() override {
        if (draining_) return;
        draining_ = true;
        loop_.remove(sock_.get());
    }
    size_t active() const override { return table_.size(); }
    // New flows go to the new set's addresses; open flows keep their socket (and address).
    bool update_upstream(std::vector<SockAddr> addresses) override {
        if (!host_upstream_ || addresses.empty()) return false;
        for (const SockAddr& a : addresses)
            if (port_of(a) != upstream_.port) return false;
        addresses_ = std::move(addresses);
        return true;
    }
    std::string encoded_stats() const override {
        ipc::DatagramStats s = stats_;
        s.flows_active = table_.size();
        return ipc::encode_stats(s);
    }
    std::optional<Clock::time_point> tick(Clock::time_point now) override {
        const auto idle = effective_idle();
        if (!idle) return std::nullopt;
        while (Flow* f = table_.least_recent()) {
            if (now - f->last < *idle) return f->last + *idle;
            ++stats_.flows_expired;
            close_flow(*f, "idle");
        }
        return std::nullopt;
    }

    void upstream_ready(Flow& f) override {
        for (int round = 0; round < kRounds; ++round) {
            const int n = in_.receive(f.upstream.get(), false, batch_);
            if (n < 0) {
                if (errno == ECONNREFUSED) {  // an ICMP error for an earlier datagram
                    ++stats_.refused;
                    continue;
                }
                return;
            }
            size_t out = 0;
            for (int i = 0; i < n; ++i) {
                if (in_.truncated(static_cast<size_t>(i))) {
                    ++stats_.truncated;
                    continue;
                }
                stage(out++, i, &f.client.addr, f.client.len);
            }
            table_.touch(f, Clock::now());
            if (!send_segmented(sock_.get(), out, stats_.datagrams_down, stats_.bytes_down,
                                &f.client.addr, f.client.len))
                send_staged(sock_.get(), out, stats_.datagrams_down, stats_.bytes_down);
            if (static_cast<size_t>(n) < batch_) return;
        }
    }

  private:
    struct ClientSide : EventSource {
        UdpForwarder* self = nullptr;
        void on_event(uint32_t) override { self->client_ready(); }
    };

    std::optional<std::chrono::milliseconds> effective_idle() const {
        if (draining_)
            return idle_.count() > 0 ? std::min<std::chrono::milliseconds>(idle_, kDrainIdle)
                                     : kDrainIdle;
        if (idle_.count() == 0) return std::nullopt;
        return idle_;
    }

    // out_[slot] carries in_[i]'s datagram, to `name` (nullptr on a connected socket).
    void stage(size_t slot, int i, void* name, socklen_t len) {
        const auto d = in_.data(static_cast<size_t>(i));
        out_iov_[slot] = {d.data(), d.size()};
        out_[slot].msg_hdr.msg_name = name;
        out_[slot].msg_hdr.msg_namelen = len;
    }

    // out_[0..n) as one segmented send on fd (to `name`, or its peer when null); false (nothing
    // sent) when they are not one run of equal sizes, or the kernel or device cannot segment
    // (then never tried again).
    bool send_segmented(int fd, size_t n, uint64_t& datagrams, uint64_t& bytes,
                        void* name = nullptr, socklen_t name_len = 0) {
        if (!segment_) return false;
        switch (worker::send_segmented(fd, out_iov_.data(), n, name, name_len)) {
            case SegmentResult::sent:
                datagrams += n;
                for (size_t i = 0; i < n; ++i) bytes += out_iov_[i].iov_len;
                return true;
            case SegmentResult::unsupported:
                segment_ = false;
                return false;
            case SegmentResult::failed:
                if (errno == ECONNREFUSED) ++stats_.refused;  // reported (and cleared) by this send
                return false;                                 // sendmmsg tries them one by one
            case SegmentResult::not_a_run:
                return false;
        }
        return false;
    }

    // Sends out_[0..n) on fd; what cannot be sent is counted as dropped.
    void send_staged(int fd, size_t n, uint64_t& datagrams, uint64_t& bytes) {
        size_t done = 0;
        bool retried = false;
        while (done < n) {
            int sent;
            if (batch_ > 1) {
                sent = ::sendmmsg(fd, &out_[done], static_cast<unsigned>(n - done), MSG_DONTWAIT);
            } else {
                const ssize_t r = ::sendmsg(fd, &out_[done].msg_hdr, MSG_DONTWAIT);
                sent = r < 0 ? -1 : 1;
                if (r >= 0) out_[done].msg_len = static_cast<unsigned>(r);
            }
            if (sent > 0) {
                for (int k = 0; k < sent; ++k) bytes += out_[done + static_cast<size_t>(k)].msg_len;
                datagrams += static_cast<uint64_t>(sent);
                done += static_cast<size_t>(sent);
                retried = false;
                continue;
            }
            if (errno == EINTR) continue;
            if (errno == ECONNREFUSED) {
                // An earlier datagram's ICMP error, reported (and cleared) by this send: the flow
                // stays, and this datagram is tried once more.
                ++stats_.refused;
                if (!retried) {
                    retried = true;
                    continue;
                }
            } else {
                ++stats_.send_errors;
            }
            ++done;  // this one is dropped
            retried = false;
        }
    }

    void client_ready() {
        for (int round = 0; round < kRounds && !draining_; ++round) {
            const int n = in_.receive(sock_.get(), true, batch_);
            if (n <= 0) return;
            const auto now = Clock::now();
            Flow* run = nullptr;  // consecutive datagrams of one flow go out in one sendmmsg
            size_t staged = 0;
            const auto flush = [&] {
                if (run && staged &&
                    !send_segmented(run->upstream.get(), staged, stats_.datagrams_up,
                                    stats_.bytes_up))
                    send_staged(run->upstream.get(), staged, stats_.datagrams_up, stats_.bytes_up);
                run = nullptr;
                staged = 0;
            };
            for (int i = 0; i < n; ++i) {
                const auto slot = static_cast<size_t>(i);
                if (in_.truncated(slot)) {
                    ++stats_.truncated;
                    continue;
                }
                const auto key = flow_key(reinterpret_cast<const sockaddr*>(&in_.name(slot)),
                                          in_.name_len(slot));
                if (!key || (sources_ && !sources_->contains(key->get(), key->len))) {
                    ++stats_.denied;
                    continue;
                }
                Flow* f = table_.find(*key);
                if (f != run) flush();
                if (!f) {
                    f = open_flow(*key, now);  // may evict: nothing is staged now
                    if (!f) continue;
                }
                table_.touch(*f, now);
                run = f;
                stage(staged++, i, nullptr, 0);
            }
            flush();
            if (static_cast<size_t>(n) < batch_) return;
        }
    }

    Flow* open_flow(const FlowKey& key, Clock::time_point now) {
        if (table_.full()) make_room(now);
        // A host name's addresses in order: a UDP connect fails only locally (no route, a family
        // the host lacks), and then the next one is tried.
        unique_fd fd;
        for (const SockAddr& a : addresses_) {
            fd.reset(::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (fd && ::connect(fd.get(), a.get(), a.len) == 0) break;
            fd.reset();
        }
        if (!fd) {
            ++stats_.flow_errors;
            return nullptr;
        }
        Flow& f = table_.insert(key, now);
        f.owner = this;
        f.upstream = std::move(fd);
        if (!loop_.add(f.upstream.get(), EPOLLIN, &f)) {
            table_.remove(f);
            ++stats_.flow_errors;
            return nullptr;
        }
        ++stats_.flows_created;
        if (log_flows_) log::info(tag_, ": udp flow ", flow_key_text(key), " opened");
        return &f;
    }

    // The least recently active flow goes: expired if it is, else evicted.
    void make_room(Clock::time_point now) {
        Flow* f = table_.least_recent();
        if (!f) return;
        if (idle_.count() > 0 && now - f->last >= idle_) {
            ++stats_.flows_expired;
            close_flow(*f, "idle");
            return;
        }
        ++stats_.flows_evicted;
        ++evicted_unlogged_;
        if (now >= next_evict_log_) {
            log::warning(tag_, ": flow table full (", table_.capacity(), " flows): evicted ",
                         evicted_unlogged_, " least recently active flow(s)");
            evicted_unlogged_ = 0;
            next_evict_log_ = now + std::chrono::seconds(1);
        }
        close_flow(*f, "evicted");
    }

    void close_flow(Flow& f, const char* why) {
        if (log_flows_)
            log::info(tag_, ": udp flow ", flow_key_text(f.client), " closed (", why, ")");
        table_.remove(f);
    }

    EventLoop& loop_;
    unique_fd sock_;
    Endpoint upstream_;
    bool host_upstream_;
    std::vector<SockAddr> addresses_;  // the upstream's (a host name's current set)
    FlowTable table_;
    std::chrono::milliseconds idle_;
    size_t batch_;
    bool log_flows_;
    std::string tag_;
    std::optional<CidrSet> sources_;
    RecvBatch in_;
    std::array<iovec, kBatch> out_iov_{};
    std::array<mmsghdr, kBatch> out_{};
    ClientSide client_side_;
    ipc::DatagramStats stats_;
    bool draining_ = false;
    bool segment_ = true;  // UDP_SEGMENT works here (until the kernel says otherwise)
    uint64_t evicted_unlogged_ = 0;
    Clock::time_point next_evict_log_{};
};

}  // namespace

std::unique_ptr<WorkerBody> make_datagram_worker(const Handover& h, const DatagramOptions& options,
                                                 unique_fd sock, EventLoop& loop) {
    return std::make_unique<UdpForwarder>(h, options, std::move(sock), loop);
}

}  // namespace pfp::worker
