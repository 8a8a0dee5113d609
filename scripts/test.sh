#!/usr/bin/env bash
# Installs the dependencies, then builds and runs the whole test suite three ways:
#   1. the release build (the production seccomp filters, SIGSYS death tests included),
#   2. an ASan+UBSan build of everything, unit and integration tests alike,
#   3. a short libFuzzer smoke run of every fuzz target (clang).
# Needs root: the integration tests bind ports below 1024 and switch to the user nobody.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
jobs=$(nproc)
# A test that needs a missing kernel feature, tool or privilege fails here instead of skipping
# (tests/support/require.hpp); run by hand without this variable, it skips and says why.
export PFPROXY_REQUIRE_ALL=1
fuzz_seconds=${PFPROXY_FUZZ_SECONDS:-20}

echo "== release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPFPROXY_WERROR=ON >/dev/null
ninja -C build -j "$jobs"
(cd build && ctest --output-on-failure --timeout 600)

echo "== ASan+UBSan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPFPROXY_SANITIZE=ON \
  -DPFPROXY_WERROR=ON >/dev/null
ninja -C build-asan -j "$jobs"
# Workers turn LeakSanitizer off themselves (it needs ptrace, which their filter forbids).
(cd build-asan && ASAN_OPTIONS=abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure --timeout 900)

echo "== fuzz smoke (${fuzz_seconds}s per target)"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPFPROXY_FUZZ=ON -DPFPROXY_WERROR=OFF >/dev/null
ninja -C build-fuzz -j "$jobs" fuzz_policy fuzz_endpoint fuzz_worker_message fuzz_transparent_header fuzz_proxy_protocol \
  fuzz_control_protocol
tests/fuzz/smoke.sh build-fuzz "$fuzz_seconds"
echo "all test stages passed"
