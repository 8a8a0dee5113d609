// The control socket's wire format: strict requests with one-line errors, lenient replies.
#include "common/control_protocol.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pfp::control {
namespace {

std::string request_error(std::string_view line) {
    try {
        (void)parse_request(line);
    } catch (const protocol_error& e) {
        return e.what();
    }
    return "<valid>";
}

std::string response_error(std::string_view text) {
    try {
        (void)parse_response(text);
    } catch (const protocol_error& e) {
        return e.what();
    }
    return "<valid>";
}

TEST(ControlRequest, RoundTrips) {
    const std::vector<Request> requests = {{Command::status, ""},
                                           {Command::reload, ""},
                                           {Command::restart, "web"},
                                           {Command::stop, "api.v2"},
                                           {Command::start, std::string(64, 'x')}};
    for (const auto& r : requests) {
        const std::string line = encode_request(r);
        EXPECT_TRUE(line.ends_with('\n'));
        EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
        EXPECT_EQ(parse_request(line), r) << line;
    }
    EXPECT_EQ(encode_request({Command::restart, "web"}),
              "{\"command\":\"restart\",\"proxy\":\"web\"}\n");
}

TEST(ControlRequest, Accepts) {
    EXPECT_EQ(parse_request(R"({"command":"status"})"), (Request{Command::status, ""}));
    EXPECT_EQ(parse_request(" { \"proxy\" : \"w\" , \"command\" : \"stop\" } \n"),
              (Request{Command::stop, "w"}));
    // Exactly the limit, newline included.
    std::string line = R"({"command":"reload"})";
    line += std::string(kMaxRequestBytes - line.size() - 1, ' ') + "\n";
    EXPECT_EQ(line.size(), kMaxRequestBytes);
    EXPECT_EQ(parse_request(line).command, Command::reload);
}

TEST(ControlRequest, Rejects) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "the request is not valid JSON (error at byte 1)"},
        {"{\"command\":", "the request is not valid JSON (error at byte 12)"},
        {"{\"command\":\"status\"} x", "the request is not valid JSON (error at byte 22)"},
        {"{\"command\":\"\xff\"}", "the request is not valid JSON (error at byte 13)"},
        {R"({"command":"status","proxy":1e400})",
         "the request is not valid JSON (a number is out of range)"},
        {"[\"status\"]", "the request must be a JSON object, got array"},
        {"\"status\"", "the request must be a JSON object, got string"},
        {"{}", "missing member \"command\" in the request"},
        {R"({"command":5})", "member \"command\" of the request must be a string, got number"},
        {R"({"command":"explode"})",
         "unknown command \"explode\" (expected status, reload, restart, stop or start)"},
        {R"({"command":"STATUS"})",
         "unknown command \"STATUS\" (expected status, reload, restart, stop or start)"},
        {R"({"command":"status","verbose":true})",
         "unknown member \"verbose\" in the request (expected \"command\" and, for restart, stop "
         "and start, \"proxy\")"},
        {R"({"command":"status","command":"reload"})",
         "repeated member \"command\" in the request"},
        {R"({"command":"restart"})", "command \"restart\" needs member \"proxy\" (a proxy name)"},
        {R"({"command":"status","proxy":"web"})", "command \"status\" takes no member \"proxy\""},
        {R"({"command":"reload","proxy":null})", "command \"reload\" takes no member \"proxy\""},
        {R"({"command":"stop","proxy":["web"]})",
         "member \"proxy\" of the request must be a string, got array"},
        {R"({"command":"stop","proxy":""})",
         "invalid proxy name \"\": expected 1-64 characters [A-Za-z0-9_.-] starting with a "
         "letter or digit"},
        {R"({"command":"stop","proxy":"-web"})",
         "invalid proxy name \"-web\": expected 1-64 characters [A-Za-z0-9_.-] starting with a "
         "letter or digit"},
        {R"({"command":"stop","proxy":"a\u001b[31m"})",
         "invalid proxy name \"a\\x1b[31m\": expected 1-64 characters [A-Za-z0-9_.-] starting "
         "with a letter or digit"},
        {"{\"command\":\"stop\",\"proxy\":\"" + std::string(65, 'a') + "\"}",
         "invalid proxy name \"" + std::string(64, 'a') +
             "...\": expected 1-64 characters [A-Za-z0-9_.-] starting with a letter or digit"},
        {"{\"command\":\"status\"}\n{\"command\":\"reload\"}\n",
         "more than one line in the request"},
        {"{\"command\":\"status\"}\n\n", "more than one line in the request"},
        {std::string(kMaxRequestBytes + 1, ' '), "request too long: more than 4096 bytes"},
    };
    for (const auto& [line, message] : cases) EXPECT_EQ(request_error(line), message) << line;
}

TEST(ControlRequest, ErrorsAreOnePrintableLine) {
    std::vector<std::string> inputs = {std::string(4000, '['), std::string("{\"\0\":1}", 7),
                                       "{\"command\":\"a\\u0000b\"}", "{\"\xc3\xa9\":1}",
                                       "{\"command\":\"\\n\\r\"}"};
    for (int c = 0; c < 256; ++c) inputs.push_back(std::string(1, static_cast<char>(c)));
    for (const auto& in : inputs) {
        const std::string e = request_error(in);
        EXPECT_NE(e, "<valid>");
        for (const char c : e) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << e;
    }
}

TEST(ControlRequest, EncodeRefusesWhatParseWould) {
    EXPECT_THROW(encode_request({Command::restart, ""}), protocol_error);
    EXPECT_THROW(encode_request({Command::restart, "a b"}), protocol_error);
    EXPECT_THROW(encode_request({Command::status, "web"}), protocol_error);
}

TEST(ControlResponse, RoundTrips) {
    Response ok;
    ok.ok = true;
    ok.message = "pf-proxyd is running";
    ok.status = nlohmann::json{{"state", "running"}, {"proxies", nlohmann::json::array()}};
    Response refused;
    refused.error = "the policy has 2 errors";
    refused.errors = {"p.json:3:7: /proxies/0/workers: bad", "p.json:4:1: /x: unknown key"};
    Response bare;
    bare.error = "permission denied";
    for (const auto& r : {ok, refused, bare}) {
        const std::string line = encode_response(r);
        EXPECT_TRUE(line.ends_with("}\n"));
        EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
        EXPECT_EQ(parse_response(line), r) << line;
    }
    EXPECT_EQ(encode_response(bare),
              "{\"ok\":false,\"error\":\"permission denied\",\"errors\":[]}\n");
    Response done;
    done.ok = true;
    done.message = "reloaded";
    EXPECT_EQ(encode_response(done), "{\"ok\":true,\"message\":\"reloaded\"}\n");
}

TEST(ControlResponse, BadUtf8IsRepairedNotRefused) {
    Response r;
    r.error = "bad \xff byte";
    const Response back = parse_response(encode_response(r));
    EXPECT_EQ(back.error, "bad \xef\xbf\xbd byte");
}

TEST(ControlResponse, Reading) {
    EXPECT_EQ(parse_response(R"({"ok":true,"message":"m","future":1})").message, "m");
    EXPECT_FALSE(parse_response(R"({"ok":false,"error":"e"})").ok);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "the reply is not valid JSON (error at byte 1)"},
        {"[]", "the reply must be a JSON object, got array"},
        {R"({"ok":1e400})", "the reply is not valid JSON (a number is out of range)"},
        {"{}", "missing member \"ok\" in the reply"},
        {R"({"ok":1})", "member \"ok\" of the reply must be a boolean, got number"},
        {R"({"ok":false})", "missing member \"error\" in a failed reply"},
        {R"({"ok":false,"error":1})", "member \"error\" of the reply must be a string, got number"},
        {R"({"ok":false,"error":"e","errors":"x"})",
         "member \"errors\" of the reply must be an array, got string"},
        {R"({"ok":false,"error":"e","errors":[1]})",
         "member \"errors\" of the reply must hold strings, got number"},
        {R"({"ok":true,"status":[]})",
         "member \"status\" of the reply must be an object, got array"},
        {R"({"ok":true,"ok":false})", "repeated member \"ok\" in the reply"},
    };
    for (const auto& [text, message] : cases) EXPECT_EQ(response_error(text), message) << text;
}

}  // namespace
}  // namespace pfp::control
