// pf-proxyd: reads a policy, opens its sockets with the least privilege, hands each proxy's
// sockets to sandboxed workers and supervises them.
#include <boost/program_options.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "common/control_protocol.hpp"
#include "common/log.hpp"
#include "policy/parse.hpp"
#include "policy/psk.hpp"
#include "policy_schema.hpp"  // generated from schema/policy.schema.json
#include "supervisor/daemon.hpp"

namespace po = boost::program_options;
using namespace pfp;

namespace {

int run(int argc, char** argv) {
    po::options_description opts("Options");
    opts.add_options()("policy,p", po::value<std::string>(), "policy file (JSON)")(
        "check", "validate the policy and exit: 0 if valid, 1 with each error on stderr")(
        "worker", po::value<std::string>(), "worker binary (default: beside pf-proxyd)")(
        "control", po::value<std::string>(),
        ("control socket for pf-proxyctl (default: " + std::string(control::kDefaultSocketPath) +
         "; \"none\" for no socket)")
            .c_str())("print-schema", "print the policy's JSON Schema and exit")(
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
        std::cout << "Usage: pf-proxyd --policy FILE [--check] [--control PATH]\n\n" << opts;
        return 0;
    }
    if (vm.count("print-schema")) {
        std::cout << policy::kPolicySchema;
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
        // --check reads no keys: they are secrets of the running daemon, read at start and reload.
        if (!vm.count("check"))
            policy::load_psks(pol, [](const char* name) { return std::getenv(name); });
    } catch (const policy::policy_error& e) {
        for (const auto& d : e.diagnostics()) std::cerr << d.str() << "\n";
        return 1;
    }
    if (vm.count("check")) return 0;
    // Reloads read the same file even if something changes the working directory.
    std::error_code ec;
    if (auto abs = std::filesystem::absolute(path, ec); !ec) pol.path = abs.string();

    supervisor::DaemonOptions options;
    if (vm.count("worker")) options.worker_path = vm["worker"].as<std::string>();
    options.source = path;
    options.control_path = control::kDefaultSocketPath;
    if (vm.count("control")) {
        const std::string c = vm["control"].as<std::string>();
        options.control_path = c == "none" ? "" : c;
        options.control_required = true;  // asked for explicitly: not having it is an error
    }
    return supervisor::run_daemon(std::move(pol), options);
}

}  // namespace

int main(int argc, char** argv) {
    return run(argc, argv);
}
