#pragma once
// The wire format of pf-proxyd's control socket (AF_UNIX SOCK_STREAM), shared by the daemon
// (supervisor/control_server.cpp) and pf-proxyctl.
//
//   client -> daemon: ONE request line, a JSON object + "\n", at most kMaxRequestBytes in all:
//       {"command":"status"}  {"command":"reload"}  {"command":"restart","proxy":"web"}
//       ("stop" and "start" take "proxy" too)
//   daemon -> client: ONE JSON object + "\n", then the daemon closes:
//       {"ok":true,"message":"...","status":{...}}      ("status" only with the status command)
//       {"ok":false,"error":"...","errors":["...",...]} ("errors" may be empty or absent)
//
// Requests come from whoever can reach the socket, so parsing them is strict and throws nothing
// but protocol_error with a one-line, printable message. Responses come from the daemon and are
// read more leniently: members a newer daemon may add are ignored.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pfp::control {

constexpr std::string_view kDefaultSocketPath = "/run/pf-proxy/control.sock";
constexpr size_t kMaxRequestBytes = 4096;  // the request line including its "\n"

class protocol_error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

enum class Command { status, reload, restart, stop, start };

std::string_view command_name(Command c);
bool takes_proxy(Command c);  // restart, stop, start

struct Request {
    Command command = Command::status;
    std::string proxy;  // for the commands that take one; else empty
    bool operator==(const Request&) const = default;
};

// One line: the JSON object and "\n". Throws protocol_error if the request is not one
// parse_request() accepts (a bad proxy name, a proxy where none is taken).
std::string encode_request(const Request& r);

// `line` is the request with or without its "\n". Rejects (protocol_error, one line): more than
// kMaxRequestBytes, anything after the "\n", invalid JSON, not an object, repeated members,
// members other than "command" and "proxy", an unknown command, a missing, mistyped or invalid
// proxy name, or a proxy for a command that takes none.
Request parse_request(std::string_view line);

struct Response {
    bool ok = false;
    std::string message;                   // ok: what happened
    std::string error;                     // !ok: why not
    std::vector<std::string> errors;       // !ok: details, e.g. each diagnostic of a refused reload
    std::optional<nlohmann::json> status;  // the status command: supervisor::to_json()
    bool operator==(const Response&) const = default;
};

// One line: the JSON object and "\n" (strings that are not valid UTF-8 are repaired, never
// refused, so a reply can always be written).
std::string encode_response(const Response& r);

// Throws protocol_error: not JSON, not an object, "ok" missing or not a boolean, a mistyped
// member, or no "error" in a failure.
Response parse_response(std::string_view text);

}  // namespace pfp::control
