// libFuzzer entry point for the endpoint grammar (policy, compatibility CLIs and logs share it).
// Only endpoint_error is an expected outcome; anything else escapes and aborts, and a canonical
// text that does not parse back to itself traps.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/endpoint.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

// parse(to_string(e)) must give the same canonical text (the header's promise).
void round_trip(const pfp::Endpoint& e) {
    const std::string text = pfp::to_string(e);
    const pfp::Endpoint again = pfp::parse_endpoint(text);  // must not throw
    check(pfp::to_string(again) == text);
    check(again.scheme == e.scheme && again.port == e.port && again.cid == e.cid);
    (void)pfp::format_sockaddr(e.addr);
    (void)e.family();
    (void)e.is_stream();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    std::optional<pfp::Endpoint> full;
    try {
        full = pfp::parse_endpoint(text);
    } catch (const pfp::endpoint_error& e) {
        check(std::string_view(e.what()).find('\n') == std::string_view::npos);
    }
    if (full) round_trip(*full);

    for (const pfp::Scheme assumed :
         {pfp::Scheme::tcp, pfp::Scheme::udp, pfp::Scheme::vsock, pfp::Scheme::unix_stream}) {
        std::optional<pfp::Endpoint> bare;
        try {
            bare = pfp::parse_endpoint_or_bare(text, assumed);
        } catch (const pfp::endpoint_error& e) {
            check(std::string_view(e.what()).find('\n') == std::string_view::npos);
        }
        if (bare) round_trip(*bare);
    }
    return 0;
}
