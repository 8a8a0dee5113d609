#!/usr/bin/python3
"""Runs inside the systemd guest (tests/vm/systemd_guest_test.py), as a unit started once the
guest reached multi-user.target, with systemd 252 as PID 1. Installs the .deb with apt, then
drives pf-proxyd.service with systemctl and checks each behaviour at the far end: the echo
servers below are the upstreams, the clients connect through pf-proxyd.

Prints one line per check on the serial console, `PFP-CHECK PASS NAME` or
`PFP-CHECK FAIL NAME: why`, then `PFP-GUEST-EXIT=N` (N failed checks) and powers the guest off.
Only python3-minimal is there: no json, no re. vsock: CID 1 (vsock_loopback) only.
"""
import os
import socket
import subprocess
import sys
import threading
import time

PFP = "/usr/local/lib/pfp"
UNIT = "pf-proxyd.service"
POLICY = "/etc/pf-proxy/policy.json"
DROPIN_DIR = "/etc/systemd/system/pf-proxyd.service.d"
HOLD, WINDOW = "/run/pfp-hold", "/run/pfp-window"
EXAMPLES = "/usr/share/doc/pf-proxy/examples/systemd"
VMADDR_CID_LOCAL = 1  # vsock_loopback; never any other CID
failures = 0
START = time.monotonic()


def say(line):
    print(line, flush=True)


def check(name, ok, why=""):
    global failures
    at = f"(t={time.monotonic() - START:.1f}s)"
    if ok:
        say(f"PFP-CHECK PASS {name} {at}")
    else:
        failures += 1
        say(f"PFP-CHECK FAIL {name} {at}: {why}")
    return ok


def sh(*cmd, timeout=120):
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if time.monotonic() - t > 3:  # where the guest's time goes (TCG is slow)
        say(f"# {' '.join(cmd)}: {time.monotonic() - t:.1f}s")
    return r.returncode, (r.stdout + r.stderr).strip()


def prop(name, unit=UNIT):
    return sh("systemctl", "show", "-p", name, "--value", unit)[1]


def wait_for(pred, timeout=60.0):
    """Polls pred (a state systemd or the kernel reports) until true; False after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


class EchoServer:
    """An upstream: answers each message with b"echo:" + message and records what it got."""

    def __init__(self, port):
        self.got = []
        self.sock = socket.create_server(("127.0.0.1", port), backlog=64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                self.got.append(data)
                c.sendall(b"echo:" + data)


def connect(port, family="tcp", timeout=30.0):
    if family == "vsock":
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((VMADDR_CID_LOCAL, port))
        return s
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def exchange(s, msg):
    s.sendall(msg)
    want = b"echo:" + msg
    got = b""
    while len(got) < len(want):
        part = s.recv(65536)
        if not part:
            break
        got += part
    return got


def relays(port, server, msg, family="tcp"):
    """(ok, why): msg went through pf-proxyd to server and its answer came back."""
    try:
        with connect(port, family) as s:
            got = exchange(s, msg)
    except OSError as e:
        return False, f"{family} port {port}: {e}"
    if got != b"echo:" + msg:
        return False, f"port {port}: answer {got!r}"
    if msg not in server.got:
        return False, f"port {port}: the upstream never saw {msg!r}"
    return True, ""


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def policy(proxies, drain="20s"):
    entries = ",\n".join(
        f'    {{"name": "{n}", "listen": "tcp:127.0.0.1:{lp}", "upstream": "tcp:127.0.0.1:{up}"}}'
        for n, lp, up in proxies)
    return f'{{\n  "drain_timeout": "{drain}",\n  "proxies": [\n{entries}\n  ]\n}}\n'


def workers(supervisor):
    """pf-proxy-worker processes of the service's control group."""
    procs = f"/sys/fs/cgroup/system.slice/{UNIT}/cgroup.procs"
    pids = []
    with open(procs) as f:
        for p in f.read().split():
            try:
                with open(f"/proc/{p}/comm") as c:
                    if c.read().strip() == "pf-proxy-worker" and p != supervisor:
                        pids.append(p)
            except OSError:
                pass
    return pids


def status_fields(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def journal_end():
    """The cursor of the journal's newest entry."""
    out = sh("journalctl", "-n", "1", "--show-cursor", "-q", "--no-pager")[1]
    return out.rpartition("-- cursor: ")[2].strip()


def journal(after):
    return sh("journalctl", "-u", UNIT, "--no-pager", "-o", "cat", f"--after-cursor={after}")[1]


def main_pid():
    pid = prop("MainPID")
    return pid if pid not in ("", "0") else None


def pf_proxyd_running():
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as c:
                    if c.read().strip() == "pf-proxyd":
                        return True
            except OSError:
                pass
    return False


# ---------------------------------------------------------------------------------- the checks
def check_pid1():
    with open("/proc/1/comm") as f:
        comm = f.read().strip()
    version = sh("systemctl", "--version")[1].splitlines()[0]
    with open("/proc/uptime") as f:
        say(f"# {version}; checks start {f.read().split()[0]} s after the kernel")
    return check("pid1-systemd", comm == "systemd", f"PID 1 is {comm}")


def load_vsock():
    for m in ["vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback"]:
        rc, out = sh("insmod", f"{PFP}/modules/{m}.ko")
        if rc != 0:
            return check("vsock-loopback", False, f"insmod {m}: {out}")
    return True


def check_install(deb):
    rc, out = sh("apt-get", "install", "-y", deb, timeout=300)
    if not check("apt-install", rc == 0, out[-800:]):
        return False
    enabled, active = sh("systemctl", "is-enabled", UNIT)[1], prop("ActiveState")
    return check("installed-enabled-not-started", enabled == "enabled" and active == "inactive",
                 f"is-enabled {enabled}, ActiveState {active}")


def check_start(up1):
    write(POLICY, policy([("one", 7001, 7101)]))
    rc, out = sh("systemctl", "enable", "--now", UNIT)
    active, watchdog = prop("ActiveState"), prop("WatchdogUSec")
    if not check("enable-now", rc == 0 and active == "active" and watchdog == "6s",
                 f"exit {rc}, {active}, WatchdogUSec {watchdog} (test drop-in): {out}"):
        say(sh("journalctl", "-u", UNIT, "--no-pager", "-n", "40")[1])
        return False
    return check("relay", *relays(7001, up1, b"hello through systemd"))


def check_sandbox():
    pid = main_pid()
    ws = workers(pid)
    if not check("sandbox-workers-found", pid and ws, f"MainPID {pid}, workers {ws}"):
        return
    pid1_mnt = os.readlink("/proc/1/ns/mnt")
    problems = []
    for w in ws:
        st = status_fields(w)
        for k, want in [("CapEff", "0000000000000000"), ("CapPrm", "0000000000000000"),
                        ("CapAmb", "0000000000000000"), ("NoNewPrivs", "1"), ("Seccomp", "2")]:
            if st.get(k) != want:
                problems.append(f"worker {w} {k} {st.get(k)} (want {want})")
        if st.get("Uid", "0").split()[0] == "0":
            problems.append(f"worker {w} runs as root")
        if os.readlink(f"/proc/{w}/ns/mnt") == pid1_mnt:
            problems.append(f"worker {w} shares PID 1's mount namespace")
    if os.readlink(f"/proc/{pid}/ns/mnt") == pid1_mnt:
        problems.append("pf-proxyd shares PID 1's mount namespace")
    sup = status_fields(pid)
    if sup.get("NoNewPrivs") != "1" or sup.get("Seccomp") != "2":
        problems.append(f"pf-proxyd NoNewPrivs {sup.get('NoNewPrivs')}, "
                        f"Seccomp {sup.get('Seccomp')}")
    check("sandbox", not problems, "; ".join(problems))


def check_reload(up1, up2):
    cursor = journal_end()
    sh("systemd-analyze", "log-level", "debug")  # PID 1 logs each notify message it receives
    write(POLICY, policy([("one", 7001, 7101), ("two", 7002, 7102)]))
    rc, out = sh("systemctl", "reload", UNIT)
    # READY=1 follows once the new generation runs; it may arrive just after reload returns.
    def seen():  # PID 1's lines about notify messages: RELOADING=1, then READY=1
        lines = [ln for ln in journal(cursor).splitlines() if "notification message" in ln]
        r = next((i for i, ln in enumerate(lines) if "RELOADING=1" in ln), None)
        ready = r is not None and next((ln for ln in lines[r:] if "READY=1" in ln), None)
        return ready and [lines[r], ready]
    notified = wait_for(seen, 30)
    sh("systemd-analyze", "log-level", "info")
    for line in notified or []:
        say(f"# {line[:160]}")
    check("reload-notify", rc == 0 and notified,
          f"systemctl reload exit {rc} {out}; journal: {journal(cursor)[-1500:]}")
    ok2, why2 = relays(7002, up2, b"added by reload")
    ok1, why1 = relays(7001, up1, b"kept by reload")
    check("reload-applies", ok1 and ok2, f"{why1} {why2}")


def check_restart_queue(up1):
    """systemctl restart with a client arriving while no pf-proxyd runs: systemd's FD store
    holds the listener, the client waits in its backlog and the new pf-proxyd serves it."""
    write(HOLD, "")
    before = main_pid()
    rc, out = sh("systemctl", "restart", "--no-block", UNIT)
    if not wait_for(lambda: os.path.exists(WINDOW), 60):
        return check("restart-fd-store", False, f"ExecStartPre hold never reached ({rc} {out})")
    problems = []
    if pf_proxyd_running():
        problems.append("a pf-proxyd still runs in the window")
    try:
        s = connect(7001, timeout=60)
        s.sendall(b"queued across restart")
    except OSError as e:
        problems.append(f"connect while stopped: {e}")
        s = None
    os.unlink(HOLD)
    if s:
        with s:
            try:
                got = b""
                while len(got) < len(b"echo:queued across restart"):
                    part = s.recv(65536)
                    if not part:
                        break
                    got += part
            except OSError as e:
                got = repr(e).encode()
        if got != b"echo:queued across restart" or b"queued across restart" not in up1.got:
            problems.append(f"queued client got {got!r}")
    after = wait_for(lambda: prop("ActiveState") == "active" and main_pid(), 60)
    if not after or main_pid() == before:
        problems.append(f"MainPID {before} -> {main_pid()}, state {prop('ActiveState')}")
    os.unlink(WINDOW)
    check("restart-fd-store", not problems, "; ".join(problems))


def check_watchdog(up1):
    before, restarts = main_pid(), int(prop("NRestarts") or 0)
    os.kill(int(before), 19)  # SIGSTOP: pf-proxyd stops sending WATCHDOG=1
    new = wait_for(lambda: prop("ActiveState") == "active" and main_pid() not in (None, before)
                   and main_pid(), 90)
    log = sh("journalctl", "-u", UNIT, "--no-pager", "-o", "cat")[1]
    restarts_now = int(prop("NRestarts") or 0)
    check("watchdog-restart", new and restarts_now == restarts + 1 and "Watchdog timeout" in log,
          f"MainPID {before} -> {main_pid()}, NRestarts {restarts} -> {restarts_now}, "
          f"watchdog in journal: {'Watchdog timeout' in log}")
    check("relay-after-watchdog", *relays(7001, up1, b"after the watchdog"))


def check_stop_drains(up1):
    problems = []
    try:
        s = connect(7001)
        if exchange(s, b"before stop") != b"echo:before stop":
            problems.append("no answer before stop")
    except OSError as e:
        return check("stop-drains", False, f"connect: {e}")
    with s:
        sh("systemctl", "stop", "--no-block", UNIT)
        if not wait_for(lambda: prop("ActiveState") == "deactivating", 30):
            problems.append(f"not deactivating: {prop('ActiveState')}")
        # The open connection is still relayed while pf-proxyd drains...
        if exchange(s, b"during the drain") != b"echo:during the drain":
            problems.append("the open connection was not relayed during the drain")
        if prop("ActiveState") != "deactivating":
            problems.append(f"stopped with a connection open: {prop('ActiveState')}")
    # ...and once it closes, pf-proxyd exits 0 before its drain timeout.
    if not wait_for(lambda: prop("ActiveState") == "inactive", 60):
        problems.append(f"still {prop('ActiveState')} after the last connection closed")
    result, status = prop("Result"), prop("ExecMainStatus")
    if result != "success" or status != "0":
        problems.append(f"Result {result}, ExecMainStatus {status}")
    if b"during the drain" not in up1.got:
        problems.append("the upstream never saw the drained message")
    check("stop-drains", not problems, "; ".join(problems))


def check_socket_activation():
    """The shipped example .socket units: TCP 127.0.0.1:8080 and vsock::5000 owned by systemd;
    the first connection starts pf-proxyd.service, which takes both (systemd:web, systemd:guest)."""
    web, guest = EchoServer(9000), EchoServer(9001)
    for f in ["pf-proxyd-web.socket", "pf-proxyd-guest.socket"]:
        with open(f"{EXAMPLES}/{f}") as src:
            write(f"/etc/systemd/system/{f}", src.read())
    with open(f"{EXAMPLES}/pf-proxyd.service.d/socket-activation.conf") as src:
        write(f"{DROPIN_DIR}/socket-activation.conf", src.read())
    with open(f"{EXAMPLES}/socket-activated.json") as src:
        write(POLICY, src.read())
    # enable reloads the manager's configuration: the new units and the drop-in included.
    rc, out = sh("systemctl", "enable", "--now", "pf-proxyd-web.socket", "pf-proxyd-guest.socket")
    state = prop("ActiveState")
    if not check("sockets-listening", rc == 0 and state == "inactive",
                 f"exit {rc} {out}; pf-proxyd.service {state}"):
        return
    check("socket-activation-tcp", *relays(8080, web, b"activated by tcp"))
    check("socket-activation-vsock", *relays(5000, guest, b"activated by vsock", "vsock"))
    pid = main_pid()
    env = b""
    if pid:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    check("socket-activation-passed", b"LISTEN_FDNAMES=" in env and b"web" in env
          and b"guest" in env, f"pf-proxyd environment: {env!r}")
    sh("systemctl", "stop", "pf-proxyd-web.socket", "pf-proxyd-guest.socket", UNIT)


def main(deb):
    say("PFP-GUEST-START")
    check_pid1()
    if load_vsock() and check_install(deb):
        # The test's drop-in: a short watchdog, and a hook that holds a start while HOLD exists
        # (the '+' runs it outside the sandbox, which would hide /run). `systemctl enable` in
        # check_start reloads the configuration, which loads it.
        write(f"{DROPIN_DIR}/test.conf", "[Service]\nWatchdogSec=6s\n"
              f"ExecStartPre=+/bin/sh -c 'if [ -e {HOLD} ]; then touch {WINDOW}; "
              f"while [ -e {HOLD} ]; do sleep 0.1; done; fi'\n")
        up1, up2 = EchoServer(7101), EchoServer(7102)
        if check_start(up1):
            check_sandbox()
            check_reload(up1, up2)
            check_restart_queue(up1)
            check_watchdog(up1)
            check_stop_drains(up1)
        check_socket_activation()
    else:
        say("# setup failed: no further checks")
    if failures:
        say(sh("journalctl", "-u", UNIT, "--no-pager", "-n", "60")[1])
    say(f"PFP-GUEST-EXIT={failures}")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as e:  # a crash of the driver itself is a failure too
        say(f"PFP-CHECK FAIL driver: {type(e).__name__}: {e}")
        say("PFP-GUEST-EXIT=99")
    finally:
        subprocess.run(["systemctl", "poweroff", "-ff"])
