#!/usr/bin/env bash
# The raw packet tunnel (nfqueue-to-stream -> Unix stream -> stream-to-raw, both directions) vs
# the direct veth path, in one run: UDP datagrams delivered per second (64 and 1400 bytes) and TCP
# Mbit/s (iperf3), between two network namespaces this script makes. In the tunnel rounds an
# iptables NFQUEUE rule in each namespace takes every packet bound for the other, so the veth
# carries none of them. Not run in CI; numbers mean something only as ratios in one run. Every
# process started is recorded by PID and ended on exit, the namespaces are deleted.
# With --source nflog the readers are nflog-to-stream instead: an NFLOG rule copies the packets and
# a route into a sink veth (ARP off) takes the originals, as docs/policy.md describes.
# With --gso the nfqueue readers take GSO packets whole ("gso": true); --route-mtu N has the
# injectors cut whole TCP packets to N bytes before they inject them ("route_mtu"), --route-mtu
# auto to the MTU the kernel reports for their route. --lo-mtu N holds each namespace's lo (the
# injectors' route, to their own addresses) to N bytes, as a real link would be.
#   sudo bench/raw.sh [--duration S] [--flows N] [--rounds N] [--bin DIR] [--source nfqueue|nflog]
#                     [--gso] [--route-mtu N|auto] [--lo-mtu N]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=5
FLOWS=8
ROUNDS=2
BIN="$ROOT/build/bin"
SOURCE=nfqueue
READER_KEYS=""
INJECTOR_KEYS=""
LO_MTU=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --flows) FLOWS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --bin) BIN="$(cd "$2" && pwd)"; shift 2 ;;
        --source) SOURCE="$2"; shift 2 ;;
        --gso) READER_KEYS=', "gso": true'; shift ;;
        --route-mtu)
            if [ "$2" = auto ]; then INJECTOR_KEYS=', "route_mtu": "auto"'
            else INJECTOR_KEYS=", \"route_mtu\": $2"; fi
            shift 2 ;;
        --lo-mtu) LO_MTU="$2"; shift 2 ;;
        *) echo "raw.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "raw.sh: run as root (namespaces, iptables, nfqueue)" >&2; exit 2; }
for tool in ip iptables iperf3 python3; do
    command -v "$tool" >/dev/null || { echo "raw.sh: $tool is missing" >&2; exit 2; }
done
WORK="$(mktemp -d)"
chmod 755 "$WORK"
A="pfpbench-a-$$"
B="pfpbench-b-$$"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del "$A" 2>/dev/null
    ip netns del "$B" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
g++ -std=c++20 -O2 -o "$WORK/udp_bench" "$ROOT/bench/udp_bench.cpp" || exit 1

ip netns add "$A" && ip netns add "$B" || exit 1
ip -n "$A" link set lo up
ip -n "$B" link set lo up
if [ -n "$LO_MTU" ]; then
    ip -n "$A" link set lo mtu "$LO_MTU" && ip -n "$B" link set lo mtu "$LO_MTU" || exit 1
fi
ip -n "$A" link add va type veth peer name vb netns "$B"
ip -n "$A" addr add 10.98.0.1/24 dev va
ip -n "$B" addr add 10.98.0.2/24 dev vb
ip -n "$A" link set va up
ip -n "$B" link set vb up

# One pf-proxyd per namespace: its queue -> the stream to the other side; the other side's
# stream -> a routed raw socket.
start_pfproxy() {  # ns name queue out_sock in_sock
    cat > "$WORK/$2.json" <<JSON
{"user": "nobody", "drain_timeout": "1s", "proxies": [
  {"name": "$2-out", "listen": "$SOURCE:$3", "upstream": "unix:$4"$READER_KEYS},
  {"name": "$2-in", "listen": "unix:$5", "upstream": "raw:route"$INJECTOR_KEYS}]}
JSON
    ip netns exec "$1" "$BIN/pf-proxyd" --policy "$WORK/$2.json" \
        --control "$WORK/$2.ctl" 2> "$WORK/$2.log" &
    PIDS+=($!)
    for _ in $(seq 1 200); do grep -q "proxies ready" "$WORK/$2.log" && return; sleep 0.05; done
    echo "raw.sh: pf-proxyd in $1 did not start" >&2; cat "$WORK/$2.log" >&2; exit 1
}
start_pfproxy "$A" a 3 "$WORK/ab.sock" "$WORK/ba.sock"
start_pfproxy "$B" b 5 "$WORK/ba.sock" "$WORK/ab.sock"

case "$SOURCE" in
    nfqueue|nflog) ;;
    *) echo "raw.sh: --source is nfqueue or nflog, not $SOURCE" >&2; exit 2 ;;
esac
for ns in "$A" "$B"; do
    ip -n "$ns" link add sink type veth peer name sinkpeer
    ip -n "$ns" link set sinkpeer up
    ip -n "$ns" link set sink arp off gso_max_size 32768 up
done
tunnel() {  # on|off
    local op=-D rop=del
    [ "$1" = on ] && op=-I && rop=add
    if [ "$SOURCE" = nfqueue ]; then
        ip netns exec "$A" iptables "$op" OUTPUT -d 10.98.0.2 -j NFQUEUE --queue-num 3
        ip netns exec "$B" iptables "$op" OUTPUT -d 10.98.0.1 -j NFQUEUE --queue-num 5
    else
        ip -n "$A" route "$rop" 10.98.0.2/32 dev sink src 10.98.0.1
        ip -n "$B" route "$rop" 10.98.0.1/32 dev sink src 10.98.0.2
        ip netns exec "$A" iptables "$op" OUTPUT -d 10.98.0.2 -j NFLOG --nflog-group 3
        ip netns exec "$B" iptables "$op" OUTPUT -d 10.98.0.1 -j NFLOG --nflog-group 5
    fi
}

SINK_PORT=9000
mkfifo "$WORK/sink.in"
ip netns exec "$B" "$WORK/udp_bench" sink "$SINK_PORT" 10.98.0.2 < "$WORK/sink.in" \
    > "$WORK/sink.out" &
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
ip netns exec "$B" iperf3 -s -B 10.98.0.2 -p 5201 > "$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
sleep 0.5

udp_rate() {  # size: datagrams delivered per second
    local before after
    before=$(sink_count)
    ip netns exec "$A" timeout -k 2 $((DURATION + 20)) \
        "$WORK/udp_bench" blast "$SINK_PORT" "$1" "$DURATION" "$FLOWS" 10.98.0.2 > /dev/null
    sleep 0.3  # what is in flight arrives
    after=$(sink_count)
    echo $(( (after - before) / DURATION ))
}
tcp_mbit() {
    ip netns exec "$A" timeout -k 2 $((DURATION + 30)) \
        iperf3 -c 10.98.0.2 -p 5201 -t "$DURATION" -J 2>/dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6))' \
        2>/dev/null || echo 0
}

# Interleaved rounds: direct, tunnel, direct, tunnel...
: > "$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
    for path in direct tunnel; do
        [ "$path" = tunnel ] && tunnel on
        for size in 64 1400; do echo "$path udp$size $(udp_rate "$size")" >> "$WORK/results"; done
        echo "$path tcp $(tcp_mbit)" >> "$WORK/results"
        [ "$path" = tunnel ] && tunnel off
    done
done

python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    path, what, value = line.split()
    rows.setdefault((path, what), []).append(float(value))
print(f"{'measure':<22} {'direct':>12} {'tunnel':>12} {'ratio':>7}")
for what, unit in (("udp64", "datagrams/s 64 B"), ("udp1400", "datagrams/s 1400 B"), ("tcp", "TCP Mbit/s")):
    d = statistics.median(rows.get(("direct", what), [0]))
    t = statistics.median(rows.get(("tunnel", what), [0]))
    print(f"{unit:<22} {d:>12.0f} {t:>12.0f} {t / d if d else 0:>7.2f}")
PY
echo "pf-proxyd's own view (drops, reconnects):"
for side in a b; do
    "$BIN/pf-proxyctl" --control "$WORK/$side.ctl" status 2>/dev/null | sed "s/^/  $side: /"
done
