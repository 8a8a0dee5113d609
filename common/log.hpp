#pragma once
// One line per event on stderr, written with a single write() so lines from several processes
// sharing the stream never interleave. Under journald (JOURNAL_STREAM set) lines carry a
// <priority> prefix instead of a timestamp. A worker (PFPROXY_LOG=supervisor) writes only
// "<priority>message" to a pipe the supervisor relays under its own prefix.
#include <sstream>
#include <string_view>

namespace pfp::log {

enum class Level { error = 3, warning = 4, notice = 5, info = 6, debug = 7 };

void write_line(Level level, std::string_view message);

template <class... Parts>
void emit(Level level, const Parts&... parts) {
    std::ostringstream s;
    (s << ... << parts);
    write_line(level, s.str());
}

template <class... P>
void error(const P&... p) {
    emit(Level::error, p...);
}
template <class... P>
void warning(const P&... p) {
    emit(Level::warning, p...);
}
template <class... P>
void notice(const P&... p) {
    emit(Level::notice, p...);
}
template <class... P>
void info(const P&... p) {
    emit(Level::info, p...);
}

}  // namespace pfp::log
