#!/usr/bin/env python3
"""`cmake --install` into a temporary prefix, and into a temporary DESTDIR.

  prefix   cmake --install BUILD --prefix TMP: every file of the manifest is under TMP, the
           expected files are there, and every symbolic link resolves to a file inside TMP.
  destdir  DESTDIR=TMP cmake --install BUILD: the same, under TMP + the configured prefix.

Exit 0 when all hold; otherwise one line per problem and exit 1.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

COMPAT = ["vsock-to-ip", "ip-to-vsock", "vsock-to-ip-transparent", "ip-to-vsock-transparent",
          "transparent-port-to-vsock", "port-to-vsock-transparent", "vsockproxy", "tcpfwd", "udpfwd",
          "kcptcp-client", "kcptcp-server"]


def expected(a):
    """Paths relative to the prefix (the build's GNUInstallDirs, relative forms)."""
    files = [f"{a.sbindir}/pf-proxyd", f"{a.bindir}/pf-proxyctl", f"{a.bindir}/pf-proxy-compat",
             f"{a.libexecdir}/pf-proxy/pf-proxy-worker", f"{a.datadir}/pf-proxy/policy.schema.json",
             "lib/sysusers.d/pf-proxy.conf", "lib/tmpfiles.d/pf-proxy.conf"]
    files += [f"{a.bindir}/{c}" for c in COMPAT]
    files += [f"{a.docdir}/{d}" for d in ["architecture.md", "policy.md", "security.md",
                                           "operations.md", "wire-formats.md", "migration.md",
                                           "examples/loopback.json"]]
    if a.manpages:
        files += [f"{a.mandir}/man8/pf-proxyd.8", f"{a.mandir}/man8/pf-proxyctl.8",
                  f"{a.mandir}/man5/pf-proxy.json.5", f"{a.mandir}/man1/pf-proxy-compat.1"]
        files += [f"{a.mandir}/man1/{c}.1" for c in COMPAT]
    return files


def check_tree(root, prefix_dir, manifest, a):
    failures = []
    for line in manifest:
        if not line:
            continue
        p = pathlib.Path(line)
        if root != prefix_dir:  # DESTDIR: the manifest lists paths without it
            p = root / p.relative_to("/")
        if not str(p).startswith(str(root) + "/"):
            failures.append(f"installed outside {root}: {line}")
        elif not os.path.lexists(p):
            failures.append(f"in the manifest, not on disk: {p}")
    for rel in expected(a):
        if not os.path.lexists(prefix_dir / rel):
            failures.append(f"missing: {prefix_dir / rel}")
    links = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            if not p.is_symlink():
                continue
            links += 1
            target = os.readlink(p)
            resolved = pathlib.Path(os.path.realpath(p))
            if os.path.isabs(target):
                failures.append(f"{p} -> {target}: absolute (points outside the tree once moved)")
            elif not str(resolved).startswith(str(root) + "/") or not resolved.is_file():
                failures.append(f"{p} -> {target}: does not resolve to a file inside {root}")
    if links < len(COMPAT):
        failures.append(f"only {links} links under {root}, expected at least {len(COMPAT)}")
    print(f"{root}: {len(manifest)} files in the manifest, {links} links checked")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["prefix", "destdir"])
    ap.add_argument("--cmake", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--prefix", required=True, help="the configured CMAKE_INSTALL_PREFIX")
    for d in ["bindir", "sbindir", "libexecdir", "datadir", "docdir", "mandir"]:
        ap.add_argument(f"--{d}", required=True, help="relative to the prefix")
    ap.add_argument("--manpages", type=int, required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pfp-install-") as tmp:
        root = pathlib.Path(tmp) / "root"
        env = dict(os.environ)
        cmd = [a.cmake, "--install", a.build]
        if a.check == "prefix":
            cmd += ["--prefix", str(root)]
            prefix_dir = root
        else:
            env["DESTDIR"] = str(root)
            prefix_dir = root / pathlib.Path(a.prefix).relative_to("/")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            print(f"FAIL {' '.join(cmd)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
            return 1
        manifest = (pathlib.Path(a.build) / "install_manifest.txt").read_text().splitlines()
        failures = check_tree(root, prefix_dir, manifest, a)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
