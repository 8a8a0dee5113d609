// The kind table is the one place a kind is defined: every row must have what the rest of the
// program reads from it — a policy entry that derives to it, a sandbox profile built from its
// columns, a worker body for its family that accepts the fds the supervisor builds for it, and
// its section in docs/security.md. A row without one of them fails here.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "common/event_loop.hpp"
#include "common/worker_kind.hpp"
#include "policy/parse.hpp"
#include "supervisor/handover_builder.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/socket_factory.hpp"
#include "workers/handover.hpp"
#include "workers/sandbox.hpp"
#include "workers/worker_body.hpp"

namespace pfp {
namespace {

std::string read_file(const std::string& rel) {
    std::ifstream f(std::string(PFPROXY_SOURCE_DIR) + "/" + rel);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// A listener endpoint of the row's side that any test process can bind.
std::string listen_text(const KindRow& row) {
    if (row.listen == ListenSide::tcp) return "tcp:127.0.0.1:9000";
    if (row.listen == ListenSide::udp) return "udp:127.0.0.1:9000";
    if (row.listen == ListenSide::nfqueue) return "nfqueue:9000";
    return "vsock:any:9000";
}

std::string upstream_text(UpstreamTarget target) {
    switch (target) {
        case UpstreamTarget::tcp:
            return "tcp:127.0.0.1:9001";
        case UpstreamTarget::vsock_like:
            return "vsock:3:9001";
        case UpstreamTarget::original_port:
            return "vsock:3:original-port";
        case UpstreamTarget::destination_header:
            return "destination-header";
        case UpstreamTarget::original_destination:
            return "original-destination";
        case UpstreamTarget::base_address:
            return "tcp:10.1.0.0:9001";
        case UpstreamTarget::udp:
            return "udp:127.0.0.1:9001";
        case UpstreamTarget::raw:
            return "raw:route";
    }
    return "";
}

// The policy entry the row's derivation columns describe.
std::string entry_json(const KindRow& row, const std::string& listen, UpstreamTarget target) {
    std::string e = R"({"name": "k", "listen": ")" + listen + R"(", "upstream": ")" +
                    upstream_text(target) + "\"";
    if (row.send_original_destination) e += R"(, "send_original_destination": true)";
    if (target == UpstreamTarget::base_address) e += R"(, "base_address": true)";
    if (client_chooses_destination(target)) e += R"(, "allow": ["0.0.0.0/0:*"])";
    if (row.tunnel) e += R"(, "tunnel": "kcp")";
    return R"({"proxies": [)" + e + "}]}";
}

TEST(KindTable, RowsAreInKindOrderWithUniqueNames) {
    std::set<std::string_view> names;
    ASSERT_EQ(kind_table().size(), kWorkerKindCount);
    for (size_t i = 0; i < kind_table().size(); ++i) {
        const KindRow& row = kind_table()[i];
        EXPECT_EQ(static_cast<size_t>(row.kind), i);
        EXPECT_TRUE(names.insert(row.name).second) << row.name;
        EXPECT_EQ(kind_from_name(row.name), row.kind);
        EXPECT_FALSE(row.summary.empty()) << row.name;
        EXPECT_FALSE(row.fds.empty()) << row.name << ": a worker with no fd serves nothing";
        EXPECT_FALSE(row.capabilities_why.empty()) << row.name;
        EXPECT_FALSE(row.log.from_side.empty()) << row.name;
    }
}

// Each combination of the derivation columns makes one kind at most.
TEST(KindTable, DerivationColumnsAreUnambiguous) {
    for (size_t i = 0; i < kind_table().size(); ++i)
        for (size_t j = i + 1; j < kind_table().size(); ++j) {
            const KindRow& a = kind_table()[i];
            const KindRow& b = kind_table()[j];
            EXPECT_FALSE(a.listen == b.listen && a.upstream == b.upstream &&
                         a.send_original_destination == b.send_original_destination)
                << a.name << " and " << b.name << " are made by the same entries";
        }
}

TEST(KindTable, EveryRowHasAPolicyDerivation) {
    for (const KindRow& row : kind_table()) {
        std::vector<UpstreamTarget> targets{row.upstream};
        targets.insert(targets.end(), row.more_upstreams.begin(), row.more_upstreams.end());
        for (const UpstreamTarget target : targets) {
            const std::string text = entry_json(row, listen_text(row), target);
            policy::Policy p;
            try {
                p = policy::parse_policy(text, "row.json");
            } catch (const std::exception& e) {
                ADD_FAILURE() << row.name << ": " << text << " does not parse: " << e.what();
                continue;
            }
            ASSERT_EQ(p.proxies.size(), 1u);
            EXPECT_EQ(kind_name(p.proxies[0].kind), row.name) << text;
        }
    }
}

TEST(KindTable, EveryRowHasASandboxProfileFromItsColumns) {
    for (const KindRow& row : kind_table()) {
        const sandbox::Profile& p = sandbox::profile_for(row.kind);
        EXPECT_EQ(p.kind, row.kind);
        EXPECT_EQ(sandbox::capability_mask(p.capabilities),
                  sandbox::capability_mask(row.capabilities))
            << row.name;
        // socket() may create exactly the row's upstream domains.
        std::set<uint64_t> domains;
        for (const auto& r : p.rules)
            if (r.name == "socket" && r.scope == row.name)
                domains.insert(r.arg_values.begin(), r.arg_values.end());
        std::set<uint64_t> expected(row.upstream_domains.begin(), row.upstream_domains.end());
        EXPECT_EQ(domains, expected) << row.name;
        bool original_dst = false;
        for (const auto& r : p.rules)
            if (r.name == "getsockopt" && r.arg2_index == 2 &&
                r.arg2_values == std::vector<uint64_t>{80})
                original_dst = true;
        EXPECT_EQ(original_dst, reads_original_dst(row)) << row.name;
    }
}

TEST(KindTable, EveryRowIsInTheDocs) {
    const std::string security = read_file("docs/security.md");
    const std::string architecture = read_file("docs/architecture.md");
    for (const KindRow& row : kind_table()) {
        EXPECT_NE(security.find("<!-- profile:" + std::string(row.name) + " -->"),
                  std::string::npos)
            << "docs/security.md has no profile table for " << row.name;
        EXPECT_NE(architecture.find("| `" + std::string(row.name) + "` |"), std::string::npos)
            << "docs/architecture.md's kind table has no row for " << row.name;
    }
}

// The supervisor's side (socket factory + handover builder) and the worker's side (verify_fds +
// the family's factory) agree for every row: the real sockets, in process.
TEST(KindTable, EveryRowHasAWorkerBodyForTheFdsTheSupervisorBuilds) {
    for (const KindRow& row : kind_table()) {
        // A TCP listener on a port the kernel picks; a vsock-like one as an abstract socket.
        std::string listen =
            "unix:@pfp-kind-" + std::to_string(::getpid()) + "-" + std::string(row.name);
        if (row.listen == ListenSide::tcp || row.listen == ListenSide::udp) {
            const bool udp = row.listen == ListenSide::udp;
            unique_fd probe(::socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0));
            SockAddr a = parse_endpoint("tcp:127.0.0.1:1").addr;
            reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = 0;
            ASSERT_EQ(::bind(probe.get(), a.get(), a.len), 0);
            ASSERT_EQ(::getsockname(probe.get(), a.get(), &a.len), 0);
            listen = (udp ? "udp:" : "tcp:") + format_sockaddr(a);
        }
        // A queue number no other test binds (binding needs root, which this suite runs as).
        if (row.listen == ListenSide::nfqueue)
            listen = "nfqueue:" + std::to_string(40000 + ::getpid() % 20000);
        policy::Policy pol =
            policy::parse_policy(entry_json(row, listen, row.upstream), "row.json");
        const policy::Proxy& proxy = pol.proxies.at(0);
        std::vector<unique_fd> fds;
        Endpoint bound = parse_endpoint(listen);
        for (FdRole role : row.fds) {
            supervisor::SocketRequest req;
            req.role = role;
            req.endpoint =
                role == FdRole::stream_listener ? bound : supervisor::fd_endpoint(proxy, role);
            fds.push_back(supervisor::open_socket(req, nullptr));
        }
        const Handover h = supervisor::build_handover(proxy, bound, 0, 1, std::chrono::seconds(1));
        ASSERT_EQ(Handover::from_json(h.to_json()), h) << row.name;
        EXPECT_NO_THROW(worker::verify_fds(h, fds)) << row.name;
        EventLoop loop;
        std::unique_ptr<worker::WorkerBody> body;
        EXPECT_NO_THROW(body = worker::make_worker_body(h, std::move(fds), loop)) << row.name;
        EXPECT_TRUE(body) << row.name;
    }
}

}  // namespace
}  // namespace pfp
