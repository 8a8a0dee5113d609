#!/usr/bin/env python3
"""pf-proxyd under real systemd: boots a Debian 12 root with systemd 252 as PID 1 in the vm
harness's QEMU guest, installs the .deb there with apt and runs tests/vm/systemd_guest_check.py,
which checks start, relay, sandbox, reload, restart through the FD store, the watchdog, drain on
stop and socket activation (TCP and vsock over vsock_loopback, CID 1 only) at the far end.

  - The root: package.deb's scratch root (tests/packaging/package_test.py: mmdebstrap
    --variant=minbase with systemd, systemd-sysv, udev, kmod, python3-minimal and the .deb's
    dependencies, a tarball keyed by that package list), made here if package.deb has not made
    it yet, then without manual pages, locales and docs packed as a zstd newc cpio. Both are
    cached beside the vm harness's kernel (PFP_VM_CACHE, default ~/.cache/pf-proxy-vm).
  - Each run adds a small second cpio (the .deb, the check script, the vsock modules, the unit
    that runs the script); the kernel unpacks both into its initramfs. rdinit=/sbin/init.
  - The guest prints `PFP-CHECK PASS|FAIL NAME` per check and `PFP-GUEST-EXIT=N` on the serial
    console; every check in CHECKS must pass.

Exit 0 when all pass; 77 (skip) when qemu, mmdebstrap, zstd or cpio is missing, unless
PFPROXY_REQUIRE_ALL is set (the README's test command), which makes that a failure.
"""
import argparse
import fcntl
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "packaging"))
import package_test  # noqa: E402  (the scratch root it makes is the guest's root too)
CHECKS = ["pid1-systemd", "apt-install", "installed-enabled-not-started", "enable-now", "relay",
          "sandbox-workers-found", "sandbox", "reload-notify", "reload-applies",
          "restart-fd-store", "watchdog-restart", "relay-after-watchdog", "stop-drains",
          "sockets-listening", "socket-activation-tcp", "socket-activation-vsock",
          "socket-activation-passed"]
VSOCK_MODULES = ["vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback"]
SKIP = 77


def require_all():
    return os.environ.get("PFPROXY_REQUIRE_ALL", "") not in ("", "0")


def pack(root, out, compress=True):
    """root as a newc cpio (zstd-compressed unless compress is False)."""
    with open(out, "wb") as f:
        find = subprocess.Popen(["find", "."], cwd=root, stdout=subprocess.PIPE)
        cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                                stdin=find.stdout, stdout=subprocess.PIPE if compress else f)
        find.stdout.close()
        if compress:
            zstd = subprocess.Popen(["zstd", "-q", "-T0", "-3"], stdin=cpio.stdout, stdout=f)
            cpio.stdout.close()
            if zstd.wait() != 0:
                raise RuntimeError("zstd failed")
        if cpio.wait() != 0 or find.wait() != 0:
            raise RuntimeError(f"cpio of {root} failed")


def base_image(cache, deb):
    """The cached systemd root as a zstd cpio, made from package.deb's scratch root (the same
    mmdebstrap tarball, made here if package.deb has not). Returns (path, seconds spent)."""
    packages = sorted(set(package_test.BASE_PACKAGES + package_test.depends(deb)))
    start = time.monotonic()
    tar, _ = package_test.base_rootfs(cache, packages)
    image = cache / f"systemd-{tar.name.removesuffix('.tar')}.cpio.zst"
    if image.is_file():
        return image, time.monotonic() - start
    with open(cache / ".systemd-root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be making the same image
        if image.is_file():
            return image, time.monotonic() - start
        with tempfile.TemporaryDirectory(prefix="pfp-systemd-root-", dir=cache) as tmp:
            root = pathlib.Path(tmp)
            # Without manual pages, locales and docs: a smaller initramfs boots faster.
            package_test.must(["tar", "-C", str(root), "-xf", str(tar),
                               "--exclude=./usr/share/man/*", "--exclude=./usr/share/locale/*",
                               "--exclude=./usr/share/doc/*"])
            partial = image.with_suffix(".partial")
            pack(root, partial)
            partial.rename(image)
        for old in cache.glob("systemd-rootfs-bookworm-*.cpio.zst"):
            if old != image:
                old.unlink()  # made from an older package list
        return image, time.monotonic() - start


def overlay(work, deb, kernel_dir):
    """The per-run cpio: the .deb, the check script and its unit, the vsock modules."""
    root = work / "overlay"
    pfp = root / "usr/local/lib/pfp"
    (pfp / "modules").mkdir(parents=True)
    shutil.copy(deb, pfp / deb.name)
    shutil.copy(HERE / "systemd_guest_check.py", pfp / "check.py")
    os.chmod(pfp / "check.py", 0o755)
    for m in VSOCK_MODULES:
        found = list(kernel_dir.glob(f"lib/modules/*/**/{m}.ko*"))
        if not found:
            raise RuntimeError(f"module {m} not in {kernel_dir}")
        data = found[0].read_bytes()
        if found[0].suffix == ".xz":
            data = subprocess.run(["xz", "-dc"], input=data, capture_output=True, check=True).stdout
        (pfp / "modules" / f"{m}.ko").write_bytes(data)
    units = root / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    # After multi-user.target: the boot is over when the checks start their own jobs.
    (units / "pfp-check.service").write_text(f"""[Unit]
Description=pf-proxy systemd guest checks
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/pfp/check.py /usr/local/lib/pfp/{deb.name}
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
""")
    (units / "multi-user.target.wants/pfp-check.service").symlink_to("../pfp-check.service")
    # The console is the checks' output: no login prompt on it.
    (units / "serial-getty@ttyS0.service").symlink_to("/dev/null")
    out = work / "overlay.cpio"
    pack(root, out, compress=False)
    return out


def boot(kernel, initrd, log, timeout):
    cmd = ["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-cpu", "max", "-m", "1024",
           "-smp", "1", "-nodefaults", "-no-reboot", "-no-user-config", "-display", "none",
           "-kernel", str(kernel), "-initrd", str(initrd), "-serial", "stdio",
           "-append", "console=ttyS0 rdinit=/sbin/init panic=-1 quiet"]
    results, exit_status = {}, None
    with open(log, "w") as logf:
        qemu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        started = time.monotonic()
        deadline = started + timeout
        # A guest that hangs prints nothing: the timer ends it, which ends the loop below.
        killer = threading.Timer(timeout, qemu.kill)
        killer.start()
        try:
            for line in qemu.stdout:  # the guest powers off at the end: EOF
                line = line.replace("\r", "").rstrip("\n")
                logf.write(line + "\n")
                m = re.match(r"^PFP-CHECK (PASS|FAIL) ([\w-]+)", line)
                if m:
                    results[m.group(2)] = m.group(1)
                    print(line, flush=True)
                elif line.startswith("PFP-GUEST-EXIT="):
                    exit_status = line.split("=", 1)[1]
                    print(line, flush=True)
                elif "Initramfs unpacking failed" in line:
                    # Without the per-run archive the checks never start: do not wait for the
                    # timeout.
                    print(f"FAIL the guest booted without the test's files: {line}", flush=True)
                    qemu.kill()
                elif line.startswith("PFP-GUEST-START"):
                    print(f"guest: checks start {time.monotonic() - started:.0f} s after boot "
                          "began", flush=True)
        finally:
            qemu.wait()
            killer.cancel()
            if time.monotonic() >= deadline:
                print(f"FAIL the guest did not finish within {timeout} s")
    return results, exit_status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deb-dir", required=True, help="where package.deb left pf-proxy_*.deb")
    ap.add_argument("--cache-dir", default=os.environ.get("PFP_VM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", "/tmp"), ".cache"),
        "pf-proxy-vm"))
    ap.add_argument("--timeout", type=int, default=420, help="seconds for the guest")
    ap.add_argument("--log", help="keep the guest console here (default: a temp file)")
    a = ap.parse_args()

    missing = [t for t in ["qemu-system-x86_64", "mmdebstrap", "zstd", "cpio", "unshare", "xz"]
               if not shutil.which(t)]
    if missing:
        why = f"missing: {', '.join(missing)} (scripts/install-deps.sh installs them)"
        if require_all():
            print(f"FAIL {why}; PFPROXY_REQUIRE_ALL is set: this test may not skip")
            return 1
        print(f"SKIP {why}")
        return SKIP
    debs = sorted(pathlib.Path(a.deb_dir).glob("pf-proxy_*.deb"))
    if len(debs) != 1:
        print(f"FAIL expected one pf-proxy_*.deb in {a.deb_dir} (the package.deb test or "
              f"scripts/package.sh --out {a.deb_dir} makes it), found {debs}")
        return 1
    deb = debs[0]
    cache = pathlib.Path(a.cache_dir)
    fetch = subprocess.run([str(HERE / "run-guest.sh"), "--cache-dir", str(cache), "--fetch-only"],
                           capture_output=True, text=True)
    if fetch.returncode != 0:
        print(f"FAIL the vm harness could not fetch its kernel: {fetch.stderr.strip()}")
        return 1
    kernel = pathlib.Path(fetch.stdout.strip())

    start = time.monotonic()
    image, took = base_image(cache, deb)
    print(f"systemd root {image.name}: ready in {took:.0f} s")
    with tempfile.TemporaryDirectory(prefix="pfp-systemd-guest-") as tmp:
        work = pathlib.Path(tmp)
        extra = overlay(work, deb, kernel.parent.parent)
        initrd = work / "initrd"
        with open(initrd, "wb") as out:
            # The kernel unpacks concatenated archives in order. An uncompressed cpio after a
            # compressed one must start 4-byte aligned (init/initramfs.c; NULs in between are
            # skipped), or it is rejected: "invalid magic at start of compressed archive".
            for part in (image, extra):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
                out.write(b"\0" * (-out.tell() % 512))
        log = pathlib.Path(a.log) if a.log else work / "console.log"
        boot_start = time.monotonic()
        results, exit_status = boot(kernel, initrd, log, a.timeout)
        print(f"guest ran {time.monotonic() - boot_start:.0f} s (whole test "
              f"{time.monotonic() - start:.0f} s)")
        failed = [c for c in CHECKS if results.get(c) != "PASS"]
        failed += [c for c, r in results.items() if r != "PASS" and c not in failed]
        if failed or exit_status != "0":
            print(f"FAIL checks not passed: {failed or 'none'}; guest exit {exit_status}")
            print("---- guest console (last 150 lines)")
            print("\n".join(log.read_text(errors="replace").splitlines()[-150:]))
            if a.log:
                print(f"guest console log: {log}")
            return 1
    print(f"all {len(CHECKS)} checks passed under systemd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
