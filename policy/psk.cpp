#include "policy/psk.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/unique_fd.hpp"
#include "policy/diagnostics.hpp"

namespace pfp::policy {
namespace {

constexpr size_t kPskBytes = 32;
// A key file is 64 hex digits and some whitespace; anything longer is not one.
constexpr size_t kMaxKeyFile = 4096;

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// The file's text, or a message saying why there is none.
std::string read_key_file(const std::string& path, std::string& error) {
    const unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
        error = "cannot open the PSK file " + path + ": " + std::strerror(errno);
        return {};
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        error = "cannot stat the PSK file " + path + ": " + std::strerror(errno);
        return {};
    }
    if (!S_ISREG(st.st_mode)) {
        error = "the PSK file " + path + " is not a regular file";
        return {};
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        error = "the PSK file " + path + " has mode " + mode +
                ": a key its group or others may read or write is refused (chmod 600 it)";
        return {};
    }
    std::string text;
    char buf[1024];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            error = "cannot read the PSK file " + path + ": " + std::strerror(errno);
            return {};
        }
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kMaxKeyFile) break;
    }
    ::explicit_bzero(buf, sizeof buf);
    return text;
}

}  // namespace

std::string decode_psk(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    if (text.size() != 2 * kPskBytes) return {};
    std::string key(kPskBytes, '\0');
    for (size_t i = 0; i < kPskBytes; ++i) {
        const int hi = hex_value(text[2 * i]);
        const int lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return {};
        key[i] = static_cast<char>(hi << 4 | lo);
    }
    return key;
}

void load_psks(Policy& policy, const GetEnv& getenv) {
    std::vector<Diagnostic> diags;
    const auto fail = [&](const Proxy& p, const char* key, std::string message) {
        diags.push_back(Diagnostic{policy.path, 0, 0, p.pointer + "/" + key,
                                   "proxy \"" + p.name + "\": " + std::move(message), ""});
    };
    for (Proxy& p : policy.proxies) {
        p.psk.clear();
        if (!p.psk_file.empty()) {
            std::string error;
            std::string text = read_key_file(p.psk_file, error);
            if (!error.empty()) {
                fail(p, "psk_file", std::move(error));
                continue;
            }
            p.psk = decode_psk(text);
            ::explicit_bzero(text.data(), text.size());
            if (p.psk.empty())
                fail(
                    p, "psk_file",
                    "the PSK file " + p.psk_file + " does not hold a 32-byte key as 64 hex digits");
        } else if (!p.psk_env.empty()) {
            const char* value = getenv(p.psk_env.c_str());
            if (value == nullptr) {
                fail(p, "psk_env", "the environment variable " + p.psk_env + " is not set");
                continue;
            }
            p.psk = decode_psk(value);
            if (p.psk.empty())
                fail(p, "psk_env",
                     "the environment variable " + p.psk_env +
                         " does not hold a 32-byte key as 64 hex digits");
        }
    }
    if (!diags.empty()) throw policy_error(std::move(diags));
}

}  // namespace pfp::policy
