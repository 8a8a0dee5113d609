#pragma once
// The daemon status the per-family status tests render: an idle tcp-forward proxy "web" beside
// the family's own proxy, so each output shows that family's lines next to a stream proxy's.
#include <string>

#include "supervisor/status.hpp"

namespace pfp::supervisor {

inline ProxyStatus running_proxy(std::string name, std::string kind, std::string listen,
                                 std::string upstream) {
    ProxyStatus p;
    p.name = std::move(name);
    p.kind = std::move(kind);
    p.listen = std::move(listen);
    p.upstream = std::move(upstream);
    p.state = "running";
    return p;
}

inline DaemonStatus status_beside_web(ProxyStatus other) {
    DaemonStatus s;
    s.version = "0.1.0";
    s.pid = 1;
    s.policy = "p.json";
    s.state = "running";
    s.proxies = {running_proxy("web", "tcp-forward", "tcp:127.0.0.1:80", "tcp:127.0.0.1:81"),
                 std::move(other)};
    return s;
}

}  // namespace pfp::supervisor
