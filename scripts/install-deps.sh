#!/usr/bin/env bash
# Installs every build and test dependency of pf-proxy from Debian's archive. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev libboost-program-options-dev libboost-filesystem-dev
  libcap-ng-dev libcap-ng-utils libseccomp-dev libsystemd-dev nlohmann-json3-dev
  libmnl-dev libnetfilter-queue-dev
  # Host names in upstreams: resolved by the supervisor with c-ares.
  libc-ares-dev
  # The KCP tunnel's HKDF-SHA256 and ChaCha20-Poly1305 (libcrypto).
  libssl-dev
  libgtest-dev libgmock-dev
  clang libclang-rt-14-dev clang-format
  iproute2 iptables procps util-linux python3 socat
  # tests/systemd: systemd-analyze, systemd-sysusers, systemd-tmpfiles; strace for the exec check.
  systemd strace
  # tests/vm: the QEMU guest with real vsock (its kernel and busybox are fetched by the harness).
  qemu-system-x86 cpio xz-utils
  # Manual pages (man/*.scd) and their render check; the policy's JSON Schema check.
  scdoc groff-base man-db python3-jsonschema
  # The Debian package (scripts/package.sh) and its checks.
  debhelper dpkg-dev lintian
  # package_test.py installs the .deb into a scratch Debian root it makes with mmdebstrap;
  # tests/vm/systemd_guest_test.py boots such a root (systemd as PID 1) as a zstd initramfs.
  mmdebstrap zstd
)
if [ "${1:-}" = "--bench" ]; then pkgs+=(iperf3 haproxy wrk hyperfine kcptun); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
