#pragma once
// Reading a seed command's options with Boost.Program_options, with clap's rules and messages.
#include <boost/program_options.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "supervisor/compat/clap_text.hpp"

namespace pfp::compat {

// The options every command has.
inline constexpr OptSpec kUserOpt{0, "user", "USER",
                                  "pf-proxy: run as this user once the socket is open"};
inline constexpr OptSpec kHelpOpt{'h', "help", "", "Print help"};
inline constexpr OptSpec kVersionOpt{'V', "version", "", "Print version"};

// Option values by long name, in command-line order.
using Values = std::map<std::string, std::vector<std::string>, std::less<>>;

// Unix style without abbreviated long options: clap wants them spelled in full.
inline constexpr int kOptionStyle = boost::program_options::command_line_style::unix_style &
                                    ~boost::program_options::command_line_style::allow_guessing;

// The Program_options description of `specs` (no help text: clap_text.hpp writes that).
boost::program_options::options_description describe(const std::vector<OptSpec>& specs);

// Reads the options as clap does for the seeds: help and version win when they come first;
// unknown arguments, repeated options and missing required ones are errors.
std::variant<Finished, Values> read_options(std::string_view command,
                                            const std::vector<OptSpec>& specs,
                                            const std::vector<std::string>& args);

// The first value of option `name`, if given.
std::optional<std::string> value_of(const Values& v, std::string_view name);

}  // namespace pfp::compat
