#!/usr/bin/env bash
# Loopback round trip (one 100-byte request in flight, connbench ping) through pf-proxyd's two
# relay engines, "relay": "events" and "relay": "threads", against direct and socat, interleaved
# in one run (A B C D, D C B A, ...), medians and per-round ratios to direct; and the short-connection
# rate (connbench rr, --rr-conns in flight) with the proxy's CPU per connection. --baseline DIR
# also runs DIR/pf-proxyd (the build before a change) with the same two proxies, paths
# base-events and base-threads, in the same rounds. Not run in CI. See bench/README.md ("Relay
# engines"). Every background process is recorded by PID and ended in the EXIT trap; every wait
# is bounded.
#
#   bench/lat_engines.sh [--rounds N] [--duration S] [--no-build] [--base-port P]
#                        [--only lat,rr] [--rr-conns N] [--baseline DIR]
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
ROUNDS=3
DURATION=5
BUILD=1
BASE_PORT=25400
ONLY="lat,rr"
RR_CONNS=4
BASELINE=""

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --base-port) BASE_PORT="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --rr-conns) RR_CONNS="$2"; shift 2 ;;
        --baseline) BASELINE="$(cd "$2" && pwd)" || exit 2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "lat_engines.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for v in ROUNDS DURATION BASE_PORT RR_CONNS; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then echo "lat_engines.sh: --${v,,} needs a number" >&2; exit 2; fi
done
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 20 ] || [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 60 ]; then
    echo "lat_engines.sh: --rounds 1-20, --duration 1-60" >&2; exit 2
fi
if [ "$RR_CONNS" -lt 1 ] || [ "$RR_CONNS" -gt 1000 ]; then
    echo "lat_engines.sh: --rr-conns 1-1000" >&2; exit 2
fi
if [ -n "$BASELINE" ] && ! { [ -x "$BASELINE/pf-proxyd" ] && [ -x "$BASELINE/pf-proxy-worker" ]; }; then
    echo "lat_engines.sh: --baseline $BASELINE has no pf-proxyd and pf-proxy-worker" >&2; exit 2
fi
command -v socat >/dev/null || { echo "lat_engines.sh: needs socat" >&2; exit 2; }
if [ "$BUILD" = 1 ]; then ninja -C "$BUILD_DIR" pf-proxyd pf-proxy-worker >&2 || exit 1; fi
BIN="$BUILD_DIR/bin"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lat-engines.XXXXXX")" || exit 1
chmod 755 "$WORK"  # pf-proxyd reads the policy after dropping to nobody
CB="$WORK/connbench"
g++ -std=c++20 -O2 -pthread -o "$CB" "$ROOT/bench/connbench.cpp" || { echo "lat_engines.sh: connbench build failed" >&2; rm -rf "$WORK"; exit 1; }
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

P_SERVE=$BASE_PORT P_EVENTS=$((BASE_PORT + 1)) P_THREADS=$((BASE_PORT + 2)) P_SOCAT=$((BASE_PORT + 3))
P_BEVENTS=$((BASE_PORT + 4)) P_BTHREADS=$((BASE_PORT + 5))
"$CB" serve --port "$P_SERVE" --threads 2 --max-seconds 3600 >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
# start_pf BIN_DIR PREFIX EVENTS_PORT THREADS_PORT: proxies PREFIXevents and PREFIXthreads, each
# with its own control socket in the work directory; sets PF_PID.
start_pf() {
    cat > "$WORK/${2}policy.json" <<EOF
{"user": "nobody", "drain_timeout": "1s", "proxies": [
  {"name": "${2}events", "listen": "tcp:127.0.0.1:$3", "upstream": "tcp:127.0.0.1:$P_SERVE"},
  {"name": "${2}threads", "listen": "tcp:127.0.0.1:$4", "upstream": "tcp:127.0.0.1:$P_SERVE",
   "relay": "threads"}]}
EOF
    "$1/pf-proxyd" --policy "$WORK/${2}policy.json" --control "$WORK/${2}control.sock" \
        2>"$WORK/${2}pf-proxyd.log" &
    PF_PID=$!
    PIDS+=($PF_PID)
    for _ in $(seq 1 100); do
        grep -q "all 2 proxies ready" "$WORK/${2}pf-proxyd.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "lat_engines.sh: pf-proxyd from $1 did not start" >&2
    cat "$WORK/${2}pf-proxyd.log" >&2
    exit 1
}
start_pf "$BIN" "" "$P_EVENTS" "$P_THREADS"
PF_MAIN=$PF_PID
PF_BASE=""
if [ -n "$BASELINE" ]; then
    start_pf "$BASELINE" "base-" "$P_BEVENTS" "$P_BTHREADS"
    PF_BASE=$PF_PID
fi
socat "TCP-LISTEN:$P_SOCAT,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$P_SERVE" 2>/dev/null &
PIDS+=($!)

PATHS=(direct events threads socat)
[ -n "$BASELINE" ] && PATHS+=(base-events base-threads)
port_of() {
    case "$1" in
        direct) echo "$P_SERVE" ;; events) echo "$P_EVENTS" ;; threads) echo "$P_THREADS" ;;
        socat) echo "$P_SOCAT" ;; base-events) echo "$P_BEVENTS" ;; base-threads) echo "$P_BTHREADS" ;;
    esac
}
# The worker processes of a path's proxy: children of its pf-proxyd titled after the proxy.
workers_of() {
    local parent c out=()
    case "$1" in
        events|threads) parent=$PF_MAIN ;;
        base-*) parent=$PF_BASE ;;
        *) return ;;
    esac
    for c in $(pgrep -P "$parent" 2>/dev/null); do
        if tr '\0' ' ' < "/proc/$c/cmdline" 2>/dev/null | grep -q " pf-proxy-worker: $1/"; then
            out+=("$c")
        fi
    done
    echo "${out[*]}"
}
# Summed utime+stime (clock ticks) of the given PIDs, every thread included.
cpu_ticks() {
    local sum=0 pid rest
    for pid in "$@"; do
        rest="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
        rest="${rest##*) }"
        # shellcheck disable=SC2086
        set -- $rest
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
HZ="$(getconf CLK_TCK)"

touch "$WORK/lat.txt" "$WORK/rr.txt"
for round in $(seq 1 "$ROUNDS"); do
    # Even rounds run the paths in reverse, so no path always follows the same one.
    ORDER=("${PATHS[@]}")
    if [ $((round % 2)) = 0 ]; then
        ORDER=()
        for ((i = ${#PATHS[@]} - 1; i >= 0; i--)); do ORDER+=("${PATHS[i]}"); done
    fi
    if [[ ",$ONLY," == *,lat,* ]]; then
        for path in "${ORDER[@]}"; do
            out="$(timeout -k 2 $((DURATION + 30)) "$CB" ping --port "$(port_of "$path")" --size 100 \
                --duration "$DURATION" --warmup 0.5 2>>"$WORK/ping.log")"
            [ -n "$out" ] && echo "$round $path $out" >> "$WORK/lat.txt"
            echo "lat_engines.sh: round $round $path: ${out:-failed}" >&2
        done
    fi
    if [[ ",$ONLY," == *,rr,* ]]; then
        for path in "${ORDER[@]}"; do
            [ "$path" = socat ] && continue  # a process per connection: not what this compares
            pids="$(workers_of "$path")"
            # shellcheck disable=SC2086
            c0="$(cpu_ticks $pids)"
            out="$(timeout -k 2 $((DURATION + 30)) "$CB" rr --port "$(port_of "$path")" \
                --conns "$RR_CONNS" --threads 2 --duration "$DURATION" --warmup 0.5 2>>"$WORK/rr.log")"
            sleep 0.2  # the last connections' ends reach the workers
            # shellcheck disable=SC2086
            c1="$(cpu_ticks $pids)"
            [ -n "$out" ] && echo "$round $path $((c1 - c0)) $out" >> "$WORK/rr.txt"
            echo "lat_engines.sh: round $round $path rr: ${out:-failed}, worker ticks $((c1 - c0))" >&2
        done
    fi
done
python3 - "$WORK/lat.txt" "$WORK/rr.txt" "$ROUNDS" "$DURATION" "$HZ" "$RR_CONNS" <<'EOF'
import json, statistics, sys
lat, rr, rounds, duration, hz, conns = sys.argv[1:7]
hz = int(hz)
def med(v): return statistics.median(v) if v else float("nan")
order = ["direct", "events", "threads", "socat", "base-events", "base-threads"]
rows = {}
for line in open(lat):
    r, path, js = line.split(" ", 2)
    rows.setdefault(int(r), {})[path] = json.loads(js)
if rows:
    print("| path | p50 us | x direct | p99 us | x direct |")
    print("|---|---:|---:|---:|---:|")
    for path in order:
        p50 = [rows[r][path]["p50_us"] for r in rows if path in rows[r]]
        if not p50: continue
        p99 = [rows[r][path]["p99_us"] for r in rows if path in rows[r]]
        x50 = [rows[r][path]["p50_us"] / rows[r]["direct"]["p50_us"] for r in rows if path in rows[r] and "direct" in rows[r]]
        x99 = [rows[r][path]["p99_us"] / rows[r]["direct"]["p99_us"] for r in rows if path in rows[r] and "direct" in rows[r]]
        print(f"| {path} | {med(p50):.1f} | {med(x50):.2f} | {med(p99):.1f} | {med(x99):.2f} |")
    print(f"\nMedians of {rounds} interleaved rounds of {duration} s, 1 request of 100 bytes in flight; ratios are medians of per-round ratios.\n")
rows = {}
for line in open(rr):
    r, path, ticks, js = line.split(" ", 3)
    d = json.loads(js)
    # The ticks cover the warm-up too, as does "total" (every connection made).
    d["proxy_us"] = int(ticks) * 1e6 / hz / d["total"] if d["total"] else float("nan")
    rows.setdefault(int(r), {})[path] = d
if rows:
    print("| path | connections/s | x direct | worker CPU us/connection | x base (rate) | x base (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in order:
        rate = [rows[r][path]["rate"] for r in rows if path in rows[r]]
        if not rate: continue
        xd = [rows[r][path]["rate"] / rows[r]["direct"]["rate"] for r in rows if path in rows[r] and "direct" in rows[r]]
        cpu = [rows[r][path]["proxy_us"] for r in rows if path in rows[r]]
        base = "base-" + path
        both = [r for r in rows if path in rows[r] and base in rows[r]]
        xb = [rows[r][path]["rate"] / rows[r][base]["rate"] for r in both]
        xc = [rows[r][path]["proxy_us"] / rows[r][base]["proxy_us"] for r in both if rows[r][base]["proxy_us"] > 0]
        cpu_s = f"{med(cpu):.1f}" if path != "direct" else "-"
        print(f"| {path} | {med(rate):.0f} | {med(xd):.2f} | {cpu_s} | "
              f"{f'{med(xb):.2f}' if xb else '-'} | {f'{med(xc):.2f}' if xc else '-'} |")
    print(f"\nconnbench rr, {conns} connections in flight (2 client threads), medians of {rounds} interleaved rounds of {duration} s; x base: medians of per-round ratios to the --baseline build's same engine.")
EOF
