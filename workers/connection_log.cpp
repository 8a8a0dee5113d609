#include "workers/connection_log.hpp"

#include <linux/vm_sockets.h>
#include <netinet/in.h>

namespace pfp::worker {

namespace {

bool from_vsock_side(WorkerKind k) {
    return kind_row(k).listen == ListenSide::vsock_like;
}

// "93.184.216.34:80" / "[2001:db8::1]:443": the socket address without any scheme.
std::string bare_inet(const SockAddr& a) {
    return format_sockaddr(a);
}

}  // namespace

std::string seed_address(const SockAddr& a, bool quoted) {
    if (a.family() == AF_VSOCK && a.len >= static_cast<socklen_t>(sizeof(sockaddr_vm))) {
        const auto* vm = reinterpret_cast<const sockaddr_vm*>(&a.storage);
        return "VsockAddr { cid: " + std::to_string(vm->svm_cid) +
               ", port: " + std::to_string(vm->svm_port) + " }";
    }
    std::string s = bare_inet(a);
    return quoted ? "\"" + s + "\"" : s;
}

std::string seed_endpoint(const Endpoint& e, bool quoted) {
    if (e.scheme == Scheme::tcp || e.scheme == Scheme::vsock) return seed_address(e.addr, quoted);
    std::string s = to_string(e);
    return quoted ? "\"" + s + "\"" : s;
}

std::unique_ptr<ConnectionLog> make_connection_log(WorkerKind kind, const Endpoint& listen,
                                                   const SockAddr& client, const Endpoint& dest,
                                                   const SockAddr* original_dst) {
    auto l = std::make_unique<ConnectionLog>();
    l->peer = format_sockaddr(client);
    if (from_vsock_side(kind)) {
        // The seeds print the vsock listener as "CID:PORT", not the peer.
        l->client = listen.scheme == Scheme::vsock ? "\"" + std::to_string(listen.cid) + ":" +
                                                         std::to_string(listen.port) + "\""
                                                   : "\"" + to_string(listen) + "\"";
    } else {
        l->client = seed_address(client, true);
    }
    l->upstream = seed_endpoint(dest, kind_row(kind).log.quote_upstream);
    if (original_dst) {
        std::string od = bare_inet(*original_dst);
        if (kind_row(kind).upstream == UpstreamTarget::original_port) {
            std::string ip = od.substr(0, od.rfind(':'));
            if (ip.size() > 1 && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
            l->original_dst = ", with original_dst=" + od + ", ip=" + ip +
                              ", port=" + od.substr(od.rfind(':') + 1) +
                              ", from inbound TCP stream";
        } else {
            l->original_dst = ", with original_dst=" + od + " from inbound TCP stream";
        }
    }
    return l;
}

std::string proxying_line(WorkerKind, const ConnectionLog& l) {
    return "Proxying to: " + l.upstream;
}

std::string copy_done_line(WorkerKind kind, const ConnectionLog& l, bool up) {
    const ConnectionLogStyle& style = kind_row(kind).log;
    const std::string from_side(style.from_side), to_side(style.to_side);
    if (up)
        return from_side + " to " + to_side + " IO copy done, from " + l.client + " to " +
               l.upstream + l.original_dst;
    return to_side + " to " + from_side + " IO copy done, from " + l.upstream + " to " + l.client +
           l.original_dst;
}

std::string connect_error_line(WorkerKind kind) {
    return "Error: failed to connect to " + std::string(kind_row(kind).log.connect_error) +
           " endpoint";
}

std::string header_error_line() {
    return "Error: Can't retrieve original_dst from vsock stream";
}

std::string statistics_line(const ConnectionLog& l, uint64_t up, uint64_t down, uint64_t up_delta,
                            uint64_t down_delta, double seconds) {
    auto rate = [seconds](uint64_t d) {
        return std::to_string(static_cast<uint64_t>(static_cast<double>(d) / seconds));
    };
    return "statistics: " + l.peer + " -> " + l.upstream + ": " + std::to_string(up) +
           " bytes sent (" + rate(up_delta) + " B/s), " + std::to_string(down) +
           " bytes received (" + rate(down_delta) + " B/s)";
}

}  // namespace pfp::worker
