#pragma once
// What a worker may say, when, and what the supervisor does with it (OpenSSH mon_table style):
// one table, a row per message a worker may send, with the worker states it is permitted in, its
// payload size and its handler. Worker messages are hostile input: anything not in this table
// gets the worker killed.
#include <string>

#include "common/ipc.hpp"
#include "common/worker_kind.hpp"
#include "supervisor/supervisor.hpp"

namespace pfp::supervisor {

// What handles a permitted message: Supervisor::on_ready, Supervisor::on_stats.
enum class MessageHandler { none, ready, stats };

struct Verdict {
    bool allowed;
    std::string reason;                             // why not, for the log line
    MessageHandler handler = MessageHandler::none;  // set when allowed
};

// `family`: the worker's kind family, which fixes the size of its STATS.
Verdict permit(WorkerProcess::State state, const ipc::Message& m,
               KindFamily family = KindFamily::stream);

}  // namespace pfp::supervisor
