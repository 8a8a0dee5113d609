#!/usr/bin/env bash
# Fuzz smoke test: runs each libFuzzer target for SECONDS (default 20) on a scratch copy of its
# seed corpus, so the checked-in corpus never grows by accident. Exits non-zero if any target
# crashes, leaks, times out or trips a sanitizer; the reproducer is kept in BUILD_DIR/fuzz-artifacts.
#   usage: tests/fuzz/smoke.sh BUILD_DIR [SECONDS]
set -euo pipefail

build=${1:?usage: smoke.sh BUILD_DIR [SECONDS]}
seconds=${2:-20}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"

status=0
for name in policy endpoint worker_message transparent_header proxy_protocol control_protocol \
    dns_answer flow_key packet_framer packet_filter kcp_segment tunnel_datagram; do
    bin=""
    for candidate in "$build/bin/fuzz_$name" "$build/tests/fuzz/fuzz_$name"; do
        if [ -x "$candidate" ]; then bin=$candidate; break; fi
    done
    if [ -z "$bin" ]; then
        echo "fuzz_$name: not built in $build (configure with -DPFPROXY_FUZZ=ON)" >&2
        status=1
        continue
    fi
    corpus="$work/$name"
    mkdir -p "$corpus"
    cp "$here/corpus/$name/"* "$corpus/"
    log="$work/$name.log"
    # -timeout: one input running this long is a hang, which counts as a failure.
    if "$bin" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
        echo "fuzz_$name: ok, ${runs:-?} runs in ${seconds}s, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) inputs"
    else
        echo "fuzz_$name: FAILED (reproducer in $artifacts/)" >&2
        tail -n 60 "$log" >&2
        status=1
    fi
done
exit $status
