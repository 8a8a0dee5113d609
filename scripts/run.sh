#!/usr/bin/env bash
# Installs the dependencies, builds, and runs pf-proxyd on examples/loopback.json (or the policy
# given as $1) in the foreground. Ctrl-C drains and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build pf-proxyd pf-proxy-worker pf-proxyctl pf-proxy-compat
# The control socket's directory (systemd's RuntimeDirectory= makes it under the unit).
mkdir -p /run/pf-proxy 2>/dev/null || true
echo "pf-proxyd: Ctrl-C to stop; in another shell: ./build/bin/pf-proxyctl status" >&2
exec ./build/bin/pf-proxyd --policy "${1:-examples/loopback.json}"
