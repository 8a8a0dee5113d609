// libFuzzer entry point for the control socket's wire format (common/control_protocol.hpp).
// Requests come from any local user who can reach the socket: parsing one may only succeed or
// throw protocol_error with one printable line, and what parses must encode and parse back the
// same. Replies are read by pf-proxyctl under the same rules.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/control_protocol.hpp"

namespace {

using namespace pfp::control;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

void check_message(const protocol_error& e) {
    const std::string_view m = e.what();
    check(!m.empty() && m.size() < 512);
    for (const char c : m) check(c >= 0x20 && c < 0x7f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    try {
        const Request r = parse_request(in);
        check(in.size() <= kMaxRequestBytes);
        check(takes_proxy(r.command) != r.proxy.empty());
        const std::string line = encode_request(r);
        check(line.size() <= kMaxRequestBytes && line.back() == '\n');
        check(parse_request(line) == r);
    } catch (const protocol_error& e) {
        check_message(e);
    }
    try {
        const Response r = parse_response(in);
        const std::string line = encode_response(r);
        check(line.find('\n') == line.size() - 1);
        check(parse_response(line) == r);
    } catch (const protocol_error& e) {
        check_message(e);
    }
    return 0;
}
