// pf-proxyd: reads a policy, opens its sockets with the least privilege, hands each proxy's
// sockets to sandboxed workers and supervises them.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "common/log.hpp"
#include "policy/parse.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/privileges.hpp"
#include "supervisor/supervisor.hpp"

#ifndef PFPROXY_VERSION
#define PFPROXY_VERSION "unknown"
#endif

namespace po = boost::program_options;
using namespace pfp;

namespace {

std::string default_worker_path() {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto beside = self.parent_path() / "pf-proxy-worker";
        if (std::filesystem::exists(beside, ec)) return beside.string();
    }
    return std::string(PFPROXY_LIBEXECDIR) + "/pf-proxy-worker";
}

int run(int argc, char** argv) {
    po::options_description opts("Options");
    opts.add_options()("policy,p", po::value<std::string>(), "policy file (JSON)")(
        "check", "validate the policy and exit: 0 if valid, 1 with each error on stderr")(
        "worker", po::value<std::string>(), "worker binary (default: beside pf-proxyd)")(
        "version,V", "print the version and exit")("help,h", "print this help and exit");
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "pf-proxyd: " << e.what() << " (see pf-proxyd --help)\n";
        return 1;
    }
    if (vm.count("help")) {
        std::cout << "Usage: pf-proxyd --policy FILE [--check]\n\n" << opts;
        return 0;
    }
    if (vm.count("version")) {
        std::cout << "pf-proxyd " PFPROXY_VERSION "\n";
        return 0;
    }
    if (!vm.count("policy")) {
        std::cerr << "pf-proxyd: missing --policy FILE (see pf-proxyd --help)\n";
        return 1;
    }
    const std::string path = vm["policy"].as<std::string>();
    policy::Policy pol;
    try {
        pol = policy::load_policy(path);
    } catch (const policy::policy_error& e) {
        for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
        return 1;
    }
    if (vm.count("check")) return 0;

    try {
        std::optional<supervisor::Identity> identity;
        if (pol.user)
            identity = supervisor::resolve_identity(*pol.user, pol.group);
        else if (::geteuid() == 0)
            log::warning("running as root: set \"user\" in ", path, " to drop to a system user");
        const std::string worker =
            vm.count("worker") ? vm["worker"].as<std::string>() : default_worker_path();
        if (::access(worker.c_str(), X_OK) != 0)
            throw std::runtime_error("worker binary " + worker + " is not executable");

        supervisor::Privileges privs(supervisor::caps_to_open(pol), identity);
        std::vector<unique_fd> listeners;
        for (const auto& p : pol.proxies) {
            listeners.push_back(supervisor::open_listener(p, privs));
            log::info("proxy \"", p.name, "\": ", kind_name(p.kind), " ", to_string(p.listen),
                      " -> ", to_string(p.upstream), ", ", p.workers, " worker(s)");
        }
        privs.settle(supervisor::caps_to_keep(pol));
        log::notice("pf-proxyd " PFPROXY_VERSION " running ", pol.proxies.size(), " proxies from ",
                    path, " as uid ", ::getuid());
        supervisor::Supervisor sup(std::move(pol), std::move(listeners), worker);
        return sup.run();
    } catch (const std::exception& e) {
        log::error(e.what());
        return 1;
    }
}

}  // namespace

int main(int argc, char** argv) {
    return run(argc, argv);
}
