#!/usr/bin/env bash
# UDP through udp-forward (1 and 2 workers) vs the direct path vs socat, on loopback, in one run:
#   1. datagrams per second, 64 and 1400 bytes: udp_bench's blaster from FLOWS and from MANY
#      client sockets, and iperf3 -u (one flow, -b 0); delivered per second and the ratio to direct
#   2. flow setup: new client sockets per second, each one datagram and its echo (a new flow each)
#   3. memory per idle flow: the workers' VmRSS with IDLE flows held open, less before, per flow
# Not run in CI; numbers mean something only as ratios in one run. Every process started is
# recorded by PID and ended on exit.
#   sudo bench/udp.sh [--duration S] [--flows N] [--many N] [--idle N] [--bin DIR]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=5
FLOWS=8
MANY=64
IDLE=5000
BIN="$ROOT/build/bin"
BASE=25000
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --flows) FLOWS="$2"; shift 2 ;;
        --many) MANY="$2"; shift 2 ;;
        --idle) IDLE="$2"; shift 2 ;;
        --bin) BIN="$(cd "$2" && pwd)"; shift 2 ;;
        *) echo "udp.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in socat iperf3 python3; do
    command -v "$tool" >/dev/null || { echo "udp.sh: needs $tool (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null  # one socket per flow on each side
g++ -std=c++20 -O2 -o "$WORK/udp_bench" "$ROOT/bench/udp_bench.cpp" || exit 1

# Ports: SINK (blast target), IPERF (iperf3 server), ECHO (flow setup); per path an offset for
# blasting (+1..3), iperf3 (+11..13, TCP control and UDP data on the same number) and flows (+21..23).
SINK=$BASE
IPERF=$((BASE + 30))
ECHO=$((BASE + 31))
mkfifo "$WORK/sink.in"
"$WORK/udp_bench" sink "$SINK" < "$WORK/sink.in" > "$WORK/sink.out" &
PIDS+=($!)
exec 9> "$WORK/sink.in"
iperf3 -s -p "$IPERF" > "$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
"$WORK/udp_bench" echo "$ECHO" &
PIDS+=($!)
sink_count() {
    local before; before=$(wc -l < "$WORK/sink.out")
    echo report >&9
    for _ in $(seq 1 100); do
        [ "$(wc -l < "$WORK/sink.out")" -gt "$before" ] && break
        sleep 0.05
    done
    tail -n 1 "$WORK/sink.out"
}

declare -A PF_PID
start_pfproxy() {  # offset workers
    local o=$1 w=$2
    cat > "$WORK/p$o.json" <<JSON
{"user": "nobody", "proxies": [
  {"name": "u", "listen": "udp:127.0.0.1:$((BASE + o))", "upstream": "udp:127.0.0.1:$SINK", "workers": $w},
  {"name": "i", "listen": "udp:127.0.0.1:$((BASE + 10 + o))", "upstream": "udp:127.0.0.1:$IPERF", "workers": $w},
  {"name": "it", "listen": "tcp:127.0.0.1:$((BASE + 10 + o))", "upstream": "tcp:127.0.0.1:$IPERF"},
  {"name": "f", "listen": "udp:127.0.0.1:$((BASE + 20 + o))", "upstream": "udp:127.0.0.1:$ECHO", "workers": $w,
   "max_flows": 200000, "idle_timeout": "10m"}]}
JSON
    "$BIN/pf-proxyd" --policy "$WORK/p$o.json" --control "$WORK/c$o.sock" 2> "$WORK/p$o.log" &
    PF_PID[$o]=$!
    PIDS+=($!)
    for _ in $(seq 1 200); do grep -q "proxies ready" "$WORK/p$o.log" && return; sleep 0.05; done
    echo "udp.sh: pf-proxyd on $((BASE + o)) did not start" >&2; cat "$WORK/p$o.log" >&2; exit 1
}
start_pfproxy 1 1
start_pfproxy 2 2
socat -T 60 UDP4-LISTEN:$((BASE + 3)),bind=127.0.0.1,fork,reuseaddr UDP4:127.0.0.1:$SINK &
PIDS+=($!)
socat -T 60 UDP4-LISTEN:$((BASE + 13)),bind=127.0.0.1,fork,reuseaddr UDP4:127.0.0.1:$IPERF &
PIDS+=($!)
socat TCP4-LISTEN:$((BASE + 13)),bind=127.0.0.1,fork,reuseaddr TCP4:127.0.0.1:$IPERF &
PIDS+=($!)
socat -T 5 UDP4-LISTEN:$((BASE + 23)),bind=127.0.0.1,fork,reuseaddr UDP4:127.0.0.1:$ECHO &
PIDS+=($!)
sleep 0.5
PATHS=("direct:0" "udp-forward-w1:1" "udp-forward-w2:2" "socat:3")

echo "== datagrams per second (udp_bench blast: sendmmsg of 32, no flow control; ${DURATION} s each)"
printf "%-18s %6s %6s %12s %12s %8s\n" path size flows sent/s delivered/s ratio
for size in 64 1400; do
    for flows in "$FLOWS" "$MANY"; do
        direct=""
        for target in "${PATHS[@]}"; do
            name=${target%%:*}; o=${target##*:}
            port=$([ "$o" = 0 ] && echo "$SINK" || echo $((BASE + o)))
            before=$(sink_count)
            sent=$("$WORK/udp_bench" blast "$port" "$size" "$DURATION" "$flows")
            sleep 0.3  # what is in flight arrives
            after=$(sink_count)
            got=$(( (after - before) / DURATION ))
            [ -z "$direct" ] && direct=$got
            ratio=$(awk -v a="$got" -v b="$direct" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
            printf "%-18s %6s %6s %12s %12s %8s\n" "$name" "$size" "$flows" $((sent / DURATION)) "$got" "$ratio"
        done
    done
done

echo
echo "== iperf3 -u -b 0 (one flow; delivered = packets the server counted, per second)"
printf "%-18s %6s %12s %8s %8s\n" path size delivered/s lost% ratio
for size in 64 1400; do
    direct=""
    for target in "${PATHS[@]}"; do
        name=${target%%:*}; o=${target##*:}
        port=$([ "$o" = 0 ] && echo "$IPERF" || echo $((BASE + 10 + o)))
        timeout $((DURATION + 20)) iperf3 -c 127.0.0.1 -p "$port" -u -b 0 -l "$size" \
            -t "$DURATION" -J > "$WORK/iperf-$name-$size.json" 2>&1
        read -r got lost < <(python3 - "$WORK/iperf-$name-$size.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))["end"]["sum"]
    print(int((s["packets"] - s["lost_packets"]) / s["seconds"]), "%.1f" % s["lost_percent"])
except Exception:
    print(0, "-")
PY
)
        [ -z "$direct" ] && direct=$got
        ratio=$(awk -v a="$got" -v b="$direct" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
        printf "%-18s %6s %12s %8s %8s\n" "$name" "$size" "$got" "$lost" "$ratio"
    done
done

# VmRSS (kB) of pf-proxyd $1's workers for proxy "f", summed.
workers_rss() {
    local sum=0 pid
    for pid in $(pgrep -P "${PF_PID[$1]}"); do
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "pf-proxy-worker: f/" || continue
        sum=$((sum + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")))
    done
    echo "$sum"
}

echo
echo "== flow setup (new client sockets, one datagram and its echo each, 64 in flight) and idle flows"
printf "%-18s %8s %10s %14s\n" path flows flows/s "RSS/idle flow"
for target in "${PATHS[@]}"; do
    name=${target%%:*}; o=${target##*:}
    port=$([ "$o" = 0 ] && echo "$ECHO" || echo $((BASE + 20 + o)))
    count=$IDLE
    [ "$name" = socat ] && count=$((IDLE / 10))  # socat forks a process per client
    before=""; per="-"
    [ "$o" = 1 ] || [ "$o" = 2 ] && before=$(workers_rss "$o")
    mkfifo "$WORK/hold-$name"
    "$WORK/udp_bench" flows "$port" "$count" 1 < "$WORK/hold-$name" > "$WORK/flows-$name.out" &
    holder=$!
    PIDS+=($holder)
    exec 8> "$WORK/hold-$name"
    for _ in $(seq 1 1200); do [ -s "$WORK/flows-$name.out" ] && break; sleep 0.05; done
    rate=$(head -n 1 "$WORK/flows-$name.out")
    if [ -n "$before" ]; then
        sleep 1.5  # workers report and settle
        after=$(workers_rss "$o")
        per=$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN { printf "%.0f B", (a - b) * 1024 / n }')
    fi
    exec 8>&-
    wait "$holder" 2>/dev/null
    printf "%-18s %8s %10s %14s\n" "$name" "$count" "${rate:-timeout}" "$per"
done
