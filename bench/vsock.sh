#!/usr/bin/env bash
# vsock throughput, round trip and connection rate through pf-proxyd's relays against direct
# vsock, measured in one boot of the QEMU guest of tests/vm (this kernel has no vsock loopback).
# Prints a markdown table. Not run in CI. See bench/README.md ("vsock in the guest").
#
#   bench/vsock.sh [--rounds N] [--seconds S] [--build-dir DIR] [--no-build] [--keep] [--syscalls]
# --syscalls: also count each relay's system calls per round trip (strace in the guest).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
ROUNDS=3
SECONDS_PER=2
BUILD=1
KEEP=()
TRACE=()

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECONDS_PER="$2"; shift 2 ;;
        --build-dir) BUILD_DIR="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=(--keep-log); shift ;;
        --syscalls)
            command -v strace >/dev/null || { echo "vsock.sh: --syscalls needs strace" >&2; exit 2; }
            TRACE=(--add "$(command -v strace)"); shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "vsock.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if ! [[ "$ROUNDS" =~ ^[0-9]+$ ]] || [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 20 ]; then
    echo "vsock.sh: --rounds 1-20" >&2; exit 2
fi
if ! [[ "$SECONDS_PER" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER" -lt 1 ] || [ "$SECONDS_PER" -gt 30 ]; then
    echo "vsock.sh: --seconds 1-30 (whole seconds)" >&2; exit 2
fi

if [ "$BUILD" = 1 ]; then
    ninja -C "$BUILD_DIR" pf-proxyd pf-proxy-worker vsock_bench >&2 || exit 1
fi
BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"

# 11 paths x 3 measurements x rounds, each S seconds (plus set-up), and boot and start-up; the
# event and "relay": "threads" engines of each kind are separate paths of the one run.
timeout_s=$(( ROUNDS * 33 * (SECONDS_PER + 2) + 120 + ${#TRACE[@]} * 90 ))
log="$(mktemp "${TMPDIR:-/tmp}/vsock-bench.XXXXXX")" || exit 1
"$ROOT/tests/vm/run-guest.sh" --build-dir "$BUILD_DIR" --timeout "$timeout_s" --quiet \
    --log "$log" "${KEEP[@]}" "${TRACE[@]}" -- \
    vsock_bench --bin "$BUILD_DIR/bin" --rounds "$ROUNDS" --seconds "$SECONDS_PER" \
    ${TRACE:+--strace "${TRACE[1]}"}
status=$?
if [ "$status" != 0 ]; then
    echo "vsock.sh: the guest run failed (status $status); log: $log" >&2
    exit "$status"
fi
tr -d '\r' < "$log" | sed -n '/<!-- vsock_bench begin -->/,/<!-- vsock_bench end -->/p' | sed '1d;$d'
if [ "${#KEEP[@]}" -gt 0 ]; then echo "vsock.sh: guest log kept: $log" >&2; else rm -f "$log"; fi
