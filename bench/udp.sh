#!/usr/bin/env bash
# UDP packets per second through udp-forward (1 and 2 workers) vs the direct path vs socat, on
# loopback, 64 and 1400 byte datagrams. A sink counts what arrives; a blaster sends for a fixed
# time from several client sockets (flows). Reported: datagrams delivered per second and the ratio
# to the direct path. Not run in CI. Every process started is recorded by PID and ended on exit.
#   sudo bench/udp.sh [--duration S] [--flows N] [--bin DIR]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=5
FLOWS=8
BIN="$ROOT/build/bin"
BASE=25000
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --flows) FLOWS="$2"; shift 2 ;;
        --bin) BIN="$(cd "$2" && pwd)"; shift 2 ;;
        *) echo "udp.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
g++ -std=c++20 -O2 -o "$WORK/udp_bench" "$ROOT/bench/udp_bench.cpp" || exit 1
SINK=$BASE
mkfifo "$WORK/sink.in"
"$WORK/udp_bench" sink "$SINK" < "$WORK/sink.in" > "$WORK/sink.out" &
PIDS+=($!)
exec 9> "$WORK/sink.in"
sink_count() {
    local before; before=$(wc -l < "$WORK/sink.out")
    echo report >&9
    for _ in $(seq 1 100); do
        [ "$(wc -l < "$WORK/sink.out")" -gt "$before" ] && break
        sleep 0.05
    done
    tail -n 1 "$WORK/sink.out"
}

start_pfproxy() {  # port workers
    cat > "$WORK/p$1.json" <<JSON
{"user": "nobody", "proxies": [{"name": "u", "listen": "udp:127.0.0.1:$1",
  "upstream": "udp:127.0.0.1:$SINK", "workers": $2}]}
JSON
    "$BIN/pf-proxyd" --policy "$WORK/p$1.json" 2> "$WORK/p$1.log" &
    PIDS+=($!)
    for _ in $(seq 1 100); do grep -q "proxies ready" "$WORK/p$1.log" && return; sleep 0.05; done
    echo "udp.sh: pf-proxyd on $1 did not start" >&2; cat "$WORK/p$1.log" >&2; exit 1
}
start_pfproxy $((BASE + 1)) 1
start_pfproxy $((BASE + 2)) 2
socat -T 60 UDP4-LISTEN:$((BASE + 3)),bind=127.0.0.1,fork,reuseaddr UDP4:127.0.0.1:$SINK &
PIDS+=($!)
sleep 0.5

printf "%-22s %6s %12s %12s %8s\n" path size sent/s delivered/s ratio
for size in 64 1400; do
    direct=""
    for target in "direct:$SINK" "udp-forward-1:$((BASE + 1))" "udp-forward-2:$((BASE + 2))" \
                  "socat:$((BASE + 3))"; do
        name=${target%%:*}; port=${target##*:}
        before=$(sink_count)
        sent=$("$WORK/udp_bench" blast "$port" "$size" "$DURATION" "$FLOWS")
        sleep 0.3  # what is in flight arrives
        after=$(sink_count)
        got=$(( (after - before) / DURATION ))
        [ -z "$direct" ] && direct=$got
        ratio=$(awk -v a="$got" -v b="$direct" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
        printf "%-22s %6s %12s %12s %8s\n" "$name" "$size" $((sent / DURATION)) "$got" "$ratio"
    done
done
