#pragma once
// The body shared by every stream kind: a Route built from the handover and the StreamRelay
// that follows it. Declared in worker_body.hpp.
#include "workers/worker_body.hpp"
