// lossy-udp-relay: tests/support/lossy_udp_relay.hpp as a program, for bench/kcp.sh.
//
//   lossy-udp-relay --listen IP:PORT --target IP:PORT [--drop PCT] [--duplicate PCT]
//                   [--reorder PCT] [--seed N] [--max-flows N]
//
// Prints "ready PORT" on stdout once it listens; on SIGINT or SIGTERM prints its counters
// ("received N sent N dropped N duplicated N reordered N lost N flows N") and exits 0.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "tests/support/lossy_udp_relay.hpp"

namespace {

int usage(const char* why) {
    std::fprintf(stderr,
                 "lossy-udp-relay: %s\nusage: lossy-udp-relay --listen IP:PORT --target IP:PORT "
                 "[--drop PCT] [--duplicate PCT] [--reorder PCT] [--seed N] [--max-flows N]\n",
                 why);
    return 1;
}

bool percent(const std::string& s, double& out) {
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !(out >= 0 && out <= 100)) return false;
    out /= 100;
    return true;
}

bool whole(const std::string& s, uint64_t& out) {
    char* end = nullptr;
    out = std::strtoull(s.c_str(), &end, 10);
    return !s.empty() && *end == '\0' && s[0] != '-';
}

}  // namespace

int main(int argc, char** argv) {
    pfp::test::lossy::Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view name = argv[i];
        if (i + 1 >= argc) return usage(("missing value for " + std::string(name)).c_str());
        const std::string value = argv[++i];
        uint64_t n = 0;
        if (name == "--listen") {
            o.listen = value;
        } else if (name == "--target") {
            o.target = value;
        } else if (name == "--drop" || name == "--duplicate" || name == "--reorder") {
            double& p = name == "--drop" ? o.drop : name == "--duplicate" ? o.duplicate : o.reorder;
            if (!percent(value, p))
                return usage(("invalid " + std::string(name) + " '" + value + "': 0-100").c_str());
        } else if (name == "--seed" && whole(value, n)) {
            o.seed = n;
        } else if (name == "--max-flows" && whole(value, n) && n > 0) {
            o.max_flows = n;
        } else {
            return usage(("invalid option " + std::string(name) + " '" + value + "'").c_str());
        }
    }
    if (o.target.empty()) return usage("--target is required");
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before the relay's thread starts
    try {
        pfp::test::lossy::Relay relay(o);
        std::printf("ready %u\n", relay.port());
        std::fflush(stdout);
        int sig = 0;
        sigwait(&stop, &sig);
        const auto c = relay.counters();
        std::printf(
            "received %llu sent %llu dropped %llu duplicated %llu reordered %llu lost %llu "
            "flows %llu\n",
            static_cast<unsigned long long>(c.received), static_cast<unsigned long long>(c.sent),
            static_cast<unsigned long long>(c.dropped),
            static_cast<unsigned long long>(c.duplicated),
            static_cast<unsigned long long>(c.reordered), static_cast<unsigned long long>(c.lost),
            static_cast<unsigned long long>(c.flows));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
