#include "supervisor/dispatch.hpp"

namespace pfp::supervisor {

namespace {

using State = WorkerProcess::State;

size_t no_payload(KindFamily) {
    return 0;
}

size_t stats_size(KindFamily family) {
    switch (family) {
        case KindFamily::stream:
            return ipc::kStreamStatsSize;
        case KindFamily::packet:
            return ipc::kPacketStatsSize;
        case KindFamily::datagram:
            return ipc::kDatagramStatsSize;
        case KindFamily::tunnel:
            return ipc::kTunnelStatsSize;
    }
    return 0;
}

struct Entry {
    ipc::Type type;
    bool in_starting;  // READY is only valid once: it moves the worker out of `starting`
    bool in_running;   // running and draining
    size_t (*payload_size)(KindFamily);
    MessageHandler handler;
};

// What a worker may send. The supervisor's own messages (HANDOVER, DRAIN, ADDRESSES) are absent on
// purpose: a worker that sends one is refused and killed like any other violation.
constexpr Entry kTable[] = {
    {ipc::Type::ready, true, false, no_payload, MessageHandler::ready},
    {ipc::Type::stats, false, true, stats_size, MessageHandler::stats},
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

Verdict permit(State state, const ipc::Message& m, KindFamily family) {
    if (!m.fds.empty()) return {false, "a worker never sends file descriptors"};
    for (const Entry& e : kTable) {
        if (e.type != m.type) continue;
        bool ok_state = state == State::starting ? e.in_starting : e.in_running;
        if (!ok_state)
            return {false, std::string(ipc::type_name(m.type)) + " not allowed while " +
                               state_name(state)};
        const size_t size = e.payload_size(family);
        if (m.payload.size() != size || (e.type == ipc::Type::stats && size == 0))
            return {false, std::string(ipc::type_name(m.type)) + " with a payload of " +
                               std::to_string(m.payload.size()) + " bytes"};
        return {true, "", e.handler};
    }
    return {false, std::string("a worker may not send ") + ipc::type_name(m.type)};
}

}  // namespace pfp::supervisor
