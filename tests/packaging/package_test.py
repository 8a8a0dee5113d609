#!/usr/bin/env python3
"""The Debian package: scripts/package.sh builds it (dpkg-buildpackage -b -us -uc, lintian), then

  - dpkg-deb -c lists every expected file, and /etc/pf-proxy/policy.json is its one conffile;
  - its postinst creates the user (systemd-sysusers) and /etc/pf-proxy (systemd-tmpfiles),
    enables pf-proxyd.service and does not start it;
  - installed with dpkg into a scratch Debian 12 root (a chroot made by mmdebstrap, cached), the
    units, sysusers.d and tmpfiles.d files are where systemd reads them, the service is enabled,
    the user pf-proxy and /etc/pf-proxy (0750 root:pf-proxy) exist, the installed pf-proxyd
    accepts the default policy, and purging removes it all again.

The scratch root's tarball is cached with the vm harness's downloads (PFP_VM_CACHE, default
~/.cache/pf-proxy-vm); the first run needs Debian's archive. Exit 0 when all hold.
"""
import argparse
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

COMPAT = ["vsock-to-ip", "ip-to-vsock", "vsock-to-ip-transparent", "ip-to-vsock-transparent",
          "transparent-port-to-vsock", "port-to-vsock-transparent", "vsockproxy", "tcpfwd", "udpfwd",
          "kcptcp-client", "kcptcp-server"]
EXPECTED = [
    "usr/sbin/pf-proxyd", "usr/bin/pf-proxyctl", "usr/bin/pf-proxy-compat",
    "usr/libexec/pf-proxy/pf-proxy-worker",
    "lib/systemd/system/pf-proxyd.service", "lib/systemd/system/pf-proxyd@.service",
    "usr/lib/sysusers.d/pf-proxy.conf", "usr/lib/tmpfiles.d/pf-proxy.conf",
    "etc/pf-proxy/policy.json", "usr/share/pf-proxy/policy.schema.json",
    "usr/share/man/man8/pf-proxyd.8.gz", "usr/share/man/man8/pf-proxyctl.8.gz",
    "usr/share/man/man5/pf-proxy.json.5.gz", "usr/share/man/man1/pf-proxy-compat.1.gz",
    "usr/share/doc/pf-proxy/copyright", "usr/share/doc/pf-proxy/changelog.gz",
    "usr/share/doc/pf-proxy/policy.md", "usr/share/doc/pf-proxy/migration.md",
    "usr/share/doc/pf-proxy/wire-formats.md", "usr/share/doc/pf-proxy/operations.md",
    "usr/share/doc/pf-proxy/examples/loopback.json",
    "usr/share/doc/pf-proxy/examples/systemd/pf-proxyd-web.socket",
] + [f"usr/bin/{c}" for c in COMPAT] + [f"usr/share/man/man1/{c}.1.gz" for c in COMPAT]
# The scratch root: systemd (systemctl, systemd-sysusers, systemd-tmpfiles) and pf-proxy's
# libraries, so that the one cached tarball serves every build whose dependencies stay among these.
# The same root boots in the systemd guest (tests/vm/systemd_guest_test.py: systemd as PID 1,
# udev, kmod for insmod, python3-minimal for its checks): one mmdebstrap serves both tests.
BASE_PACKAGES = ["systemd", "systemd-sysv", "udev", "kmod", "python3-minimal", "libc6",
                 "libgcc-s1", "libstdc++6", "libboost-filesystem1.74.0",
                 "libboost-program-options1.74.0", "libcap-ng0", "libseccomp2", "libsystemd0"]
MIRROR = "http://deb.debian.org/debian"


def run(cmd, **kw):
    kw.setdefault("timeout", 900)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def must(cmd, **kw):
    r = run(cmd, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def depends(deb):
    """The first alternative of each of the package's dependencies, without versions."""
    field = must(["dpkg-deb", "-f", str(deb), "Depends"])
    return sorted({re.sub(r"\s*\(.*?\)", "", d.split("|")[0]).strip()
                   for d in field.split(",") if d.strip()})


def base_rootfs(cache_dir, packages):
    """A cached mmdebstrap tarball of Debian 12 minbase with `packages`."""
    key = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    tar = pathlib.Path(cache_dir) / f"rootfs-bookworm-{key}.tar"
    if tar.is_file():
        return tar, 0.0
    tar.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = tar.with_suffix(".partial.tar")  # mmdebstrap picks the format by the extension
    # In a mount namespace of its own: the mounts mmdebstrap makes in the root it builds go away
    # with it even when it is killed (a ctest timeout).
    must(["unshare", "--mount", "--propagation", "private", "mmdebstrap", "--variant=minbase",
          "--quiet", f"--include={','.join(packages)}", "bookworm", str(tmp), MIRROR],
         stdin=subprocess.DEVNULL)
    tmp.rename(tar)
    return tar, time.monotonic() - start


def in_root(root, *cmd):
    """cmd chrooted into root, with /proc mounted in a private mount namespace."""
    script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root),
                *cmd])


def check_contents(deb):
    failures = []
    listing = must(["dpkg-deb", "-c", str(deb)])
    paths = {line.split()[5].lstrip("./").split(" -> ")[0] for line in listing.splitlines()}
    for p in EXPECTED:
        if p not in paths:
            failures.append(f"dpkg-deb -c: missing {p}")
    with tempfile.TemporaryDirectory() as ctl:
        must(["dpkg-deb", "-e", str(deb), ctl])
        conffiles = (pathlib.Path(ctl) / "conffiles").read_text().split()
        if conffiles != ["/etc/pf-proxy/policy.json"]:
            failures.append(f"conffiles: {conffiles}, expected /etc/pf-proxy/policy.json")
        postinst = (pathlib.Path(ctl) / "postinst").read_text()
        for needed in ["systemd-sysusers", "systemd-tmpfiles", "deb-systemd-helper",
                       "pf-proxyd.service"]:
            if needed not in postinst:
                failures.append(f"postinst: no {needed}")
        if re.search(r"deb-systemd-invoke\s+\$_dh_action|deb-systemd-invoke\s+start", postinst):
            failures.append("postinst starts the service (it should only enable it)")
    print(f"{len(paths)} paths in the package, {len(EXPECTED)} expected ones checked")
    return failures


def check_install(deb, cache_dir):
    failures = []
    tar, took = base_rootfs(cache_dir, sorted(set(BASE_PACKAGES + depends(deb))))
    print(f"scratch root {tar.name}" + (f" made in {took:.0f} s" if took else " (cached)"))
    with tempfile.TemporaryDirectory(prefix="pfp-deb-root-") as tmp:
        root = pathlib.Path(tmp)
        must(["tar", "-C", str(root), "-xf", str(tar)])
        shutil.copy(deb, root / "tmp" / deb.name)
        r = in_root(root, "dpkg", "-i", f"/tmp/{deb.name}")
        if r.returncode != 0:
            return [f"dpkg -i in the scratch root: exit {r.returncode}\n{r.stdout}{r.stderr}"]
        for p in ["lib/systemd/system/pf-proxyd.service", "usr/lib/sysusers.d/pf-proxy.conf",
                  "usr/lib/tmpfiles.d/pf-proxy.conf"]:
            if not (root / p).is_file():
                failures.append(f"after dpkg -i: no /{p}")
        wants = root / "etc/systemd/system/multi-user.target.wants/pf-proxyd.service"
        if not wants.is_symlink() or os.readlink(wants) != "/lib/systemd/system/pf-proxyd.service":
            failures.append("pf-proxyd.service is not enabled in multi-user.target")
        r = run(["systemctl", f"--root={root}", "is-enabled", "pf-proxyd.service"])
        if r.stdout.strip() != "enabled":
            failures.append(f"systemctl --root is-enabled: {r.stdout.strip()} {r.stderr.strip()}")
        passwd = (root / "etc/passwd").read_text()
        group = (root / "etc/group").read_text()
        user = next((l.split(":") for l in passwd.splitlines() if l.startswith("pf-proxy:")), None)
        gid = next((l.split(":")[2] for l in group.splitlines() if l.startswith("pf-proxy:")), None)
        if not user or not gid:
            failures.append("systemd-sysusers did not create the user and group pf-proxy")
        else:
            st = os.stat(root / "etc/pf-proxy")
            if (st.st_mode & 0o7777, st.st_uid, str(st.st_gid)) != (0o750, 0, gid):
                failures.append(f"/etc/pf-proxy: mode {st.st_mode & 0o7777:o} owner "
                                f"{st.st_uid}:{st.st_gid}, expected 750 root:pf-proxy")
        r = in_root(root, "/usr/sbin/pf-proxyd", "--check", "--policy", "/etc/pf-proxy/policy.json")
        if r.returncode != 0:
            failures.append(f"installed pf-proxyd rejects the default policy: {r.stderr.strip()}")
        r = in_root(root, "runuser", "-u", "pf-proxy", "--", "cat", "/etc/pf-proxy/policy.json")
        if r.returncode != 0:
            failures.append(f"the user pf-proxy cannot read the policy: {r.stderr.strip()}")
        r = in_root(root, "dpkg", "--purge", "pf-proxy")
        if r.returncode != 0:
            failures.append(f"dpkg --purge: exit {r.returncode}\n{r.stdout}{r.stderr}")
        left = [p for p in ["lib/systemd/system/pf-proxyd.service", "etc/pf-proxy/policy.json",
                            "usr/sbin/pf-proxyd"] if (root / p).exists()]
        if left or wants.is_symlink():
            failures.append(f"after dpkg --purge, still there: {left or wants}")
    print("installed, checked and purged in the scratch root")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--werror", action="store_true")
    ap.add_argument("--ccache", action="store_true")
    ap.add_argument("--cache-dir", default=os.environ.get("PFP_VM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", "/tmp"), ".cache"),
        "pf-proxy-vm"))
    a = ap.parse_args()
    cmd = [os.path.join(a.source, "scripts/package.sh"), "--no-deps", "--out", a.out]
    cmd += ["--werror"] if a.werror else []
    cmd += ["--ccache"] if a.ccache else []
    start = time.monotonic()
    r = subprocess.run(cmd, timeout=1500)
    print(f"scripts/package.sh: exit {r.returncode} after {time.monotonic() - start:.0f} s")
    if r.returncode != 0:
        return 1
    debs = sorted(pathlib.Path(a.out).glob("pf-proxy_*.deb"))
    if len(debs) != 1:
        print(f"FAIL expected one .deb in {a.out}, found {debs}")
        return 1
    failures = check_contents(debs[0]) + check_install(debs[0], a.cache_dir)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
