#pragma once
// Text the seed tools print, in the formats of the Rust libraries they were written with: clap's
// usage, help and error messages, `{:?}` of strings and vsock addresses, anyhow's errors, and
// <u32 as FromStr>'s parse errors. Only text: reading the options is options.hpp.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/endpoint.hpp"
#include "supervisor/compat/seed_cli.hpp"

namespace pfp::compat {

// One option of a clap command: its flags, value name and help line.
struct OptSpec {
    char short_name = 0;  // 0: long only
    std::string_view long_name;
    std::string_view value_name;  // empty: a flag
    std::string_view help;
    bool required = false;
    bool repeatable = false;
};

// Rust's `{:?}` of a string, as the seeds print their address arguments: "0.0.0.0:3000".
std::string rust_debug(std::string_view s);

// Rust's `{:?}` of tokio_vsock::VsockAddr, or the quoted argument for a pf-proxy endpoint form.
std::string describe_vsock(const Endpoint& e, std::string_view text);

// Rust's io::Error display, the "Caused by" of the seeds' anyhow errors.
std::string os_error(int err);

// anyhow's `{:?}` of an error with one cause (none if empty), which is how the seeds' main()
// reports a failure.
std::string anyhow_error(std::string_view context, std::string_view cause);

// <u32 as FromStr>::from_str, as clap and the seeds' split_vsock use it: an optional '+', then
// decimal digits. The number, or the text of Rust's ParseIntError.
struct RustU32 {
    std::optional<uint32_t> value;
    std::string_view error;
};
RustU32 rust_parse_u32(std::string_view s);

// clap's name for an option in messages: "--vsock-addr <VSOCK_ADDR>".
std::string display(const OptSpec& o);

// "Usage: vsock-to-ip [OPTIONS] --vsock-addr <VSOCK_ADDR> --ip-addr <IP_ADDR>"
std::string usage_line(std::string_view command, const std::vector<OptSpec>& specs);

// The options table in clap's layout ("Options:" and one aligned row per option).
std::string options_table(const std::vector<OptSpec>& specs);

// What every command's help ends with: where the command's policy is described.
std::string_view help_footer();

// clap's -h text.
std::string help_text(std::string_view command, const std::vector<OptSpec>& specs);

// clap's "error: ..." for a bad command line, with the usage line if `with_usage`; exit status 1
// (clap exits 2, the seeds' documentation says 1).
Finished usage_error(std::string_view message, std::string_view command,
                     const std::vector<OptSpec>& specs, bool with_usage);

// clap's -V text: "COMMAND VERSION".
Finished version_text(std::string_view command);

}  // namespace pfp::compat
