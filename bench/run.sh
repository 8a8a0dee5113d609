#!/usr/bin/env bash
# pf-proxy performance comparison: direct path vs pf-proxyd (1 and 2 workers) vs socat, haproxy
# and systemd-socket-proxyd (optionally also a baseline build of pf-proxyd: --baseline DIR).
# Loopback only. Not run in CI. See bench/README.md for what it measures and how to read it.
#
#   sudo bench/run.sh [--rounds N] [--duration S] [--quick] [--idle-conns N] [options]
#
# Every background process it starts is recorded by PID and ended in the EXIT trap; every wait
# loop is bounded in iterations and time.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"

ROUNDS=3
DURATION=5
IDLE_CONNS=1000
BASE_PORT=24000
RR_CONNS=32
RR_CLIENT_THREADS=2
SERVER_THREADS=2
QUIET_WAIT=20      # seconds to wait, before each measurement, for other load on the machine to stop
BUILD=1
KEEP=0
ONLY=""            # comma list of tests: tput,rr,lat,idle
BASELINE=""        # directory with another pf-proxyd build, measured as paths base-w1 / base-w2
THREADS=0          # 1: also the thread relay engine ("relay": "threads", workers 1), path pf-thr
REFERENCE=0        # 1: also the minimal relays of bench/ref_relay.cpp, paths ref-ev and ref-thr
BIN=""             # directory with pf-proxyd and pf-proxy-worker (default: build/bin, built first)
BUSY_POLL=""       # comma list of busy_poll windows (e.g. 50us,200us): one more pf-proxyd path each

usage() {
    cat <<EOF
Usage: sudo $0 [options]
  --rounds N          interleaved rounds, medians are reported (default $ROUNDS)
  --duration S        seconds per throughput / connection-rate measurement (default $DURATION)
  --quick             1 round of 2 s (smoke test)
  --idle-conns N      idle connections for the memory test (default $IDLE_CONNS)
  --rr-conns N        connections in flight for the connection-rate test (default $RR_CONNS)
  --rr-threads N      client threads for the connection-rate test (default $RR_CLIENT_THREADS)
  --server-threads N  threads of the upstream request/response server (default $SERVER_THREADS)
  --base-port P       first of the loopback ports used (P .. P+141; default $BASE_PORT)
  --quiet-wait S      wait up to S s before each measurement for the CPUs to be idle (default $QUIET_WAIT, 0 = off)
  --only LIST         run only some tests: tput,rr,lat,idle (default all)
  --no-build          do not run ninja; use the binaries in build/bin as they are
  --bin DIR           benchmark pf-proxyd and pf-proxy-worker from DIR instead (implies --no-build),
                      e.g. a build of a clean snapshot while the working tree is mid-change
  --baseline DIR      also measure pf-proxyd and pf-proxy-worker from DIR (paths base-w1, base-w2),
                      e.g. the build before a change, in the same interleaved run
  --busy-poll LIST    also measure pf-proxyd (workers 1) with each busy_poll window of the comma
                      list (at most 3, such as 50us,200us): paths bp-50us, bp-200us
  --threads           also measure pf-proxyd (workers 1) with the thread relay engine
                      ("relay": "threads"): path pf-thr
  --reference         also measure the smallest correct relays (bench/ref_relay.cpp, no sandbox,
                      policy or limits): ref-ev (one epoll thread, the calls of pf's event engine)
                      and ref-thr (two blocking threads per connection): the floors for a relay
  --keep              keep the work directory (logs, configs, raw results)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --quick) ROUNDS=1; DURATION=2; shift ;;
        --idle-conns) IDLE_CONNS="$2"; shift 2 ;;
        --rr-conns) RR_CONNS="$2"; shift 2 ;;
        --rr-threads) RR_CLIENT_THREADS="$2"; shift 2 ;;
        --server-threads) SERVER_THREADS="$2"; shift 2 ;;
        --base-port) BASE_PORT="$2"; shift 2 ;;
        --quiet-wait) QUIET_WAIT="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --bin) BIN="$(cd "$2" && pwd)" || exit 2; BUILD=0; shift 2 ;;
        --baseline) BASELINE="$(cd "$2" && pwd)" || exit 2; shift 2 ;;
        --busy-poll) BUSY_POLL="$2"; shift 2 ;;
        --threads) THREADS=1; shift ;;
        --reference) REFERENCE=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in ROUNDS DURATION IDLE_CONNS RR_CONNS RR_CLIENT_THREADS SERVER_THREADS BASE_PORT QUIET_WAIT; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then echo "run.sh: $v must be a non-negative integer" >&2; exit 2; fi
done
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 50 ]; then echo "run.sh: --rounds 1-50" >&2; exit 2; fi
if [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 120 ]; then echo "run.sh: --duration 1-120" >&2; exit 2; fi
if [ "$IDLE_CONNS" -lt 1 ] || [ "$IDLE_CONNS" -gt 50000 ]; then echo "run.sh: --idle-conns 1-50000" >&2; exit 2; fi
if [ -n "$BASELINE" ] && ! { [ -x "$BASELINE/pf-proxyd" ] && [ -x "$BASELINE/pf-proxy-worker" ]; }; then
    echo "run.sh: --baseline $BASELINE has no pf-proxyd and pf-proxy-worker" >&2; exit 2
fi
if [ "$BASE_PORT" -lt 1024 ] || [ "$BASE_PORT" -gt 32000 ]; then
    echo "run.sh: --base-port 1024-32000 (stay below the ephemeral range)" >&2; exit 2
fi
BP_WINDOWS=()
if [ -n "$BUSY_POLL" ]; then
    IFS=, read -r -a BP_WINDOWS <<< "$BUSY_POLL"
    if [ "${#BP_WINDOWS[@]}" -gt 3 ]; then echo "run.sh: --busy-poll takes at most 3 windows" >&2; exit 2; fi
    for w in "${BP_WINDOWS[@]}"; do
        # The policy checks the value itself; this only keeps it safe inside JSON and path names.
        if ! [[ "$w" =~ ^[0-9]+(\.[0-9]+)?(us|ms)$ ]]; then
            echo "run.sh: --busy-poll: expected durations such as 50us or 0.2ms, got \"$w\"" >&2; exit 2
        fi
    done
fi
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: must run as root (pf-proxyd starts as root and drops to nobody)" >&2
    exit 2
fi

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ------------------------------------------------------------------ processes and cleanup
PIDS=()
WORK=""
cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID [seconds]: SIGTERM one process we started, wait (bounded), then SIGKILL.
stop_pid() {
    local pid="$1" secs="${2:-10}" i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < secs * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

port_listening() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }
# wait_listen PORT [PID]: up to 10 s, and not longer than PID (the process expected to listen) lives.
wait_listen() {
    local i
    for ((i = 0; i < 200; i++)); do
        port_listening "$1" && return 0
        [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null && return 1
        sleep 0.05
    done
    return 1
}

# Summed utime+stime+cutime+cstime (clock ticks) of the given PIDs.
cpu_ticks() {
    local sum=0 pid rest
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        rest="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
        rest="${rest##*) }"
        # shellcheck disable=SC2086
        set -- $rest
        # fields after "comm": state(3) ... utime is field 14 overall = 12th here
        sum=$((sum + ${12} + ${13} + ${14} + ${15}))
    done
    echo "$sum"
}
HZ="$(getconf CLK_TCK)"

# Summed voluntary context switches (each one a sleep) of the given PIDs.
sleeps() {
    local sum=0 pid n
    for pid in "$@"; do
        n="$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}

# Fraction (percent) of CPU idle over 0.5 s, machine-wide.
idle_percent() {
    local a b
    read -r -a a < /proc/stat
    sleep 0.5
    read -r -a b < /proc/stat
    local busy=0 idle=0 k d
    for k in 1 2 3 4 5 6 7 8; do
        d=$((b[k] - a[k]))
        if [ "$k" = 4 ] || [ "$k" = 5 ]; then idle=$((idle + d)); else busy=$((busy + d)); fi
    done
    [ $((busy + idle)) -gt 0 ] || { echo 100; return; }
    echo $((100 * idle / (busy + idle)))
}
# Machine-wide busy clock ticks (all CPUs, everything but idle and iowait), for "machine CPU".
busy_ticks() {
    local a k sum=0
    read -r -a a < /proc/stat
    for k in 1 2 3 6 7 8; do sum=$((sum + a[k])); done
    echo "$sum"
}
NOISY=0
BUSY_STREAK=0
# Before each measurement: wait (bounded by --quiet-wait) until the machine is >= 85 % idle. After a
# wait that timed out, the next ones wait only 2 s until the machine has been seen quiet again, so a
# colleague's long job costs a little time per measurement, not --quiet-wait each time.
wait_quiet() {
    [ "$QUIET_WAIT" -gt 0 ] || return 0
    local i p limit=$((QUIET_WAIT * 2))
    [ "$BUSY_STREAK" -gt 0 ] && limit=4
    for ((i = 0; i < limit; i++)); do
        p="$(idle_percent)"
        if [ "$p" -ge 85 ]; then BUSY_STREAK=0; return 0; fi
    done
    NOISY=$((NOISY + 1))
    BUSY_STREAK=$((BUSY_STREAK + 1))
    log "  (machine busy: ${p}% idle; measuring anyway)"
}

# ------------------------------------------------------------------ setup
if [ -x "$ROOT/scripts/install-deps.sh" ]; then
    log "installing benchmark dependencies (scripts/install-deps.sh --bench)"
    "$ROOT/scripts/install-deps.sh" --bench >&2 || { echo "run.sh: install-deps.sh failed" >&2; exit 1; }
fi
SDPROXY=/lib/systemd/systemd-socket-proxyd
[ -x "$SDPROXY" ] || SDPROXY=/usr/lib/systemd/systemd-socket-proxyd
[ -x "$SDPROXY" ] || { echo "run.sh: systemd-socket-proxyd not found (Debian package systemd)" >&2; exit 1; }
for tool in iperf3 socat haproxy systemd-socket-activate g++ python3 ss; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
done

[ -n "$BIN" ] || BIN="$ROOT/build/bin"
if [ "$BUILD" = 1 ]; then
    ok=0
    for attempt in 1 2 3; do
        if ninja -C "$ROOT/build" pf-proxyd pf-proxy-worker >&2; then ok=1; break; fi
        log "build failed (attempt $attempt/3; a colleague may be mid-edit); retrying in 60 s"
        sleep 60
    done
    if [ "$ok" = 0 ]; then
        if [ -x "$BIN/pf-proxyd" ] && [ -x "$BIN/pf-proxy-worker" ]; then
            log "WARNING: build still failing; benchmarking the existing binaries in $BIN"
        else
            echo "run.sh: cannot build pf-proxyd" >&2; exit 1
        fi
    fi
fi
[ -x "$BIN/pf-proxyd" ] && [ -x "$BIN/pf-proxy-worker" ] || { echo "run.sh: no binaries in $BIN" >&2; exit 1; }

WORK="$(mktemp -d /tmp/pf-bench.XXXXXX)"
chmod 755 "$WORK"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
CB="$WORK/connbench"
log "compiling bench/connbench.cpp"
g++ -std=c++20 -O2 -pthread -o "$CB" "$BENCH/connbench.cpp" || { echo "run.sh: connbench build failed" >&2; exit 1; }
REF="$WORK/ref_relay"
if [ "$REFERENCE" = 1 ]; then
    g++ -std=c++20 -O2 -pthread -o "$REF" "$BENCH/ref_relay.cpp" || { echo "run.sh: ref_relay build failed" >&2; exit 1; }
fi

# Ports (all on 127.0.0.1).
P_SERVE=$BASE_PORT             # connbench serve: request/response and ping/echo
P_IPERF=$((BASE_PORT + 1))     # iperf3 -s -1 (one server per measurement)
P_W1_IPERF=$((BASE_PORT + 10)); P_W1_RR=$((BASE_PORT + 11))
P_W2_IPERF=$((BASE_PORT + 20)); P_W2_RR=$((BASE_PORT + 21))
P_SOCAT_IPERF=$((BASE_PORT + 30)); P_SOCAT_RR=$((BASE_PORT + 31))
P_HA_IPERF=$((BASE_PORT + 40)); P_HA_RR=$((BASE_PORT + 41))
P_PF_IDLE=$((BASE_PORT + 50)); P_HA_IDLE=$((BASE_PORT + 51))
P_SD_IPERF=$((BASE_PORT + 60)); P_SD_RR=$((BASE_PORT + 61))
P_B1_IPERF=$((BASE_PORT + 70)); P_B1_RR=$((BASE_PORT + 71))
P_B2_IPERF=$((BASE_PORT + 80)); P_B2_RR=$((BASE_PORT + 81))
# --busy-poll window i: BASE_PORT + 90 + 10 i (iperf), + 1 (rr)
P_THR_IPERF=$((BASE_PORT + 120)); P_THR_RR=$((BASE_PORT + 121))  # --threads
P_REV_IPERF=$((BASE_PORT + 130)); P_REV_RR=$((BASE_PORT + 131))  # --reference
P_RET_IPERF=$((BASE_PORT + 140)); P_RET_RR=$((BASE_PORT + 141))
BP_PORTS=()
for ((i = 0; i < ${#BP_WINDOWS[@]}; i++)); do BP_PORTS+=($((BASE_PORT + 90 + 10 * i)) $((BASE_PORT + 91 + 10 * i))); done
for p in $P_SERVE $P_IPERF $P_W1_IPERF $P_W1_RR $P_W2_IPERF $P_W2_RR $P_SOCAT_IPERF $P_SOCAT_RR \
         $P_HA_IPERF $P_HA_RR $P_PF_IDLE $P_HA_IDLE $P_SD_IPERF $P_SD_RR $P_B1_IPERF $P_B1_RR \
         $P_B2_IPERF $P_B2_RR $P_THR_IPERF $P_THR_RR $P_REV_IPERF $P_REV_RR $P_RET_IPERF $P_RET_RR \
         "${BP_PORTS[@]}"; do
    if port_listening "$p"; then echo "run.sh: port $p is in use; pick another --base-port" >&2; exit 1; fi
done

MAXCONN=$((IDLE_CONNS * 2 + 1000)); [ "$MAXCONN" -lt 10000 ] && MAXCONN=10000
# haproxy refuses to start if maxconn needs more fds (2 per connection) than the hard limit.
NOFILE_HARD="$(ulimit -Hn)"; [ "$NOFILE_HARD" = unlimited ] && NOFILE_HARD=1048576
HA_MAXCONN=$(( (NOFILE_HARD - 200) / 2 )); [ "$HA_MAXCONN" -gt "$MAXCONN" ] && HA_MAXCONN=$MAXCONN
if [ "$HA_MAXCONN" -lt $((IDLE_CONNS + 100)) ]; then
    echo "run.sh: --idle-conns $IDLE_CONNS needs a higher fd limit (ulimit -Hn is $NOFILE_HARD)" >&2; exit 2
fi
# Bound for every helper process we start: the whole run should be far shorter than this.
MAX_SECONDS=$((ROUNDS * (DURATION + 12) * 40 + 600))

# ------------------------------------------------------------------ servers and proxies
start_bg() {  # start_bg LOGFILE CMD...: runs CMD in the background, records its PID in BG_PID
    "${@:2}" > "$1" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# start_pfproxyd POLICYFILE LOG [BINDIR]: sets PF_PID, waits for "proxies ready" (10 s).
start_pfproxyd() {
    chmod 644 "$1"
    start_bg "$2" "${3:-$BIN}/pf-proxyd" --policy "$1"
    PF_PID=$BG_PID
    local i
    for ((i = 0; i < 200; i++)); do
        grep -q "proxies ready" "$2" 2>/dev/null && return 0
        kill -0 "$PF_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "run.sh: pf-proxyd did not become ready; its log:" >&2
    head -n 40 "$2" >&2
    if grep -q "handover failed" "$2"; then
        echo "run.sh: supervisor and worker disagree (working tree mid-change?). Benchmark a clean" \
             "snapshot instead: git archive HEAD | tar -x -C DIR/src; cmake -S DIR/src -B DIR/build" \
             "-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo; ninja -C DIR/build; run.sh --bin DIR/build/bin" >&2
    fi
    exit 1
}

# pf_workers SUPERVISOR_PID PREFIX: PIDs of the workers whose proxy name starts with PREFIX.
pf_workers() {
    local c out=()
    for c in $(pgrep -P "$1" 2>/dev/null); do
        if tr '\0' ' ' < "/proc/$c/cmdline" 2>/dev/null | grep -q "pf-proxy-worker: $2"; then out+=("$c"); fi
    done
    echo "${out[*]}"
}

pf_policy() {  # pf_policy NAME LISTEN UPSTREAM WORKERS [EXTRA-MEMBERS]
    printf '{"name": "%s", "listen": "tcp:127.0.0.1:%s", "upstream": "tcp:127.0.0.1:%s", "workers": %s, "max_connections": %s%s}' \
        "$1" "$2" "$3" "$4" "$MAXCONN" "${5:+, $5}"
}
thr_policies() {  # the --threads proxies, each line starting with a comma
    [ "$THREADS" = 1 ] || return 0
    local thr='"relay": "threads", "relay_threads": 4096'
    printf ',\n  %s,\n  %s' "$(pf_policy t1i "$P_THR_IPERF" "$P_IPERF" 1 "$thr")" \
        "$(pf_policy t1r "$P_THR_RR" "$P_SERVE" 1 "$thr")"
}
bp_policies() {  # the --busy-poll proxies, each line starting with a comma
    local i
    for ((i = 0; i < ${#BP_WINDOWS[@]}; i++)); do
        printf ',\n  %s,\n  %s' \
            "$(pf_policy "bp${i}i" "${BP_PORTS[2 * i]}" "$P_IPERF" 1 "\"busy_poll\": \"${BP_WINDOWS[i]}\"")" \
            "$(pf_policy "bp${i}r" "${BP_PORTS[2 * i + 1]}" "$P_SERVE" 1 "\"busy_poll\": \"${BP_WINDOWS[i]}\"")"
    done
}

haproxy_cfg() {  # haproxy_cfg FILE (LISTEN UPSTREAM)...
    local f="$1"; shift
    {
        echo "global"
        echo "    nbthread 2"
        echo "    maxconn $HA_MAXCONN"
        echo "defaults"
        echo "    mode tcp"
        echo "    timeout connect 10s"
        echo "    timeout client 1h"
        echo "    timeout server 1h"
        local n=0
        while [ $# -ge 2 ]; do
            echo "listen l$n"
            echo "    bind 127.0.0.1:$1"
            echo "    server s$n 127.0.0.1:$2"
            n=$((n + 1)); shift 2
        done
    } > "$f"
}

# start_haproxy CFG LOG PORT: sets HA_PID.
start_haproxy() {
    start_bg "$2" haproxy -db -f "$1"
    HA_PID=$BG_PID
    wait_listen "$3" "$HA_PID" || { echo "run.sh: haproxy did not start; its log:" >&2; cat "$2" >&2; exit 1; }
}

log "work directory $WORK; rounds=$ROUNDS duration=${DURATION}s idle-conns=$IDLE_CONNS; binaries from $BIN"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"

start_bg "$WORK/serve.log" "$CB" serve --port "$P_SERVE" --threads "$SERVER_THREADS" --max-seconds "$MAX_SECONDS"
SERVE_PID=$BG_PID
wait_listen "$P_SERVE" "$SERVE_PID" || { echo "run.sh: connbench serve did not start" >&2; exit 1; }

cat > "$WORK/policy.json" <<EOF
{"user": "nobody", "drain_timeout": "1s", "proxies": [
  $(pf_policy w1i "$P_W1_IPERF" "$P_IPERF" 1),
  $(pf_policy w1r "$P_W1_RR" "$P_SERVE" 1),
  $(pf_policy w2i "$P_W2_IPERF" "$P_IPERF" 2),
  $(pf_policy w2r "$P_W2_RR" "$P_SERVE" 2)$(thr_policies)$(bp_policies)
]}
EOF
start_pfproxyd "$WORK/policy.json" "$WORK/pf-proxyd.log"
PF_MAIN=$PF_PID

start_bg "$WORK/socat-iperf.log" socat "TCP-LISTEN:$P_SOCAT_IPERF,bind=127.0.0.1,fork,reuseaddr,backlog=4096" "TCP:127.0.0.1:$P_IPERF"
SOCAT1=$BG_PID
start_bg "$WORK/socat-rr.log" socat "TCP-LISTEN:$P_SOCAT_RR,bind=127.0.0.1,fork,reuseaddr,backlog=4096" "TCP:127.0.0.1:$P_SERVE"
SOCAT2=$BG_PID
wait_listen "$P_SOCAT_IPERF" && wait_listen "$P_SOCAT_RR" || { echo "run.sh: socat did not start" >&2; exit 1; }

if [ -n "$BASELINE" ]; then
    cat > "$WORK/policy-base.json" <<EOF
{"user": "nobody", "drain_timeout": "1s", "proxies": [
  $(pf_policy b1i "$P_B1_IPERF" "$P_IPERF" 1),
  $(pf_policy b1r "$P_B1_RR" "$P_SERVE" 1),
  $(pf_policy b2i "$P_B2_IPERF" "$P_IPERF" 2),
  $(pf_policy b2r "$P_B2_RR" "$P_SERVE" 2)
]}
EOF
    start_pfproxyd "$WORK/policy-base.json" "$WORK/pf-proxyd-base.log" "$BASELINE"
    PF_BASE=$PF_PID
fi

# systemd-socket-proxyd as systemd runs it: the listener comes from socket activation
# (systemd-socket-activate opens it and execs the proxy, so the PID is the proxy's).
start_bg "$WORK/sdproxy-iperf.log" systemd-socket-activate -l "127.0.0.1:$P_SD_IPERF" "$SDPROXY" "127.0.0.1:$P_IPERF"
SD1=$BG_PID
start_bg "$WORK/sdproxy-rr.log" systemd-socket-activate -l "127.0.0.1:$P_SD_RR" "$SDPROXY" "127.0.0.1:$P_SERVE"
SD2=$BG_PID
wait_listen "$P_SD_IPERF" "$SD1" && wait_listen "$P_SD_RR" "$SD2" || { echo "run.sh: systemd-socket-proxyd did not start" >&2; exit 1; }

haproxy_cfg "$WORK/haproxy.cfg" "$P_HA_IPERF" "$P_IPERF" "$P_HA_RR" "$P_SERVE"
start_haproxy "$WORK/haproxy.cfg" "$WORK/haproxy.log" "$P_HA_IPERF"
HA_MAIN=$HA_PID
wait_listen "$P_HA_RR" || { echo "run.sh: haproxy did not listen on $P_HA_RR" >&2; exit 1; }

if [ "$REFERENCE" = 1 ]; then
    start_bg "$WORK/ref-ev-iperf.log" "$REF" --listen "$P_REV_IPERF" --upstream "$P_IPERF" --max-seconds "$MAX_SECONDS"
    REV1=$BG_PID
    start_bg "$WORK/ref-ev-rr.log" "$REF" --listen "$P_REV_RR" --upstream "$P_SERVE" --max-seconds "$MAX_SECONDS"
    REV2=$BG_PID
    start_bg "$WORK/ref-thr-iperf.log" "$REF" --threads --listen "$P_RET_IPERF" --upstream "$P_IPERF" --max-seconds "$MAX_SECONDS"
    RET1=$BG_PID
    start_bg "$WORK/ref-thr-rr.log" "$REF" --threads --listen "$P_RET_RR" --upstream "$P_SERVE" --max-seconds "$MAX_SECONDS"
    RET2=$BG_PID
    wait_listen "$P_REV_IPERF" "$REV1" && wait_listen "$P_REV_RR" "$REV2" && wait_listen "$P_RET_IPERF" "$RET1" &&
        wait_listen "$P_RET_RR" "$RET2" || { echo "run.sh: ref_relay did not start" >&2; exit 1; }
fi

PATHS=(direct pf-w1 pf-w2 socat haproxy sdproxy)
[ -n "$BASELINE" ] && PATHS+=(base-w1 base-w2)
[ "$THREADS" = 1 ] && PATHS+=(pf-thr)
[ "$REFERENCE" = 1 ] && PATHS+=(ref-ev ref-thr)
for w in "${BP_WINDOWS[@]}"; do PATHS+=("bp-$w"); done
bp_index() {  # bp_index PATH: i of the window the path bp-WINDOW measures
    local i
    for ((i = 0; i < ${#BP_WINDOWS[@]}; i++)); do [ "bp-${BP_WINDOWS[i]}" = "$1" ] && echo "$i"; done
}
path_port() {  # path_port PATH iperf|rr
    case "$1:$2" in
        direct:iperf) echo "$P_IPERF" ;;  direct:rr) echo "$P_SERVE" ;;
        pf-w1:iperf) echo "$P_W1_IPERF" ;; pf-w1:rr) echo "$P_W1_RR" ;;
        pf-w2:iperf) echo "$P_W2_IPERF" ;; pf-w2:rr) echo "$P_W2_RR" ;;
        pf-thr:iperf) echo "$P_THR_IPERF" ;; pf-thr:rr) echo "$P_THR_RR" ;;
        ref-ev:iperf) echo "$P_REV_IPERF" ;; ref-ev:rr) echo "$P_REV_RR" ;;
        ref-thr:iperf) echo "$P_RET_IPERF" ;; ref-thr:rr) echo "$P_RET_RR" ;;
        socat:iperf) echo "$P_SOCAT_IPERF" ;; socat:rr) echo "$P_SOCAT_RR" ;;
        haproxy:iperf) echo "$P_HA_IPERF" ;; haproxy:rr) echo "$P_HA_RR" ;;
        sdproxy:iperf) echo "$P_SD_IPERF" ;; sdproxy:rr) echo "$P_SD_RR" ;;
        base-w1:iperf) echo "$P_B1_IPERF" ;; base-w1:rr) echo "$P_B1_RR" ;;
        base-w2:iperf) echo "$P_B2_IPERF" ;; base-w2:rr) echo "$P_B2_RR" ;;
        bp-*:iperf) echo "${BP_PORTS[2 * $(bp_index "$1")]}" ;;
        bp-*:rr) echo "${BP_PORTS[2 * $(bp_index "$1") + 1]}" ;;
    esac
}
path_pids() {  # path_pids PATH iperf|rr: the proxy processes whose CPU time is counted
    local suffix; [ "$2" = iperf ] && suffix=i || suffix=r
    case "$1" in
        direct) echo "" ;;
        pf-w1) pf_workers "$PF_MAIN" "w1$suffix" ;;
        pf-w2) pf_workers "$PF_MAIN" "w2$suffix" ;;
        pf-thr) pf_workers "$PF_MAIN" "t1$suffix" ;;
        ref-ev) [ "$2" = iperf ] && echo "$REV1" || echo "$REV2" ;;
        ref-thr) [ "$2" = iperf ] && echo "$RET1" || echo "$RET2" ;;
        socat) [ "$2" = iperf ] && echo "$SOCAT1" || echo "$SOCAT2" ;;
        haproxy) echo "$HA_MAIN" ;;
        sdproxy) [ "$2" = iperf ] && echo "$SD1" || echo "$SD2" ;;
        base-w1) pf_workers "$PF_BASE" "b1$suffix" ;;
        base-w2) pf_workers "$PF_BASE" "b2$suffix" ;;
        bp-*) pf_workers "$PF_MAIN" "bp$(bp_index "$1")$suffix" ;;
    esac
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$RESULTS"; }  # round test path metric value

# ------------------------------------------------------------------ measurements
# shellcheck source=bench/measure.sh
source "$BENCH/measure.sh"

START=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round/$ROUNDS"
    if want tput; then
        for spec in "t1f 1 0" "t1r 1 1" "t4f 4 0" "t4r 4 1"; do
            read -r test streams rev <<< "$spec"
            for path in "${PATHS[@]}"; do run_iperf "$round" "$test" "$path" "$streams" "$rev"; done
        done
    fi
    if want rr; then
        for path in "${PATHS[@]}"; do run_rr "$round" "$path"; done
    fi
    if want lat; then
        for path in "${PATHS[@]}"; do run_lat "$round" "$path"; done
    fi
    if want idle; then run_idle "$round"; fi
    # Workers that died would have been restarted with new PIDs: say so, it skews the numbers.
    # (The words of supervisor/restart_policy.cpp; "signal" alone matches the Landlock line.)
    if grep -q "exited with status\|killed by signal" "$WORK/pf-proxyd.log" ${BASELINE:+"$WORK/pf-proxyd-base.log"}; then
        log "WARNING: a pf-proxyd worker exited during the run (see $WORK/pf-proxyd.log)"
    fi
done
log "measurements took $(( $(date +%s) - START )) s; $NOISY measurement(s) started while the machine was busy"

python3 "$BENCH/report.py" "$RESULTS" --rounds "$ROUNDS" --duration "$DURATION" \
    --idle-conns "$IDLE_CONNS" --noisy "$NOISY" --rr-conns "$RR_CONNS" \
    --rr-threads "$RR_CLIENT_THREADS" --server-threads "$SERVER_THREADS"
