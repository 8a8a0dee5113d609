#!/usr/bin/env bash
# The KCP tunnel (kcptcp-client -> kcptcp-server) against the direct TCP path and against kcptun
# (Debian's kcptun-client/kcptun-server), side by side in one run on loopback: bulk throughput
# (iperf3, one stream, client to server), request/response round trip (connbench ping: 100 bytes,
# one in flight) and the tunnel processes' CPU per MB, with and without a key, at 0 % and 5 %
# loss (lossy-udp-relay between the two ends: 5 % of the datagrams dropped each way, seeded).
# Each measurement starts its tunnel afresh and stops it after. Not run in CI; the numbers mean
# something only as ratios taken in the same run (bench/README.md, "KCP tunnel").
#   sudo bench/kcp.sh [--rounds N] [--duration S] [--bin DIR] [--base-port P] [--paths A,B] [--keep]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=1
DURATION=5
BIN="$ROOT/build/bin"
BASE=26000
KEEP=0
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --bin) BIN="$(cd "$2" && pwd)"; shift 2 ;;
        --base-port) BASE="$2"; shift 2 ;;
        --paths) ONLY="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "kcp.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in iperf3 kcptun-client kcptun-server g++ python3 ss timeout; do
    command -v "$tool" >/dev/null ||
        { echo "kcp.sh: $tool is missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
for tool in kcptcp-client kcptcp-server pf-proxy-worker lossy-udp-relay; do
    [ -x "$BIN/$tool" ] || { echo "kcp.sh: $BIN/$tool is missing (ninja -C build pf-proxy-compat" \
        "pf-proxy-worker lossy-udp-relay)" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/kcp-bench.XXXXXX)"
PIDS=()      # everything started, ended by PID at exit
TUNNEL=()    # the current measurement's tunnel processes
stop_pids() {
    for p in "$@"; do kill "$p" 2>/dev/null; done
    for _ in $(seq 1 50); do
        local alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "$@"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
}
cleanup() {
    stop_pids "${PIDS[@]}"
    if [ $KEEP = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

g++ -std=c++20 -O2 -pthread -o "$WORK/connbench" "$ROOT/bench/connbench.cpp" || exit 1
KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
P_SERVE=$BASE; P_IPERF=$((BASE + 1)); P_TCP=$((BASE + 2)); P_UDP=$((BASE + 3)); P_RELAY=$((BASE + 4))
for p in $(seq "$BASE" $((BASE + 4))); do
    if ss -Htuln "sport = :$p" | grep -q .; then
        echo "kcp.sh: port $p is in use (--base-port)" >&2; exit 1
    fi
done

spawn() {  # spawn LOGNAME CMD...: background, logged, recorded; sets LAST
    local name="$1"; shift
    "$@" >> "$WORK/$name.log" 2>&1 &
    LAST=$!
    PIDS+=("$LAST")
}
wait_port() {  # wait_port t|u PORT: a listener there (10 s at most)
    for _ in $(seq 1 200); do ss -H"$1"ln "sport = :$2" | grep -q . && return 0; sleep 0.05; done
    echo "kcp.sh: nothing listens on $1 port $2" >&2; return 1
}

spawn serve "$WORK/connbench" serve --port "$P_SERVE" --threads 1
wait_port t "$P_SERVE" || exit 1

# Paths: NAME KIND KEYED LOSS%. pf: kcptcp-client/-server with their defaults (nodelay 1, interval
# 10 ms, resend 2, no congestion control, windows 1024, MTU 1350, socket buffers 4 MiB: kcptun's
# default --sockbuf too), keyed with -K (pf-kernelbuf: -S the kernel's default,
# net.core.rmem_default). kcptun: the same
# KCP parameters (--mode fast3 is nodelay 1, interval 10, resend 2, nc 1; --sndwnd/--rcvwnd 1024,
# --mtu 1350), no FEC (--ds 0 --ps 0: the pf tunnel has none), --nocomp; keyed with --crypt aes
# (its default: AES-CFB, no authentication), else --crypt none.
PATHS=("direct - 0 0"
    "pf pf 0 0" "pf-K pf 1 0" "pf-K-kernelbuf pf-kernelbuf 1 0" "kcptun-none kcptun 0 0"
    "kcptun-aes kcptun 1 0"
    "pf-loss5 pf 0 5" "pf-K-loss5 pf 1 5" "kcptun-none-loss5 kcptun 0 5" "kcptun-aes-loss5 kcptun 1 5")

# tunnel_up KIND KEYED LOSS TARGET: the tunnel from P_TCP to TARGET; TUNNEL = its processes
# (the relay not among them: it stands for the network). Returns the port to connect to.
tunnel_up() {
    local kind=$1 keyed=$2 loss=$3 target=$4 remote=$P_UDP
    TUNNEL=(); RELAY=()
    if [ "$loss" != 0 ]; then
        spawn relay "$BIN/lossy-udp-relay" --listen "127.0.0.1:$P_RELAY" \
            --target "127.0.0.1:$P_UDP" --drop "$loss" --seed 7
        RELAY=("$LAST"); remote=$P_RELAY
        wait_port u "$P_RELAY" || return 1
    fi
    if [ "$kind" = pf ] || [ "$kind" = pf-kernelbuf ]; then
        local key=(); [ "$keyed" = 1 ] && key=(-K "$KEY")
        [ "$kind" = pf-kernelbuf ] && key+=(-S "$(cat /proc/sys/net/core/rmem_default)")
        spawn pf-server "$BIN/kcptcp-server" "${key[@]}" "127.0.0.1:$P_UDP" "127.0.0.1:$target"
        TUNNEL+=("$LAST")
        spawn pf-client "$BIN/kcptcp-client" "${key[@]}" "127.0.0.1:$P_TCP" "127.0.0.1:$remote"
        TUNNEL+=("$LAST")
    else
        local crypt=(--crypt none); [ "$keyed" = 1 ] && crypt=(--crypt aes --key "$KEY")
        local common=(--mode fast3 --nocomp --ds 0 --ps 0 --sndwnd 1024 --rcvwnd 1024 --mtu 1350
            --quiet "${crypt[@]}")
        spawn kcptun-server kcptun-server -l "127.0.0.1:$P_UDP" -t "127.0.0.1:$target" "${common[@]}"
        TUNNEL+=("$LAST")
        spawn kcptun-client kcptun-client -l "127.0.0.1:$P_TCP" -r "127.0.0.1:$remote" "${common[@]}"
        TUNNEL+=("$LAST")
    fi
    wait_port u "$P_UDP" && wait_port t "$P_TCP"
}
tunnel_down() {
    stop_pids "${TUNNEL[@]}" "${RELAY[@]}"
    TUNNEL=(); RELAY=()
    for _ in $(seq 1 100); do  # the ports are free again
        ss -Htuln "( sport = :$P_TCP or sport = :$P_UDP or sport = :$P_RELAY )" | grep -q . || return 0
        sleep 0.05
    done
}
cpu_ticks() {  # utime+stime of the tunnel's processes and their children (workers)
    [ ${#TUNNEL[@]} = 0 ] && { echo 0; return; }
    python3 "$ROOT/bench/kcp_report.py" cpu "${TUNNEL[@]}"
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }
TICK=$(getconf CLK_TCK)

for round in $(seq 1 "$ROUNDS"); do
    for spec in "${PATHS[@]}"; do
        read -r name kind keyed loss <<< "$spec"
        [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]] && continue
        # Throughput: iperf3, one stream, the first second (slow start) left out.
        spawn iperf3-server iperf3 -s -1 -p "$P_IPERF"
        local_iperf=$LAST
        wait_port t "$P_IPERF" || exit 1
        port=$P_IPERF
        if [ "$kind" != - ]; then tunnel_up "$kind" "$keyed" "$loss" "$P_IPERF" || exit 1; port=$P_TCP; fi
        log "round $round: $name throughput"
        before=$(cpu_ticks)
        timeout $((DURATION + 20)) iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" -O 1 -J \
            > "$WORK/iperf-$name-$round.json" 2>> "$WORK/iperf-client.log"
        after=$(cpu_ticks)
        bytes=$(python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bytes"])
except Exception: print(0)' "$WORK/iperf-$name-$round.json")
        secs=$(python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["end"]["sum_received"]["seconds"])
except Exception: print(0)' "$WORK/iperf-$name-$round.json")
        record "$round" "$name" bytes "$bytes"
        record "$round" "$name" seconds "$secs"
        record "$round" "$name" cpu_s "$(python3 -c "print(($after - $before) / $TICK)")"
        [ "$kind" != - ] && tunnel_down
        stop_pids "$local_iperf"

        # Round trip: connbench ping (100 bytes, one in flight) against connbench serve's echo.
        port=$P_SERVE
        if [ "$kind" != - ]; then tunnel_up "$kind" "$keyed" "$loss" "$P_SERVE" || exit 1; port=$P_TCP; fi
        log "round $round: $name round trip"
        timeout $((DURATION + 20)) "$WORK/connbench" ping --port "$port" --duration "$DURATION" \
            > "$WORK/ping-$name-$round.json" 2>> "$WORK/ping.log"
        p50=$(python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["p50_us"])
except Exception: print("nan")' "$WORK/ping-$name-$round.json")
        record "$round" "$name" p50_us "$p50"
        [ "$kind" != - ] && tunnel_down
    done
done

python3 "$ROOT/bench/kcp_report.py" table "$RESULTS" --duration "$DURATION" --rounds "$ROUNDS" \
    --load "$(cut -d' ' -f1-3 /proc/loadavg)"
