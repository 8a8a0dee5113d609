#include "supervisor/dispatch.hpp"

namespace pfp::supervisor {

namespace {

using State = WorkerProcess::State;

struct Entry {
    ipc::Type type;
    bool in_starting;  // READY is only valid once: it moves the worker out of `starting`
    bool in_running;
    size_t payload_size;
};

constexpr Entry kTable[] = {
    {ipc::Type::ready, true, false, 0},
    {ipc::Type::stats, false, true, ipc::kStatsSize},
};

const char* state_name(State s) {
    switch (s) {
        case State::starting:
            return "starting";
        case State::running:
            return "running";
        case State::draining:
            return "draining";
    }
    return "?";
}

}  // namespace

Verdict permit(State state, const ipc::Message& m) {
    if (!m.fds.empty()) return {false, "a worker never sends file descriptors"};
    for (const Entry& e : kTable) {
        if (e.type != m.type) continue;
        bool ok_state = state == State::starting ? e.in_starting : e.in_running;
        if (!ok_state)
            return {false, std::string(ipc::type_name(m.type)) + " not allowed while " +
                               state_name(state)};
        if (m.payload.size() != e.payload_size)
            return {false, std::string(ipc::type_name(m.type)) + " with a payload of " +
                               std::to_string(m.payload.size()) + " bytes"};
        return {true, ""};
    }
    return {false, std::string("a worker may not send ") + ipc::type_name(m.type)};
}

}  // namespace pfp::supervisor
