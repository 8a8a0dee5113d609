#!/usr/bin/env bash
# Loopback round trip (one 100-byte request in flight, connbench ping) through pf-proxyd's two
# relay engines, "relay": "events" and "relay": "threads", against direct and socat, interleaved
# in one run (A B C D, A B C D), medians and per-round ratios to direct. Not run in CI. See
# bench/README.md ("Relay engines"). Every background process is recorded by PID and ended in the
# EXIT trap; every wait is bounded.
#
#   bench/lat_engines.sh [--rounds N] [--duration S] [--no-build] [--base-port P]
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
ROUNDS=3
DURATION=5
BUILD=1
BASE_PORT=25400

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --base-port) BASE_PORT="$2"; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "lat_engines.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for v in ROUNDS DURATION BASE_PORT; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then echo "lat_engines.sh: --${v,,} needs a number" >&2; exit 2; fi
done
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 20 ] || [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 60 ]; then
    echo "lat_engines.sh: --rounds 1-20, --duration 1-60" >&2; exit 2
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
"$CB" serve --port "$P_SERVE" --threads 2 --max-seconds 3600 >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
cat > "$WORK/policy.json" <<EOF
{"user": "nobody", "drain_timeout": "1s", "proxies": [
  {"name": "events", "listen": "tcp:127.0.0.1:$P_EVENTS", "upstream": "tcp:127.0.0.1:$P_SERVE"},
  {"name": "threads", "listen": "tcp:127.0.0.1:$P_THREADS", "upstream": "tcp:127.0.0.1:$P_SERVE",
   "relay": "threads"}]}
EOF
"$BIN/pf-proxyd" --policy "$WORK/policy.json" 2>"$WORK/pf-proxyd.log" &
PIDS+=($!)
socat "TCP-LISTEN:$P_SOCAT,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$P_SERVE" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 1 100); do
    grep -q "all 2 proxies ready" "$WORK/pf-proxyd.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "all 2 proxies ready" "$WORK/pf-proxyd.log" || { echo "lat_engines.sh: pf-proxyd did not start" >&2; cat "$WORK/pf-proxyd.log" >&2; exit 1; }

PATHS=(direct events threads socat)
port_of() { case "$1" in direct) echo "$P_SERVE" ;; events) echo "$P_EVENTS" ;; threads) echo "$P_THREADS" ;; socat) echo "$P_SOCAT" ;; esac; }
for round in $(seq 1 "$ROUNDS"); do
    for path in "${PATHS[@]}"; do
        out="$(timeout -k 2 $((DURATION + 30)) "$CB" ping --port "$(port_of "$path")" --size 100 \
            --duration "$DURATION" --warmup 0.5 2>>"$WORK/ping.log")"
        [ -n "$out" ] && echo "$round $path $out" >> "$WORK/lat.txt"
        echo "lat_engines.sh: round $round $path: ${out:-failed}" >&2
    done
done
python3 - "$WORK/lat.txt" "$ROUNDS" "$DURATION" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, path, js = line.split(" ", 2)
    rows.setdefault(int(r), {})[path] = json.loads(js)
def med(v): return statistics.median(v) if v else float("nan")
print("| path | p50 us | x direct | p99 us | x direct |")
print("|---|---:|---:|---:|---:|")
for path in ["direct", "events", "threads", "socat"]:
    p50 = [rows[r][path]["p50_us"] for r in rows if path in rows[r]]
    p99 = [rows[r][path]["p99_us"] for r in rows if path in rows[r]]
    x50 = [rows[r][path]["p50_us"] / rows[r]["direct"]["p50_us"] for r in rows if path in rows[r] and "direct" in rows[r]]
    x99 = [rows[r][path]["p99_us"] / rows[r]["direct"]["p99_us"] for r in rows if path in rows[r] and "direct" in rows[r]]
    print(f"| {path} | {med(p50):.1f} | {med(x50):.2f} | {med(p99):.1f} | {med(x99):.2f} |")
print(f"\nMedians of {sys.argv[2]} interleaved rounds of {sys.argv[3]} s, 1 request of 100 bytes in flight; ratios are medians of per-round ratios.")
EOF
