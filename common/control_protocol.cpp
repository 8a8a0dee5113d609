#include "common/control_protocol.hpp"

#include <algorithm>
#include <array>

#include "common/text.hpp"

namespace pfp::control {
namespace {

using json = nlohmann::json;

constexpr std::array<Command, 5> kCommands{Command::status, Command::reload, Command::restart,
                                           Command::stop, Command::start};

// A value from the request, quoted and escaped (pfp::quote keeps the message on one line)
// and cut, so that a 4 KiB name does not become a 4 KiB log line.
std::string shown(std::string_view s) {
    constexpr size_t kMax = 64;
    if (s.size() <= kMax) return quote(s);
    std::string out = quote(s.substr(0, kMax));
    out.insert(out.size() - 1, "...");
    return out;
}

// The proxy name rule of the policy (docs/policy.md, `name`).
bool valid_proxy_name(std::string_view s) {
    const auto alnum = [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    };
    if (s.empty() || s.size() > 64 || !alnum(s.front())) return false;
    return std::all_of(s.begin(), s.end(),
                       [&](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

[[noreturn]] void reject(const std::string& why) {
    throw protocol_error(why);
}

// nlohmann keeps the last of repeated members silently; a request that says two things is
// refused instead of being read as either.
json parse_object_without_repeats(std::string_view text, const char* what) {
    std::vector<std::string> top_keys;
    const json::parser_callback_t no_repeats = [&](int depth, json::parse_event_t event,
                                                   json& parsed) {
        if (event == json::parse_event_t::key && depth == 1) {
            const auto& key = parsed.get_ref<const std::string&>();
            if (std::find(top_keys.begin(), top_keys.end(), key) != top_keys.end())
                reject(std::string("repeated member ") + shown(key) + " in the " + what);
            top_keys.push_back(key);
        }
        return true;
    };
    json j;
    try {
        j = json::parse(text.begin(), text.end(), no_repeats);
    } catch (const json::parse_error& e) {
        reject(std::string("the ") + what + " is not valid JSON (error at byte " +
               std::to_string(e.byte) + ")");
    } catch (const json::exception&) {  // out_of_range: a number such as 1e400
        reject(std::string("the ") + what + " is not valid JSON (a number is out of range)");
    }
    if (!j.is_object())
        reject(std::string("the ") + what + " must be a JSON object, got " + j.type_name());
    return j;
}

const std::string& string_member(const json& j, const char* key, const char* what) {
    const json& v = j.at(key);
    if (!v.is_string())
        reject(std::string("member \"") + key + "\" of the " + what + " must be a string, got " +
               v.type_name());
    return v.get_ref<const std::string&>();
}

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string_view command_name(Command c) {
    switch (c) {
        case Command::status:
            return "status";
        case Command::reload:
            return "reload";
        case Command::restart:
            return "restart";
        case Command::stop:
            return "stop";
        case Command::start:
            return "start";
    }
    return "?";
}

bool takes_proxy(Command c) {
    return c == Command::restart || c == Command::stop || c == Command::start;
}

std::string encode_request(const Request& r) {
    json j;
    j["command"] = std::string(command_name(r.command));
    if (takes_proxy(r.command)) {
        if (!valid_proxy_name(r.proxy)) reject("invalid proxy name " + shown(r.proxy));
        j["proxy"] = r.proxy;
    } else if (!r.proxy.empty()) {
        reject("command \"" + std::string(command_name(r.command)) + "\" takes no proxy");
    }
    return dump(j) + "\n";
}

Request parse_request(std::string_view line) {
    if (line.size() > kMaxRequestBytes)
        reject("request too long: more than " + std::to_string(kMaxRequestBytes) + " bytes");
    if (const size_t nl = line.find('\n'); nl != std::string_view::npos) {
        if (nl + 1 != line.size()) reject("more than one line in the request");
        line.remove_suffix(1);
    }
    const json j = parse_object_without_repeats(line, "request");
    for (const auto& [key, value] : j.items()) {
        if (key != "command" && key != "proxy")
            reject("unknown member " + shown(key) +
                   " in the request (expected \"command\" and, for restart, stop and start, "
                   "\"proxy\")");
    }
    if (!j.contains("command")) reject("missing member \"command\" in the request");
    const std::string& name = string_member(j, "command", "request");
    const auto it = std::find_if(kCommands.begin(), kCommands.end(),
                                 [&](Command c) { return command_name(c) == name; });
    if (it == kCommands.end())
        reject("unknown command " + shown(name) +
               " (expected status, reload, restart, stop or start)");
    Request r;
    r.command = *it;
    const std::string command = "command \"" + name + "\"";
    if (!takes_proxy(r.command)) {
        if (j.contains("proxy")) reject(command + " takes no member \"proxy\"");
        return r;
    }
    if (!j.contains("proxy")) reject(command + " needs member \"proxy\" (a proxy name)");
    r.proxy = string_member(j, "proxy", "request");
    if (!valid_proxy_name(r.proxy))
        reject("invalid proxy name " + shown(r.proxy) +
               ": expected 1-64 characters [A-Za-z0-9_.-] starting with a letter or digit");
    return r;
}

std::string encode_response(const Response& r) {
    std::string out = "{\"ok\":";
    if (r.ok) {
        out += "true,\"message\":" + dump(r.message);
        if (r.status) out += ",\"status\":" + dump(*r.status);
    } else {
        out += "false,\"error\":" + dump(r.error) + ",\"errors\":" + dump(r.errors);
    }
    return out + "}\n";
}

Response parse_response(std::string_view text) {
    constexpr const char* kWhat = "reply";
    const json j = parse_object_without_repeats(text, kWhat);
    Response r;
    if (!j.contains("ok")) reject("missing member \"ok\" in the reply");
    if (!j.at("ok").is_boolean())
        reject(std::string("member \"ok\" of the reply must be a boolean, got ") +
               j.at("ok").type_name());
    r.ok = j.at("ok").get<bool>();
    if (r.ok) {
        if (j.contains("message")) r.message = string_member(j, "message", kWhat);
        if (j.contains("status")) {
            if (!j.at("status").is_object())
                reject(std::string("member \"status\" of the reply must be an object, got ") +
                       j.at("status").type_name());
            r.status = j.at("status");
        }
        return r;
    }
    if (!j.contains("error")) reject("missing member \"error\" in a failed reply");
    r.error = string_member(j, "error", kWhat);
    if (j.contains("errors")) {
        const json& errors = j.at("errors");
        if (!errors.is_array())
            reject(std::string("member \"errors\" of the reply must be an array, got ") +
                   errors.type_name());
        for (const json& e : errors) {
            if (!e.is_string())
                reject(std::string("member \"errors\" of the reply must hold strings, got ") +
                       e.type_name());
            r.errors.push_back(e.get<std::string>());
        }
    }
    return r;
}

}  // namespace pfp::control
