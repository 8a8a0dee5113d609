#!/usr/bin/env bash
# Fuzz smoke test: runs each libFuzzer target for SECONDS (default 20) on a scratch copy of its
# seed corpus, so the checked-in corpus never grows by accident. Exits non-zero if any target
# crashes, leaks, times out or trips a sanitizer; the reproducer is kept in BUILD_DIR/fuzz-artifacts.
# Targets run JOBS at a time (default: the number of CPUs), each for the same SECONDS.
#   usage: tests/fuzz/smoke.sh BUILD_DIR [SECONDS] [JOBS]
set -euo pipefail

build=${1:?usage: smoke.sh BUILD_DIR [SECONDS] [JOBS]}
seconds=${2:-20}
jobs=${3:-$(nproc)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"

# One target; prints its result line, and the log's tail on a failure. Returns non-zero on failure.
run_target() {
    local name=$1 bin="" candidate
    for candidate in "$build/bin/fuzz_$name" "$build/tests/fuzz/fuzz_$name"; do
        if [ -x "$candidate" ]; then bin=$candidate; break; fi
    done
    if [ -z "$bin" ]; then
        echo "fuzz_$name: not built in $build (configure with -DPFPROXY_FUZZ=ON)" >&2
        return 1
    fi
    local corpus="$work/$name" log="$work/$name.log"
    mkdir -p "$corpus"
    cp "$here/corpus/$name/"* "$corpus/"
    # -timeout: one input running this long is a hang, which counts as a failure.
    if "$bin" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1; then
        local runs cov
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
        echo "fuzz_$name: ok, ${runs:-?} runs in ${seconds}s, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) inputs"
    else
        # One block, so parallel targets' reports do not interleave.
        { echo "fuzz_$name: FAILED (reproducer in $artifacts/)"; tail -n 60 "$log"; } >&2
        return 1
    fi
}

status=0
running=0
for name in policy endpoint worker_message transparent_header proxy_protocol control_protocol \
    dns_answer flow_key packet_framer packet_filter kcp_segment tunnel_datagram tcp_segment; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    run_target "$name" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
