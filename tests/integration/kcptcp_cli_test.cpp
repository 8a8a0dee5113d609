// portfwd's kcptcp-client and kcptcp-server command lines, run through their links: -h in the
// seed's layout, every bad option, address and key as one line on stderr with exit status 1
// (nothing started, no key ever repeated).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <string>
#include <utility>
#include <vector>

#include "harness.hpp"

using namespace pfp::test;

namespace {

std::string tool(const std::string& name) {
    return bin_dir() + "/" + name;
}

const std::string kKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string help_text(const std::string& command, const std::string& addresses,
                      const std::string& notes) {
    return "Usage:\n  " + command + " [options] " + addresses +
           "\n\n"
           "Options:\n"
           "  -d                 run in background (daemonize)\n"
           "  -p <pidfile>       write PID to file\n"
           "  -r                 set SO_REUSEADDR on listener socket\n"
           "  -R                 set SO_REUSEPORT on listener socket\n"
           "  -6                 for IPv6 listener, set IPV6_V6ONLY\n"
           "  -S <bytes>         SO_RCVBUF/SO_SNDBUF size (default build-time)\n"
           "  -M <mtu>           KCP MTU (default 1350; tune to avoid IP fragmentation)\n"
           "  -K <hex>           32-byte PSK in hex (ChaCha20-Poly1305); enables encryption\n"
           "  -h                 show help\n"
           "\n"
           "Also accepted (the deployed tool's spellings and KCP tuning):\n"
           "  -b <bytes>         the same as -S\n"
           "  -A <0|1>           KCP nodelay (default 1)\n"
           "  -n <0|1>           the same as -A\n"
           "  -I <ms>            KCP interval in ms (default 10)\n"
           "  -X <n>             KCP fast resend (default 2)\n"
           "  -C <0|1>           KCP no congestion control (default 1)\n"
           "  -w <sndwnd>        KCP send window in packets (default 1024)\n"
           "  -W <rcvwnd>        KCP recv window in packets (default 1024)\n"
           "  -N                 enable TCP_NODELAY on TCP sockets (always on here)\n"
           "\n"
           "pf-proxy additions (a key given with -K is visible in ps):\n"
           "  --psk-file <path>  read the PSK (64 hex digits) from a file only its owner can read\n"
           "  --psk-env <name>   read the PSK (64 hex digits) from this environment variable\n"
           "\n"
           "Notes:\n" +
           notes;
}

TEST(KcptcpCli, HelpIsTheSeedsWithTheAcceptedExtras) {
    const std::string client = help_text(
        "kcptcp-client", "<local_tcp_addr:port> <remote_udp_addr:port>",
        "  - Listens on a local TCP address and forwards streams over UDP using KCP.\n"
        "  - AEAD encryption is enabled only when a PSK is given on both client and server.\n");
    const std::string server =
        help_text("kcptcp-server", "<local_udp_addr:port> <target_tcp_addr:port>",
                  "  - Listens on a UDP address, accepts KCP sessions, and bridges to a target TCP "
                  "service.\n"
                  "  - AEAD requires the same PSK as the client for handshakes to succeed.\n");
    // -h wins wherever it is, even over a bad address, as getopt reads every option first.
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"-h"}, {"127.0.0.1:1", "-h"}, {"-dh"}, {"nonsense", "-h", "more"}}) {
        std::vector<std::string> argv = {tool("kcptcp-client")};
        argv.insert(argv.end(), args.begin(), args.end());
        CommandResult r = run_command(argv);
        EXPECT_EQ(WEXITSTATUS(r.status), 0);
        EXPECT_EQ(r.output, client);
        argv[0] = tool("kcptcp-server");
        r = run_command(argv);
        EXPECT_EQ(WEXITSTATUS(r.status), 0);
        EXPECT_EQ(r.output, server);
    }
    // The multi-call binary runs them by name too.
    const CommandResult r = run_command({tool("pf-proxy-compat"), "kcptcp-server", "-h"});
    EXPECT_EQ(r.output, server);
}

TEST(KcptcpCli, EveryMistakeIsOneLineAndExitOne) {
    const std::string bad_key = kKey.substr(0, 63) + "g";
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"kcptcp-client", "-x", "1", "2"}, "kcptcp-client: invalid option -- 'x'\n"},
        {{"kcptcp-client", "-dZ", "1", "2"}, "kcptcp-client: invalid option -- 'Z'\n"},
        {{"kcptcp-server", "--psk", "f", "1", "2"}, "kcptcp-server: unrecognized option '--psk'\n"},
        {{"kcptcp-server", "1", "2", "-M"}, "kcptcp-server: option requires an argument -- 'M'\n"},
        {{"kcptcp-server", "1", "2", "--psk-file"},
         "kcptcp-server: option '--psk-file' requires an argument\n"},
        {{"kcptcp-client", "2022"},
         "kcptcp-client: expected two addresses, got 1 (usage: kcptcp-client [options] "
         "<local_tcp_addr:port> <remote_udp_addr:port>)\n"},
        {{"kcptcp-server", "1", "2", "3"},
         "kcptcp-server: expected two addresses, got 3 (usage: kcptcp-server [options] "
         "<local_udp_addr:port> <target_tcp_addr:port>)\n"},
        {{"kcptcp-client", "example.com:2022", "127.0.0.1:4000"},
         "kcptcp-client: invalid local TCP address 'example.com:2022': expected a numeric "
         "address (or localhost) to listen on\n"},
        {{"kcptcp-client", "2022", "bad_name:4000"},
         "kcptcp-client: invalid remote UDP address 'bad_name:4000': expected HOST:PORT with a "
         "host name and a port 1-65535\n"},
        {{"kcptcp-server", "127.0.0.1:0", "127.0.0.1:22"},
         "kcptcp-server: invalid local UDP address '127.0.0.1:0': invalid endpoint "
         "\"udp:127.0.0.1:0\": port must be 1-65535\n"},
        {{"kcptcp-server", "4000", "127.0.0.1:99999"},
         "kcptcp-server: invalid target TCP address '127.0.0.1:99999': invalid endpoint "
         "\"tcp:127.0.0.1:99999\": port must be 1-65535\n"},
        {{"kcptcp-client", "2022", "127.0.0.1:4000", "-M", "1501"},
         "kcptcp-client: invalid -M '1501': expected an MTU 576-1500\n"},
        {{"kcptcp-client", "2022", "127.0.0.1:4000", "-S", "1k"},
         "kcptcp-client: invalid -S '1k': expected bytes 4096-1073741824\n"},
        {{"kcptcp-client", "2022", "127.0.0.1:4000", "-b", "100"},
         "kcptcp-client: invalid -S '100': expected bytes 4096-1073741824\n"},
        {{"kcptcp-client", "2022", "127.0.0.1:4000", "-n", "2"},
         "kcptcp-client: invalid -A '2': expected nodelay 0-1\n"},
        {{"kcptcp-client", "2022", "127.0.0.1:4000", "-I", "0"},
         "kcptcp-client: invalid -I '0': expected milliseconds 1-5000\n"},
        {{"kcptcp-server", "4000", "127.0.0.1:22", "-X", "-1"},
         "kcptcp-server: invalid -X '-1': expected a fast resend count 0-100\n"},
        {{"kcptcp-server", "4000", "127.0.0.1:22", "-C", "yes"},
         "kcptcp-server: invalid -C 'yes': expected no congestion control 0-1\n"},
        {{"kcptcp-server", "4000", "127.0.0.1:22", "-w", "0"},
         "kcptcp-server: invalid -w '0': expected a window in packets 1-65535\n"},
        {{"kcptcp-server", "4000", "127.0.0.1:22", "-W", "65536"},
         "kcptcp-server: invalid -W '65536': expected a window in packets 1-65535\n"},
        {{"kcptcp-server", "4000", "127.0.0.1:22", "-p", ""},
         "kcptcp-server: invalid -p '': expected a file name\n"},
        // A key is never repeated in a message: it may be a real key with one typo.
        {{"kcptcp-client", "2022", "127.0.0.1:4000", "-K", kKey.substr(1)},
         "kcptcp-client: invalid -K: expected 64 hex digits (a 32-byte key), got 63 "
         "characters\n"},
        {{"kcptcp-server", "-K" + bad_key, "4000", "127.0.0.1:22"},
         "kcptcp-server: invalid -K: expected 64 hex digits (a 32-byte key), character 64 is "
         "not a hex digit\n"},
        {{"kcptcp-server", "-K", kKey + "00", "4000", "127.0.0.1:22"},
         "kcptcp-server: invalid -K: expected 64 hex digits (a 32-byte key), got 66 "
         "characters\n"},
        {{"kcptcp-server", "-K", kKey, "--psk-file", "/k", "4000", "127.0.0.1:22"},
         "kcptcp-server: give the PSK once: -K, --psk-file or --psk-env, not several\n"},
        {{"kcptcp-client", "--psk-env=A", "--psk-file=/k", "2022", "127.0.0.1:4000"},
         "kcptcp-client: give the PSK once: -K, --psk-file or --psk-env, not several\n"},
        {{"kcptcp-client", "--psk-env", "1KEY", "2022", "127.0.0.1:4000"},
         "kcptcp-client: invalid --psk-env '1KEY': expected a variable name (letters, digits, "
         "_)\n"},
        {{"kcptcp-client", "--psk-file=", "2022", "127.0.0.1:4000"},
         "kcptcp-client: invalid --psk-file '': expected a file name\n"},
    };
    for (const auto& [args, message] : cases) {
        std::vector<std::string> argv = args;
        argv[0] = tool(argv[0]);
        const CommandResult r = run_command(argv);
        SCOPED_TRACE(message);
        EXPECT_EQ(WEXITSTATUS(r.status), 1);
        EXPECT_EQ(r.output, message);
        EXPECT_EQ(r.output.find(kKey.substr(8, 40)), std::string::npos);
    }
}

}  // namespace
