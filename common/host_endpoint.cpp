#include "common/host_endpoint.hpp"

#include <cctype>

namespace pfp {

bool valid_host_name(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty() || name.size() > 253) return false;
    bool last_all_digits = true;
    size_t start = 0;
    while (start <= name.size()) {
        size_t end = name.find('.', start);
        if (end == std::string_view::npos) end = name.size();
        const std::string_view label = name.substr(start, end - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        last_all_digits = true;
        for (const char c : label) {
            const auto u = static_cast<unsigned char>(c);
            if (!std::isalnum(u) && c != '-') return false;
            if (!std::isdigit(u)) last_all_digits = false;
        }
        start = end + 1;
    }
    return !last_all_digits;
}

std::optional<Endpoint> parse_host_endpoint(std::string_view text) {
    Scheme scheme;
    if (text.starts_with("tcp:")) {
        scheme = Scheme::tcp;
    } else if (text.starts_with("udp:")) {
        scheme = Scheme::udp;
    } else {
        return std::nullopt;
    }
    const std::string_view rest = text.substr(4);
    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    const std::string_view host = rest.substr(0, colon);
    const std::string_view port = rest.substr(colon + 1);
    if (!valid_host_name(host) || port.empty() || port.size() > 5) return std::nullopt;
    uint32_t n = 0;
    for (const char c : port) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + static_cast<uint32_t>(c - '0');
    }
    if (n == 0 || n > 65535) return std::nullopt;
    Endpoint e;
    e.scheme = scheme;
    e.host = std::string(host);
    e.port = n;
    return e;
}

}  // namespace pfp
