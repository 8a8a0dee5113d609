#pragma once
// The Oyster outgoing raw tool's egress address: the IPv4 address of the first eth* or ens*
// interface (in the kernel's interface order), which the packets it injects must come from.
#include <optional>
#include <string>

namespace pfp::compat {

struct EgressAddress {
    std::string interface;
    std::string address;  // dotted quad
};

// nullopt when no such interface has an IPv4 address (or getifaddrs() fails).
std::optional<EgressAddress> detect_egress_address();

// The enclave's address as the incoming raw tool reads it at start: the first line of `path`,
// without surrounding white space. nullopt with `error` set when it cannot be read.
std::optional<std::string> read_enclave_address(const std::string& path, std::string& error);

}  // namespace pfp::compat
