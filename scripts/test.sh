#!/usr/bin/env bash
# Installs the dependencies, checks every C++ source's layout against .clang-format, then builds
# and tests the whole tree three ways (the Debian package's build, inside stage 1, adds Debian's
# own flags: -O2 -g with hardening):
#   1. the release build (GCC, Release -O3): every test, the production seccomp filters and
#      SIGSYS death tests included, and (label "package") the Debian package: built with
#      scripts/package.sh, lintian, its contents, installed into a scratch Debian root, and
#      (label "systemd-guest") that .deb installed with apt and run in a QEMU guest whose PID 1
#      is systemd (tests/vm/systemd_guest_test.py);
#   2. an ASan+UBSan build of everything (GCC, Debug), unit and integration tests alike;
#   3. the libFuzzer targets only (clang), then a short smoke run of each.
# Trees 2 and 3 are compiled in the background, at the lowest priority, while stage 1's serial
# tests run (they mostly wait on events, daemons and guests); the fuzz smoke runs, at the lowest
# priority too, beside stage 2's serial tests.
# Every build has warnings as errors (PFPROXY_WERROR=ON). Needs root: the integration tests bind
# ports below 1024 and switch to the user nobody.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
jobs=$(nproc)
# A test that needs a missing kernel feature, tool or privilege fails here instead of skipping
# (tests/support/require.hpp); run by hand without this variable, it skips and says why.
export PFPROXY_REQUIRE_ALL=1
fuzz_seconds=${PFPROXY_FUZZ_SECONDS:-15}
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
stage() { echo "== $1 ($(date -u +%T))"; }

stage "format"
# Every C++ source as .clang-format lays it out: a diff here is a finding, not a style preference.
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

stage "release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPFPROXY_WERROR=ON \
  "${launcher[@]}" >/dev/null
ninja -C build -j "$jobs"
# Unit tests share nothing (no ports, no namespaces, no daemons): they run side by side. The rest
# bind ports and build namespaces and wait for events with deadlines: one at a time.
(cd build && ctest --output-on-failure --timeout 600 -L '^unit$' -j "$jobs")
# The serial tests mostly wait (for daemons, guests, events), leaving the CPUs idle: the ASan and
# fuzz trees are compiled meanwhile, at the lowest priority so the tests keep their CPU share.
# Their output goes to build-later.log, shown if a build fails.
build_later() {
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPFPROXY_SANITIZE=ON \
    -DPFPROXY_WERROR=ON "${launcher[@]}" &&
    ninja -C build-asan -j "$jobs" &&
    cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_FLAGS=-g -DPFPROXY_FUZZ=ON -DPFPROXY_WERROR=ON "${launcher[@]}" &&
    ninja -C build-fuzz -j "$jobs" fuzz
}
echo "== ASan+UBSan and fuzz builds: started in the background ($(date -u +%T)), log build-later.log"
(renice -n 19 "$BASHPID" >/dev/null
  rc=0
  build_later >build-later.log 2>&1 </dev/null || rc=$?
  echo "$rc" >build-later.status) &
later=$!
# A failing test stops the run only after the background build is reaped.
release_rc=0
(cd build && ctest --output-on-failure --timeout 1800 -LE '^unit$') || release_rc=$?
wait "$later" || true
echo "== background builds done ($(date -u +%T))"
if [ "$release_rc" != 0 ]; then exit "$release_rc"; fi
if [ "$(cat build-later.status)" != 0 ]; then
  tail -n 60 build-later.log
  echo "test.sh: the ASan+UBSan or fuzz build failed; the whole log is build-later.log" >&2
  exit 1
fi

stage "ASan+UBSan tests; fuzz smoke (${fuzz_seconds}s per target) beside them"
# Workers turn LeakSanitizer off themselves (it needs ptrace, which their filter forbids).
# Not repeated here, as they check no memory behaviour of the code and ran in the release stage
# against what ships: the packaging and systemd checks (the installed tree, the schema, the
# units' syscall filter) and the per-kind seccomp death matrix (the production filters).
export ASAN_OPTIONS=abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The unit tests ran one process each in the release stage (ctest). Here they run as one process
# per CPU (gtest shards): an ASan+UBSan process spends ~0.5 s starting and exiting (relocating
# and registering a 200 MB binary, the leak check), which was most of this stage's 3 minutes.
unit_rc=0
for ((i = 0; i < jobs; i++)); do
  # A bound, as ctest's --timeout was: a shard is one process, and a hang (a child forked while
  # another test's thread held an ASan lock, say) would otherwise hold CI until its own limit.
  (cd build-asan/tests && GTEST_TOTAL_SHARDS=$jobs GTEST_SHARD_INDEX=$i timeout -k 10 900 \
    ../bin/unit_tests --gtest_brief=1 --gtest_filter='-EveryKind/SandboxKindDeathTest*' \
    >"../unit-shard-$i.log" 2>&1) &
done
for ((i = 0; i < jobs; i++)); do wait -n || unit_rc=1; done
for ((i = 0; i < jobs; i++)); do
  log=build-asan/unit-shard-$i.log
  if [ "$unit_rc" != 0 ]; then cat "$log"; else tail -n 2 "$log"; fi
done
if [ "$unit_rc" != 0 ]; then echo "test.sh: an ASan+UBSan unit test shard failed" >&2; exit 1; fi
# The libFuzzer targets (clang, ASan+UBSan), built in the background above: each compiles the code
# it fuzzes itself, so the rest of the tree is not built a third time. -g: symbolised stacks in a
# crash report. They run beside the serial tests below, which mostly wait; each target runs for a
# fixed time, so sharing the CPUs costs it executions, not a failure.
(renice -n 19 "$BASHPID" >/dev/null
  tests/fuzz/smoke.sh build-fuzz "$fuzz_seconds" "$jobs" >build-fuzz/smoke.log 2>&1) &
smoke=$!
integration_rc=0
(cd build-asan && ctest --output-on-failure --timeout 900 -LE '^(unit|packaging|systemd)$') ||
  integration_rc=$?
smoke_rc=0
wait "$smoke" || smoke_rc=$?
stage "fuzz smoke"
cat build-fuzz/smoke.log
if [ "$integration_rc" != 0 ] || [ "$smoke_rc" != 0 ]; then exit 1; fi
stage "all test stages passed"
