# bench/run.sh's measurements, sourced by it: one function per test, each measuring one path of
# one round and appending its numbers to $RESULTS (round, test, path, metric, value). They use
# run.sh's settings, ports and helpers (path_port, path_pids, cpu_ticks, wait_quiet, start_bg).
# shellcheck shell=bash

# run_iperf ROUND TEST PATH STREAMS REVERSE(0|1)
run_iperf() {
    local round="$1" test="$2" path="$3" streams="$4" rev="$5"
    local port pids c0 c1 t0 t1 spid json="$WORK/iperf-$test-$path-$round.json"
    port="$(path_port "$path" iperf)"
    pids="$(path_pids "$path" iperf)"
    wait_quiet
    start_bg "$WORK/iperf-server.log" iperf3 -s -1 -B 127.0.0.1 -p "$P_IPERF"
    spid=$BG_PID
    if ! wait_listen "$P_IPERF" "$spid"; then log "  iperf3 server did not start"; stop_pid "$spid" 2; return; fi
    # shellcheck disable=SC2086
    c0="$(cpu_ticks $pids)"; t0="$(date +%s%N)"; local m0 m1; m0="$(busy_ticks)"
    local revflag=(); [ "$rev" = 1 ] && revflag=(-R)
    timeout -k 2 $((DURATION + 25)) iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" -O 1 -P "$streams" \
        "${revflag[@]}" -J > "$json" 2>>"$WORK/iperf-client.log"
    t1="$(date +%s%N)"; m1="$(busy_ticks)"
    sleep 0.2  # socat children and haproxy finish their last reads
    # shellcheck disable=SC2086
    c1="$(cpu_ticks $pids)"
    stop_pid "$spid" 5
    local vals gbps endpoints
    # Gbit/s received, and the CPU of iperf3's client and server in cores (iperf3's own getrusage
    # over the test), for the CPU of all parties.
    vals="$(python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    c = d["end"]["cpu_utilization_percent"]
    print("%.3f %.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9,
                         (c["host_total"] + c["remote_total"]) / 100))
except Exception:
    print("")' "$json")"
    read -r gbps endpoints <<< "$vals"
    if [ -z "$gbps" ]; then log "  $test $path: iperf3 failed (see $json)"; return; fi
    local wall proxy_cores=0
    wall="$(python3 -c "print(($t1 - $t0) / 1e9)")"
    record "$round" "$test" "$path" gbps "$gbps"
    record "$round" "$test" "$path" machine "$(python3 -c "print('%.3f' % (($m1 - $m0) / $HZ / $wall))")"
    if [ -n "$pids" ]; then
        # proxy CPU in cores (CPU seconds / wall seconds)
        proxy_cores="$(python3 -c "print('%.3f' % (($c1 - $c0) / $HZ / $wall))")"
        record "$round" "$test" "$path" cores "$proxy_cores"
    fi
    record "$round" "$test" "$path" all_cores "$(python3 -c "print('%.3f' % ($endpoints + $proxy_cores))")"
    log "  $test $path: $gbps Gbit/s"
}

# run_rr ROUND PATH
run_rr() {
    local round="$1" path="$2" port pids c0 c1 out p
    port="$(path_port "$path" rr)"
    pids="$(path_pids "$path" rr)"
    wait_quiet
    local per=()
    for p in $pids; do per+=("$(cpu_ticks "$p")"); done
    # shellcheck disable=SC2086
    c0="$(cpu_ticks $pids)"; local m0 m1 s0 s1; m0="$(busy_ticks)"; s0="$(cpu_ticks "$SERVE_PID")"
    out="$(timeout -k 2 $((DURATION + 30)) "$CB" rr --port "$port" --conns "$RR_CONNS" \
        --threads "$RR_CLIENT_THREADS" --duration "$DURATION" --warmup 1 2>>"$WORK/rr.log")"
    m1="$(busy_ticks)"
    sleep 0.2
    # shellcheck disable=SC2086
    c1="$(cpu_ticks $pids)"; s1="$(cpu_ticks "$SERVE_PID")"
    if [ -z "$out" ]; then log "  rr $path: client failed"; return; fi
    echo "$round $path $out" >> "$WORK/rr.jsonl"
    local vals
    vals="$(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print(d["rate"], d["p50_us"], d["p99_us"], d["errors"], d["total"], int(d["cpu_us"]))' "$out")"
    local rate p50 p99 errs total client_us
    read -r rate p50 p99 errs total client_us <<< "$vals"
    record "$round" rr "$path" rate "$rate"
    record "$round" rr "$path" p50 "$p50"
    record "$round" rr "$path" p99 "$p99"
    record "$round" rr "$path" errors "$errs"
    if [ "$total" -gt 0 ]; then
        record "$round" rr "$path" machine_us "$(( (m1 - m0) * 1000000 / HZ / total ))"
        # client (getrusage) + server + proxy CPU per connection
        record "$round" rr "$path" all_us "$(( (client_us + (s1 - s0 + c1 - c0) * 1000000 / HZ) / total ))"
    fi
    if [ -n "$pids" ] && [ "$total" -gt 0 ]; then
        record "$round" rr "$path" cpu_us "$(( (c1 - c0) * 1000000 / HZ / total ))"
    fi
    if [[ "$path" == *-w2 ]]; then
        # accept distribution: share of the busiest worker in the workers' CPU time
        local i=0 d sum=0 max=0
        for p in $pids; do
            d=$(( $(cpu_ticks "$p") - per[i] )); i=$((i + 1))
            sum=$((sum + d)); [ "$d" -gt "$max" ] && max=$d
        done
        [ "$sum" -gt 0 ] && record "$round" rr "$path" busiest_share "$((100 * max / sum))"
    fi
    log "  rr $path: $rate conn/s, p50 ${p50} us, p99 ${p99} us, errors $errs"
}

# run_lat ROUND PATH: one connection, one 100-byte request in flight (echoed by connbench serve).
run_lat() {
    local round="$1" path="$2" port pids c0 c1 out
    port="$(path_port "$path" rr)"
    pids="$(path_pids "$path" rr)"
    wait_quiet
    # shellcheck disable=SC2086
    c0="$(cpu_ticks $pids)"; local v0 v1; v0="$(sleeps $pids)"
    out="$(timeout -k 2 $((DURATION + 30)) "$CB" ping --port "$port" --size 100 \
        --duration "$DURATION" --warmup 0.5 2>>"$WORK/lat.log")"
    # shellcheck disable=SC2086
    c1="$(cpu_ticks $pids)"; v1="$(sleeps $pids)"
    if [ -z "$out" ]; then log "  lat $path: client failed"; return; fi
    echo "$round $path $out" >> "$WORK/lat.jsonl"
    local p50 p99 count
    read -r p50 p99 count <<< "$(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print(d["p50_us"], d["p99_us"], d["count"])' "$out")"
    record "$round" lat "$path" p50 "$p50"
    record "$round" lat "$path" p99 "$p99"
    if [ -n "$pids" ] && [ "$count" -gt 0 ]; then
        # proxy CPU per exchange (the warm-up's exchanges are in the ticks too: slightly high)
        record "$round" lat "$path" cpu_us "$(python3 -c "print('%.1f' % (($c1 - $c0) * 1e6 / $HZ / $count))")"
        # the proxy's sleeps (wake-ups) per exchange: what busy_poll removes
        record "$round" lat "$path" sleeps "$(python3 -c "print('%.3f' % (($v1 - $v0) / $count))")"
    fi
    log "  lat $path: p50 ${p50} us, p99 ${p99} us ($count exchanges)"
}

# run_idle ROUND: fresh pf-proxyd (workers: 2) and fresh haproxy, N idle connections through each.
run_idle() {
    local round="$1" out pids
    cat > "$WORK/policy-idle.json" <<EOF
{"user": "nobody", "drain_timeout": "1s", "proxies": [$(pf_policy idle "$P_PF_IDLE" "$P_SERVE" 2)]}
EOF
    start_pfproxyd "$WORK/policy-idle.json" "$WORK/pf-proxyd-idle-$round.log"
    local pf_idle=$PF_PID
    pids="$(pf_workers "$pf_idle" idle)"
    wait_quiet
    out="$(timeout -k 2 120 "$CB" idle --port "$P_PF_IDLE" --count "$IDLE_CONNS" --pids "${pids// /,}" --timeout 100)"
    stop_pid "$pf_idle" 10
    echo "$round pf-w2 $out" >> "$WORK/idle.jsonl"
    record_idle "$round" pf-w2 "$out"

    haproxy_cfg "$WORK/haproxy-idle.cfg" "$P_HA_IDLE" "$P_SERVE"
    start_haproxy "$WORK/haproxy-idle.cfg" "$WORK/haproxy-idle-$round.log" "$P_HA_IDLE"
    local ha_idle=$HA_PID
    wait_quiet
    out="$(timeout -k 2 120 "$CB" idle --port "$P_HA_IDLE" --count "$IDLE_CONNS" --pids "$ha_idle" --timeout 100)"
    stop_pid "$ha_idle" 10
    echo "$round haproxy $out" >> "$WORK/idle.jsonl"
    record_idle "$round" haproxy "$out"
}
record_idle() {
    local vals
    vals="$(python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
    print(d["kb_per_conn"], d["open"], d["errors"], "/".join(str(v["fds_added"]) for v in d["pids"].values()))
except Exception:
    pass' "$3")"
    if [ -z "$vals" ]; then log "  idle $2: failed: $3"; return; fi
    local kb open errs fds
    read -r kb open errs fds <<< "$vals"
    record "$1" idle "$2" kb_per_conn "$kb"
    record "$1" idle "$2" open "$open"
    record "$1" idle "$2" fds_added "$fds"
    log "  idle $2: $kb KB RSS per connection ($open open, $errs errors, fds added per process: $fds)"
}
