// The QEMU guest tests (tests/vm) build their policies in code and run only inside the guest, so a
// policy rule they break would surface there alone. This reads their sources: every proxy(...)
// entry whose upstream the client chooses must carry an allow list (deny by default), and the
// policy builder they share must produce entries the parser accepts.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "policy/parse.hpp"

namespace pfp {
namespace {

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// The text of the call starting at `open` (the '('), through its matching ')'.
std::string call_text(const std::string& src, size_t open) {
    int depth = 0;
    bool quoted = false;
    for (size_t i = open; i < src.size(); ++i) {
        const char c = src[i];
        if (c == '\\' && quoted) {
            ++i;
            continue;
        }
        if (c == '"') quoted = !quoted;
        if (quoted) continue;
        if (c == '(') ++depth;
        if (c == ')' && --depth == 0) return src.substr(open, i - open + 1);
    }
    return src.substr(open);
}

TEST(VmPolicies, ClientChosenUpstreamsCarryAnAllowList) {
    int checked = 0;
    for (const auto& e :
         std::filesystem::directory_iterator(std::string(PFPROXY_SOURCE_DIR) + "/tests/vm")) {
        if (e.path().extension() != ".cpp") continue;
        const std::string src = read_file(e.path());
        for (size_t at = src.find("proxy("); at != std::string::npos;
             at = src.find("proxy(", at + 1)) {
            if (at > 0 &&
                (std::isalnum(static_cast<unsigned char>(src[at - 1])) || src[at - 1] == '_'))
                continue;
            const std::string call = call_text(src, at + 5);
            if (call.find("\"destination-header\"") == std::string::npos &&
                call.find("\"original-destination\"") == std::string::npos)
                continue;
            ++checked;
            EXPECT_NE(call.find("\\\"allow\\\""), std::string::npos)
                << e.path().filename().string() << ": " << call;
        }
    }
    EXPECT_GE(checked, 2) << "the guest tests' destination-header proxies were not found";
}

// What tests/vm/guest_support.cpp's proxy() and policy() write for the transparent pair.
TEST(VmPolicies, TheGuestTestsTransparentPairParses) {
    const std::string text =
        R"({"proxies": [{"name": "egress", "listen": "tcp:127.0.0.1:1200", )"
        R"("upstream": "vsock:1:1200", "send_original_destination": true}, )"
        R"({"name": "egress-host", "listen": "vsock:any:1200", "upstream": "destination-header", )"
        R"("allow": ["127.0.0.1:8080"], "log_connections": true, "header": "standard"}]})";
    EXPECT_NO_THROW(policy::parse_policy(text, "guest.json"));
}

}  // namespace
}  // namespace pfp
