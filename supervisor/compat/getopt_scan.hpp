#pragma once
// The portfwd family's command lines (tcpfwd, udpfwd, kcptcp-client, kcptcp-server) were parsed
// by getopt/getopt_long: the option tables, the scan that follows getopt's rules and the help
// layout they share.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

struct Flag {
    char letter;
    const char* value;  // nullptr: a flag without a value
    const char* help;
};

struct LongFlag {
    const char* name;  // without the dashes
    const char* value;
    const char* help;
};

// One option as getopt saw it: its letter (a long option: its name), its value, and where the
// value stands (a key given on the command line is overwritten there).
struct GivenOption {
    std::string name;
    std::string value;
    size_t arg = 0;     // index in args of the word holding the value
    size_t offset = 0;  // where the value starts in that word
};

struct ScannedArgs {
    std::vector<std::string> positional;
    std::vector<GivenOption> options;  // in command-line order; the last of a repeat wins
    bool help = false;                 // -h was given
};

// getopt_long's rules: letters may be grouped (-dr), a value follows its letter or is the next
// word, long options take "--name VALUE" or "--name=VALUE", "--" ends the options, and the
// addresses may come anywhere. `flags` are searched in order. `stop_at_help`: -h ends the scan
// (a tool that printed its help and exited there); otherwise the scan goes on, so every option's
// place is known. Returns the first error in getopt's words ("invalid option -- 'x'").
std::variant<std::string, ScannedArgs> scan_getopt(const std::vector<std::string>& args,
                                                   std::span<const std::span<const Flag>> flags,
                                                   std::span<const LongFlag> long_flags,
                                                   bool stop_at_help);

// "  -p <pidfile>       write PID to file": the name padded to 19 columns, as the tools printed.
std::string help_line(std::string left, const char* help);
std::string help_line(const Flag& f);

// A usage error: the command's name, the reason, exit status 1.
Finished command_error(std::string_view command, const std::string& why);

// Decimal digits only (at most 10), within [min, max].
bool decimal_in(const std::string& s, uint64_t min, uint64_t max, uint64_t& out);

}  // namespace pfp::compat
