#pragma once
// Located policy errors: FILE:LINE:COL: /json/pointer: message (did you mean "x"?)
#include <stdexcept>
#include <string>
#include <vector>

namespace pfp::policy {

struct Diagnostic {
    std::string file;
    int line = 0;         // 1-based; 0 when the error has no position (e.g. unreadable file)
    int column = 0;       // 1-based
    std::string pointer;  // JSON pointer ("" for the document root)
    std::string message;
    std::string hint;  // e.g. `did you mean "upstream"?`; empty if none

    std::string str() const;
};

// Every error found in one policy file. what() is all diagnostics, one per line.
class policy_error : public std::runtime_error {
  public:
    explicit policy_error(std::vector<Diagnostic> diags);
    const std::vector<Diagnostic>& diagnostics() const noexcept { return diags_; }

  private:
    std::vector<Diagnostic> diags_;
};

}  // namespace pfp::policy
