#include "supervisor/metrics_server.hpp"

#include <linux/capability.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "common/log.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/status.hpp"

namespace pfp::supervisor {
namespace {

constexpr int kBacklog = 64;

// RFC 9110 token characters (methods, header names).
bool is_token(std::string_view s) {
    static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               kExtra.find(c) != std::string_view::npos;
    });
}

bool is_target(std::string_view s) {
    return !s.empty() && s.front() == '/' && std::all_of(s.begin(), s.end(), [](char c) {
        return static_cast<unsigned char>(c) > 0x20 && c != 0x7f;
    });
}

struct Reply {
    int code;
    const char* reason;
};
constexpr Reply kOk{200, "OK"};
constexpr Reply kBadRequest{400, "Bad Request"};
constexpr Reply kNotFound{404, "Not Found"};
constexpr Reply kMethodNotAllowed{405, "Method Not Allowed"};
constexpr Reply kTooLarge{431, "Request Header Fields Too Large"};
constexpr Reply kServerError{500, "Internal Server Error"};

std::string http(Reply r, std::string_view content_type, std::string_view body, bool head = false,
                 std::string_view extra_headers = "") {
    std::string out = "HTTP/1.1 " + std::to_string(r.code) + " " + r.reason + "\r\n";
    out += "Content-Type: " + std::string(content_type) + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    out += extra_headers;
    out += "Connection: close\r\n\r\n";
    if (!head) out += body;
    return out;
}

std::string error(Reply r, bool head = false, std::string_view extra_headers = "") {
    return http(r, "text/plain; charset=utf-8",
                std::to_string(r.code) + " " + std::string(r.reason) + "\n", head, extra_headers);
}

// The next line of the request head (without its "\r\n" or "\n"), consumed from `rest`.
std::string_view next_line(std::string_view& rest) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    return line;
}

struct RequestLine {
    std::string_view method, target, version;
};

// "METHOD SP TARGET SP HTTP/1.x", then header fields of the form "name: value". nullopt if
// anything is malformed.
std::optional<RequestLine> parse_head(std::string_view head) {
    std::string_view line = next_line(head);
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return std::nullopt;
    RequestLine r{line.substr(0, sp1), line.substr(sp1 + 1, sp2 - sp1 - 1), line.substr(sp2 + 1)};
    if (!is_token(r.method) || !is_target(r.target)) return std::nullopt;
    if (r.version != "HTTP/1.0" && r.version != "HTTP/1.1") return std::nullopt;
    while (!head.empty()) {
        const std::string_view field = next_line(head);
        if (field.empty()) break;  // the blank line that ends the head
        const size_t colon = field.find(':');
        // No whitespace before the colon, no obsolete line folding (RFC 9112, 5.1 and 5.2).
        if (colon == std::string_view::npos || !is_token(field.substr(0, colon)))
            return std::nullopt;
    }
    return r;
}

}  // namespace

std::set<int> metrics_caps(const Endpoint& e) {
    return capabilities_to_open(FdRole::stream_listener, e);
}

unique_fd open_metrics_listener(const Endpoint& e, const Privileges* privs,
                                const SocketFileAccess& access) {
    const std::string what = "metrics endpoint " + to_string(e);
    const auto fail = [&](const std::string& call, int err) {
        std::string msg = what + ": " + call;
        if (err != 0) msg += std::string(": ") + std::strerror(err);
        if (err == EACCES && needs_bind_service(e))
            msg += " (a port below " + std::to_string(unprivileged_port_start()) +
                   " needs CAP_NET_BIND_SERVICE)";
        throw std::runtime_error(msg);
    };
    if (e.scheme == Scheme::unix_stream)
        return listen_socket_file(e.path, access, privs, "metrics endpoint", kBacklog);
    if (e.scheme != Scheme::tcp) fail("only tcp: and unix: endpoints can serve metrics", 0);
    try {
        SocketRequest req;
        req.endpoint = e;
        req.backlog = kBacklog;
        return open_socket(req, privs);
    } catch (const socket_error& err) {
        fail(err.call, err.err);
    }
    return {};  // not reached: fail() throws
}

MetricsServer::MetricsServer(EventLoop& loop, unique_fd listener, ControlHandler& handler,
                             RequestServer::Limits limits)
    : handler_(handler), server_(loop, std::move(listener), limits, *this) {}

RequestProtocol::Admission MetricsServer::admit(int fd) {
    // A unix: endpoint knows its client's pid: workers are refused, as on the control socket.
    ucred cred{};
    socklen_t cred_len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0 && cred.pid > 0 &&
        handler_.is_worker(cred.pid)) {
        log::warning("metrics: refused worker process ", cred.pid,
                     ": workers never read the metrics");
        return {"worker " + std::to_string(cred.pid),
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"};
    }
    SockAddr peer;
    peer.len = sizeof peer.storage;
    if (::getpeername(fd, peer.get(), &peer.len) < 0) return {"metrics client", std::nullopt};
    return {"metrics client " + format_sockaddr(peer), std::nullopt};
}

size_t MetricsServer::request_length(std::string_view received) const {
    // The head ends with an empty line; bare "\n" line ends are accepted too (RFC 9112, 2.2).
    const size_t crlf = received.find("\r\n\r\n");
    const size_t lf = received.find("\n\n");
    const size_t end = std::min(crlf == std::string_view::npos ? crlf : crlf + 4,
                                lf == std::string_view::npos ? lf : lf + 2);
    return end == std::string_view::npos ? 0 : end;
}

std::string MetricsServer::too_long() const {
    return error(kTooLarge);
}

std::string MetricsServer::respond(const std::string& peer, std::string_view request,
                                   bool complete) {
    if (!complete) return error(kBadRequest);
    const auto r = parse_head(request);
    if (!r) return error(kBadRequest);
    const bool head = r->method == "HEAD";
    if (r->target.substr(0, r->target.find('?')) != "/metrics") return error(kNotFound, head);
    if (r->method != "GET" && !head) return error(kMethodNotAllowed, false, "Allow: GET, HEAD\r\n");
    try {
        return http(kOk, "text/plain; version=0.0.4; charset=utf-8",
                    render_prometheus(handler_.status()), head);
    } catch (const std::exception& e) {
        log::error("metrics: status for ", peer, " failed: ", e.what());
        return error(kServerError, head);
    }
}

}  // namespace pfp::supervisor
