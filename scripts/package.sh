#!/usr/bin/env bash
# Builds the Debian package from debian/ the way Debian builds it (dpkg-buildpackage -b -us -uc),
# in a copy of the source tree, then checks it with lintian (no error, no warning that
# debian/pf-proxy.lintian-overrides does not list with its reason).
#   --out DIR   where the .deb, .buildinfo, .changes and the build log go (default build/package)
#   --werror    compiler warnings are errors (CI)
#   --ccache    compile through ccache
#   --no-deps   do not run scripts/install-deps.sh first
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
out=$src/build/package
deps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift ;;
    --werror) export PFPROXY_WERROR=1 ;;
    # debhelper points HOME at a scratch directory during the build: name the cache and its
    # settings explicitly, or ccache would start an empty one there each time.
    --ccache)
      export PFPROXY_CCACHE=1
      CCACHE_DIR=$(ccache --get-config cache_dir) CCACHE_BASEDIR=$(ccache --get-config base_dir)
      export CCACHE_DIR CCACHE_BASEDIR
      ;;
    --no-deps) deps=0 ;;
    *) echo "package.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift
done
if [ "$deps" = 1 ]; then ./scripts/install-deps.sh; fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
# dpkg-buildpackage builds in the tree it is given and writes its results beside it: a fresh
# copy (without build trees and VCS data) under $out keeps the source tree clean.
work=$out/pf-proxy-$version
rm -rf "$work" "$out"/pf-proxy_*
mkdir -p "$work"
tar -C "$src" --exclude-vcs --exclude='./build*' --exclude='./obj-*' --exclude='./debian/.debhelper' \
  -cf - . | tar -C "$work" -xf -
start=$(date +%s)
(cd "$work" && dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1 || {
  tail -n 40 "$out/build.log" >&2
  echo "package.sh: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
  exit 1
}
echo "package.sh: built in $(($(date +%s) - start)) s:" $(cd "$out" && ls pf-proxy_*.deb)
changes=$(ls "$out"/pf-proxy_*.changes)
lintian --fail-on error,warning --info --display-level '>=warning' "$changes"
echo "package.sh: lintian passed"
