#include "policy/wording.hpp"

namespace pfp::policy::detail {

std::string quote(std::string_view s) {
    constexpr size_t kMax = 64;
    const bool cut = s.size() > kMax;
    if (cut) {
        size_t n = kMax;
        while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // whole chars
        s = s.substr(0, n);
    }
    std::string out = json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
    if (cut) out.insert(out.size() - 1, "...");
    return out;
}

std::string type_of(const json& v) {
    return v.type_name();
}

std::string value_of(const json& v) {
    if (v.is_string()) return quote(v.get_ref<const std::string&>());
    if (v.is_primitive()) return v.dump();
    return type_of(v);
}

std::string position_text(SourcePos pos) {
    return std::to_string(pos.line) + ":" + std::to_string(pos.column);
}

std::string one_of(std::span<const std::string_view> words) {
    std::string out;
    for (size_t i = 0; i < words.size(); ++i) {
        if (i > 0) out += i + 1 == words.size() ? " or " : ", ";
        out += quote(words[i]);
    }
    return out;
}

std::string_view article(Scheme s) {
    // "an fc-vsock", "an nfqueue", "an nflog": the names are read letter by letter.
    return s == Scheme::fc_vsock || s == Scheme::nfqueue || s == Scheme::nflog ? "an" : "a";
}

std::string scheme_list(std::span<const Scheme> schemes) {
    std::string out;
    for (const Scheme s : schemes) {
        if (!out.empty()) out += ", ";
        out += scheme_name(s);
    }
    return out;
}

std::string schemes_in_prose(std::span<const Scheme> schemes) {
    std::string out;
    for (size_t i = 0; i < schemes.size(); ++i) {
        out += i == 0                    ? std::string(article(schemes[i])) + " "
               : i + 1 == schemes.size() ? " or "
                                         : ", ";
        out += scheme_name(schemes[i]);
    }
    return out;
}

}  // namespace pfp::policy::detail
