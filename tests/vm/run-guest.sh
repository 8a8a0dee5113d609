#!/usr/bin/env bash
# Boots a QEMU guest whose kernel has vsock loopback (CID 1 carries data), runs one command in it
# and returns that command's exit status. The host kernel has no vsock loopback, so every test that
# moves real vsock data runs here. See docs/testing.md ("The vsock guest").
#
#   tests/vm/run-guest.sh [options] [--] COMMAND [ARGS...]
#   tests/vm/run-guest.sh -- vm_guest_tests --gtest_filter='VsockGuest.*Half*'
#   tests/vm/run-guest.sh --shell              # interactive busybox shell in the guest
#
# Exit status: the guest command's own status, except these, which the harness reserves:
#   124  the guest did not finish within --timeout (the VM was killed)
#   125  setup failed on the host (no qemu, download failed, build tree incomplete, ...)
#   126  the guest crashed: it ended without printing its exit marker (kernel panic, init died)
# A guest command that itself exits 124, 125 or 126 is reported as 1, with a message.
#
# The guest: Debian's 6.1 cloud kernel and busybox-static, fetched once with apt-get download into
# the cache directory; an initramfs built per run from the build tree (project binaries at the
# same absolute path as on the host, since the tests have PFPROXY_BIN_DIR compiled in, plus every
# shared library ldd lists). Only bash, coreutils, apt-get, dpkg-deb, cpio, gzip, ldd and qemu are
# needed on the host; no root (apt-get update is tried only when root).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${PFP_VM_BUILD_DIR:-$ROOT/build}"
CACHE_DIR="${PFP_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/pf-proxy-vm}"
TIMEOUT="${PFP_VM_TIMEOUT:-240}"
MEMORY="${PFP_VM_MEMORY:-1024}"
LOG=""
KEEP_LOG=0
QUIET=0
SHELL_MODE=0
FETCH_ONLY=0
EXTRA=()  # files to add: SRC or SRC:GUEST_PATH

readonly EXIT_TIMEOUT=124 EXIT_SETUP=125 EXIT_CRASH=126
readonly MARKER="PFP-GUEST-EXIT="
# The modules that give the guest vsock loopback, in insmod order (each needs the one before).
readonly MODULES=(vsock vmw_vsock_virtio_transport_common vsock_loopback)
# Project binaries copied into the guest when the build tree has them.
readonly BINARIES=(pf-proxyd pf-proxy-worker pf-proxy-compat pf-proxyctl vm_guest_tests vsock_bench)
# Netfilter in the guest, in insmod order: iptables REDIRECT and SO_ORIGINAL_DST (transparent
# kinds), NFQUEUE and NFLOG in the filter table (raw packet tunnel). A failure is reported on the
# console but does not stop the guest; the tests that need the module then fail.
readonly NF_MODULES=(libcrc32c nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack nf_nat x_tables ip_tables
                     iptable_nat iptable_filter xt_tcpudp xt_REDIRECT xt_owner nfnetlink
                     nfnetlink_queue xt_NFQUEUE nfnetlink_log xt_NFLOG)
# iptables-legacy (no nf_tables needed) and the extensions those rules use; dlopen()ed, so ldd of
# the binary does not list them.
readonly XTABLES_BIN=/usr/sbin/xtables-legacy-multi
readonly XTABLES_EXT=(libxt_standard.so libxt_tcp.so libxt_udp.so libxt_REDIRECT.so libxt_owner.so
                      libxt_NFQUEUE.so libxt_NFLOG.so)
readonly SEED_LINKS=(vsock-to-ip ip-to-vsock vsock-to-ip-transparent ip-to-vsock-transparent
                     transparent-port-to-vsock port-to-vsock-transparent vsockproxy)

usage() {
    cat <<EOF
Usage: $0 [options] [--] COMMAND [ARGS...]
Runs COMMAND in a QEMU guest with vsock loopback; exits with its status (124 timeout,
125 setup failure, 126 guest crash).
  --build-dir DIR   build tree whose bin/ goes into the guest (env PFP_VM_BUILD_DIR; default build)
  --cache-dir DIR   where the kernel and busybox are kept between runs (env PFP_VM_CACHE;
                    default \${XDG_CACHE_HOME:-\$HOME/.cache}/pf-proxy-vm)
  --timeout S       kill the VM after S seconds (env PFP_VM_TIMEOUT; default $TIMEOUT)
  --memory MB       guest memory (env PFP_VM_MEMORY; default $MEMORY)
  --log FILE        guest console log (kept); default a temp file kept only on failure
  --keep-log        keep the temp log on success too
  --add SRC[:DEST]  also put file SRC in the guest (at absolute path DEST, default SRC's own
                    absolute path; an ELF file gets its libraries); repeatable
  --quiet           do not copy the guest console to stdout while it runs
  --shell           boot to an interactive shell on this terminal (no COMMAND, no timeout);
                    leave with 'poweroff -f' or Ctrl-A X
  --fetch-only      only fill the cache (kernel, busybox) and print the kernel's path; for
                    tests that build a guest of their own (tests/vm/systemd_guest_test.py)
Environment variables GTEST_* are passed to the guest command (e.g. GTEST_FILTER).
EOF
}

fail_setup() {
    echo "run-guest: setup failed: $*" >&2
    exit "$EXIT_SETUP"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) BUILD_DIR="$2"; shift 2 ;;
        --cache-dir) CACHE_DIR="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --memory) MEMORY="$2"; shift 2 ;;
        --log) LOG="$2"; KEEP_LOG=1; shift 2 ;;
        --keep-log) KEEP_LOG=1; shift ;;
        --add) EXTRA+=("$2"); shift 2 ;;
        --quiet) QUIET=1; shift ;;
        --shell) SHELL_MODE=1; shift ;;
        --fetch-only) FETCH_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) echo "run-guest: unknown option $1" >&2; usage >&2; exit "$EXIT_SETUP" ;;
        *) break ;;
    esac
done
if [ "$SHELL_MODE" = 0 ] && [ "$FETCH_ONLY" = 0 ] && [ $# -eq 0 ]; then
    echo "run-guest: no command given" >&2; usage >&2; exit "$EXIT_SETUP"
fi
if ! [[ "$TIMEOUT" =~ ^[0-9]+$ ]] || [ "$TIMEOUT" -lt 5 ] || [ "$TIMEOUT" -gt 3600 ]; then
    fail_setup "--timeout must be 5-3600 seconds"
fi
if ! [[ "$MEMORY" =~ ^[0-9]+$ ]] || [ "$MEMORY" -lt 256 ] || [ "$MEMORY" -gt 8192 ]; then
    fail_setup "--memory must be 256-8192 MB"
fi

for tool in qemu-system-x86_64 cpio gzip ldd dpkg-deb timeout flock; do
    command -v "$tool" >/dev/null ||
        fail_setup "$tool not found (run scripts/install-deps.sh: qemu-system-x86, cpio)"
done
if [ "$FETCH_ONLY" = 0 ]; then
    [ -d "$BUILD_DIR" ] || fail_setup "no build directory $BUILD_DIR"
    BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"
    BIN_DIR="$BUILD_DIR/bin"
    for b in pf-proxyd pf-proxy-worker; do
        [ -x "$BIN_DIR/$b" ] || fail_setup "$BIN_DIR/$b missing: build first (ninja -C $BUILD_DIR)"
    done
fi

WORK=""
QEMU_PID=""
FOLLOW_PID=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null && kill -KILL "$QEMU_PID" 2>/dev/null
    [ -n "$FOLLOW_PID" ] && kill -0 "$FOLLOW_PID" 2>/dev/null && kill -TERM "$FOLLOW_PID" 2>/dev/null
    [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pf-proxy-vm.XXXXXX")" || fail_setup "mktemp"

# ------------------------------------------------------------------ kernel and busybox (cached)
# The cache holds the extracted packages and a stamp; a complete cache needs no network.
fetch_guest_packages() {
    local stamp="$CACHE_DIR/ready"
    [ -f "$stamp" ] && return 0
    mkdir -p "$CACHE_DIR" || fail_setup "cannot create $CACHE_DIR"
    # Two runs at once (ctest -j, a benchmark) must not download into the same place.
    exec 9>"$CACHE_DIR/.lock"
    flock -w 300 9 || fail_setup "could not lock $CACHE_DIR/.lock within 300 s"
    [ -f "$stamp" ] && return 0  # the other run finished the download
    local dl="$CACHE_DIR/download"
    rm -rf "$dl" "$CACHE_DIR/kernel" "$CACHE_DIR/busybox"
    mkdir -p "$dl"
    # The metapackage names the current 6.1 cloud kernel package; fetch that one.
    local kpkg
    kpkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
            awk '/Depends: linux-image-/ {print $2; exit}')"
    if [ -z "$kpkg" ] && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null 2>&1
        kpkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                awk '/Depends: linux-image-/ {print $2; exit}')"
    fi
    [ -n "$kpkg" ] || fail_setup "apt-cache does not know linux-image-cloud-amd64 (run apt-get update)"
    echo "run-guest: downloading $kpkg and busybox-static into $CACHE_DIR" >&2
    # apt drops to the _apt user for downloads; let it write here (it falls back to root otherwise).
    chmod 0777 "$dl" 2>/dev/null
    (cd "$dl" && apt-get download -q "$kpkg" busybox-static) >"$dl/apt.log" 2>&1 ||
        fail_setup "apt-get download failed (network to the Debian archive?): $(tail -3 "$dl/apt.log")"
    if ! dpkg-deb -x "$dl"/linux-image-*.deb "$CACHE_DIR/kernel" ||
        ! dpkg-deb -x "$dl"/busybox-static_*.deb "$CACHE_DIR/busybox"; then
        fail_setup "dpkg-deb -x failed"
    fi
    rm -f "$dl"/*.deb
    echo "$kpkg" > "$stamp"
}

fetch_guest_packages
KERNEL="$(find "$CACHE_DIR/kernel/boot" -name 'vmlinuz-*' 2>/dev/null | head -1)"
BUSYBOX="$CACHE_DIR/busybox/bin/busybox"
if [ ! -f "$KERNEL" ] || [ ! -x "$BUSYBOX" ]; then
    fail_setup "incomplete cache $CACHE_DIR (remove it to download again)"
fi
if [ "$FETCH_ONLY" = 1 ]; then
    echo "$KERNEL"
    exit 0
fi

# ------------------------------------------------------------------ initramfs
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"/{bin,sbin,usr/sbin,etc,proc,sys,dev,tmp,run,root,lib/modules,pfp} || fail_setup "mkdir"
chmod 1777 "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox" || fail_setup "copy busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
done

for m in "${MODULES[@]}" "${NF_MODULES[@]}"; do
    src="$(find "$CACHE_DIR/kernel/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -1)"
    [ -n "$src" ] || fail_setup "module $m not in the kernel package"
    case "$src" in
        # busybox insmod may lack xz support: decompress here.
        *.xz) xz -dc "$src" > "$ROOTFS/lib/modules/$m.ko" || fail_setup "xz -d $src" ;;
        *) cp "$src" "$ROOTFS/lib/modules/$m.ko" ;;
    esac
done

cat > "$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$ROOTFS/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

# copy_to_guest SRC [DEST]: a file at DEST (default SRC's path) inside the guest, debug info
# stripped (it only makes the initramfs bigger and slower to load).
copy_to_guest() {
    local src="$1" dest="${2:-$1}"
    mkdir -p "$ROOTFS$(dirname "$dest")" || return 1
    cp -L "$src" "$ROOTFS$dest" || return 1
    if command -v strip >/dev/null && file_is_elf "$ROOTFS$dest"; then
        strip --strip-debug "$ROOTFS$dest" 2>/dev/null
    fi
    return 0
}
file_is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = "177ELF" ]; }

GUEST_BINS=()
for b in "${BINARIES[@]}"; do
    [ -x "$BIN_DIR/$b" ] || continue
    copy_to_guest "$BIN_DIR/$b" || fail_setup "copy $b"
    GUEST_BINS+=("$BIN_DIR/$b")
done
for l in "${SEED_LINKS[@]}"; do
    [ -e "$BIN_DIR/$l" ] && ln -sf pf-proxy-compat "$ROOTFS$BIN_DIR/$l"
done
for e in "${EXTRA[@]}"; do
    src="${e%%:*}"
    dest="${e#*:}"
    [ "$dest" = "$e" ] && dest="$src"
    [ -f "$src" ] || fail_setup "--add: no file $src"
    src="$(cd "$(dirname "$src")" && pwd)/$(basename "$src")"
    case "$dest" in /*) ;; *) dest="$src" ;; esac
    copy_to_guest "$src" "$dest" || fail_setup "copy $src"
    [ -x "$src" ] && file_is_elf "$src" && GUEST_BINS+=("$src")
done

if [ -x "$XTABLES_BIN" ]; then
    copy_to_guest "$XTABLES_BIN" || fail_setup "copy $XTABLES_BIN"
    GUEST_BINS+=("$XTABLES_BIN")
    for name in iptables iptables-legacy; do ln -sf xtables-legacy-multi "$ROOTFS/usr/sbin/$name"; done
    extdir="$(dirname "$(ldd "$XTABLES_BIN" | awk '/libxtables/ {print $3}')")/xtables"
    # libxtables looks for extensions in its compiled-in directory: keep the host's path.
    extdir="$(readlink -f "$extdir")"
    for ext in "${XTABLES_EXT[@]}"; do
        copy_to_guest "$extdir/$ext" || fail_setup "copy $extdir/$ext"
        GUEST_BINS+=("$extdir/$ext")
    done
else
    echo "run-guest: warning: no $XTABLES_BIN (package iptables): the guest has no iptables" >&2
fi

# Every shared library of every binary, and the dynamic loader, at the paths ldd names.
libs="$(ldd "${GUEST_BINS[@]}" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u)"
[ -n "$libs" ] || fail_setup "ldd listed no libraries for ${GUEST_BINS[*]}"
for lib in $libs; do
    copy_to_guest "$lib" || fail_setup "copy $lib"
done

# The command, quoted for the guest's sh.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
    echo "#!/bin/sh"
    for v in $(compgen -e | grep -E '^(GTEST_|PFPROXY_)'); do echo "export $v=$(quote "${!v}")"; done
    if [ "$SHELL_MODE" = 1 ]; then
        echo "exec setsid cttyhack sh -l"
    else
        printf 'exec'
        for a in "$@"; do printf ' %s' "$(quote "$a")"; done
        echo
    fi
} > "$ROOTFS/pfp/command"
chmod 755 "$ROOTFS/pfp/command"

# init: mounts, vsock modules, loopback up, the command, its status in the marker line, power off.
cat > "$ROOTFS/init" <<EOF
#!/bin/sh
export PATH=/bin:/sbin:/usr/sbin:$BIN_DIR HOME=/root TMPDIR=/tmp GTEST_COLOR=no
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
# The initramfs root is a writable tmpfs already: /tmp and /run need no mounts of their own
# (a mount would hide files put there with --add).
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
ip link set lo up
hostname pfp-guest
status=0
for m in ${MODULES[*]}; do
    insmod /lib/modules/\$m.ko || { echo "init: insmod \$m failed"; status=setup-failed; }
done
for m in ${NF_MODULES[*]}; do
    insmod /lib/modules/\$m.ko || echo "init: insmod \$m failed (netfilter in the guest)"
done
if [ \$status = 0 ]; then
    cd /tmp
    /pfp/command
    status=\$?
fi
echo "$MARKER\$status"
sync
poweroff -f
EOF
chmod 755 "$ROOTFS/init"

INITRD="$WORK/initrd.gz"
(cd "$ROOTFS" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1 > "$INITRD") ||
    fail_setup "cpio"

# ------------------------------------------------------------------ boot
# -M pc: microvm hangs at boot in some runs under TCG; 1 vCPU is faster than 2 under TCG.
QEMU=(qemu-system-x86_64 -M pc -accel tcg -cpu max -m "$MEMORY" -smp 1 -nodefaults -no-reboot
      -no-user-config -display none -kernel "$KERNEL" -initrd "$INITRD"
      -append "console=ttyS0 panic=-1 quiet")

if [ "$SHELL_MODE" = 1 ]; then
    "${QEMU[@]}" -serial mon:stdio
    exit $?
fi

LOG_IS_TEMP=0
if [ -z "$LOG" ]; then
    LOG="$(mktemp "${TMPDIR:-/tmp}/pf-proxy-vm-log.XXXXXX")" || fail_setup "mktemp"
    LOG_IS_TEMP=1
fi
: > "$LOG" || fail_setup "cannot write $LOG"

start=$(date +%s)
timeout -k 5 "$TIMEOUT" "${QEMU[@]}" -serial stdio </dev/null >"$LOG" 2>&1 &
QEMU_PID=$!
if [ "$QUIET" = 0 ]; then
    tail -n +1 -f --pid="$QEMU_PID" "$LOG" | tr -d '\r' &
    FOLLOW_PID=$!
fi
wait "$QEMU_PID"
qemu_status=$?
QEMU_PID=""
if [ -n "$FOLLOW_PID" ]; then
    wait "$FOLLOW_PID" 2>/dev/null
    echo  # the console's last line has no newline of its own
fi
FOLLOW_PID=""
elapsed=$(( $(date +%s) - start ))

marker="$(tr -d '\r' < "$LOG" | grep -a "^${MARKER}[0-9a-z-]*\$" | tail -1)"
if [ "$marker" = "${MARKER}setup-failed" ]; then
    echo "run-guest: the guest could not load its vsock modules" >&2
    status=$EXIT_SETUP
elif [ -n "$marker" ]; then
    status="${marker#"$MARKER"}"
    case "$status" in
        124|125|126)
            echo "run-guest: the guest command exited $status, a code the harness reserves; reporting 1" >&2
            status=1 ;;
    esac
    [ "$qemu_status" = 124 ] && echo "run-guest: warning: the guest printed its status but did not power off" >&2
elif [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
    echo "run-guest: timeout: the guest did not finish within ${TIMEOUT}s" >&2
    status=$EXIT_TIMEOUT
else
    reason="no exit marker"
    grep -aq "Kernel panic" "$LOG" && reason="kernel panic"
    echo "run-guest: guest crashed ($reason; qemu exited $qemu_status)" >&2
    status=$EXIT_CRASH
fi

echo "run-guest: guest status $status after ${elapsed}s" >&2
if [ "$status" != 0 ] || [ "$KEEP_LOG" = 1 ]; then
    echo "run-guest: guest console log: $LOG" >&2
elif [ "$LOG_IS_TEMP" = 1 ]; then
    rm -f "$LOG"
fi
exit "$status"
