// libFuzzer entry point for the policy parser: the policy file is untrusted input
// (docs/security.md, "Threat model"). Only policy_error is an expected outcome; any other exception
// escapes and aborts, and a broken invariant traps, so the fuzzer reports both.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "policy/parse.hpp"
#include "policy/source_map.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    // The source map normally sees only text nlohmann accepted; it must survive any bytes anyway.
    const pfp::policy::SourceMap map(text);
    for (const char* pointer : {"", "/proxies", "/proxies/0", "/proxies/0/name", "/a~1b~0"}) {
        const auto value = map.value(pointer);
        check(value.known() == (value.column > 0));
        (void)map.key(pointer);
    }
    (void)map.at_offset(size + 1);

    try {
        const pfp::policy::Policy policy = pfp::policy::parse_policy(text, "fuzz.json");
        check(!policy.proxies.empty());
        for (const auto& proxy : policy.proxies) {
            check(!proxy.name.empty() && proxy.name.size() <= 64);
            check(proxy.workers >= 1 && proxy.workers <= 64);
            check(proxy.restart.backoff_max >= proxy.restart.backoff_initial);
        }
    } catch (const pfp::policy::policy_error& e) {
        // Every diagnostic is one line, so --check output cannot be forged by the file.
        check(!e.diagnostics().empty());
        for (const auto& d : e.diagnostics()) {
            const std::string line = d.str();
            check(line.find('\n') == std::string::npos && line.find('\r') == std::string::npos);
            check(d.line >= 0 && (d.line == 0) == (d.column == 0));
            // Only whole-file diagnostics lack a position; anything else without one means the
            // source map and nlohmann disagree about the text.
            check(d.line > 0 || d.message.starts_with("too many errors") ||
                  d.message.starts_with("the policy is larger"));
        }
    }
    return 0;
}
