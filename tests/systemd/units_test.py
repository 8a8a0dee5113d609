#!/usr/bin/env python3
"""Checks pf-proxy's systemd integration as `cmake --install` puts it on a system.

Every check installs the build into a fresh temporary root (DESTDIR) and looks at the installed
files, so the units are checked with the paths and binaries they will really have:

  install   the expected files land under the prefix (and nothing outside it), executables are
            executable, no @PLACEHOLDER@ is left, every Exec*= command exists.
  verify    `systemd-analyze verify --root=ROOT` is silent for pf-proxyd.service, an instance of
            pf-proxyd@.service, and the example socket units with their drop-in; sysusers.d and
            tmpfiles.d apply cleanly to the root (user pf-proxy, /etc/pf-proxy, /run/pf-proxy).
  security  `systemd-analyze security --offline=true --threshold=25` passes for both services,
            and no check fails beyond the ones listed (with reasons) in ACCEPTED.
  syscalls  every system call of every worker profile (docs/security.md) passes the units'
            SystemCallFilter= (systemd's filter stacks under each worker's own).
  exec      runs the unit's ExecStartPre=, ExecStart=, ExecReload= and stop sequence against a test
            policy the way systemd would (unit's user identity, ambient capabilities, bounding
            set, no-new-privs, umask, NOTIFY_SOCKET, WATCHDOG_USEC) under strace, relays a
            connection, and checks that every system call and address family pf-proxyd and its
            workers used is one the unit allows.

Each check also runs negative controls: it breaks a copy of the unit on purpose (a mistyped key,
a missing binary, no NoNewPrivileges=, no seccomp in the filter, ...) and fails unless it
notices, so a check that silently stopped checking cannot pass.

systemd is not PID 1 on the test machines; systemd-analyze works without it.
"""
import argparse
import json
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

THRESHOLD = 25  # systemd-analyze's 0-100 scale: 2.5

# Security checks the services fail on purpose. Anything else failing is a regression.
ACCEPTED = {
    "SystemCallFilter=~@privileged": "capset: pf-proxyd raises and lowers capabilities, workers drop theirs",
    "RootDirectory=/RootImage=": "runs the host's installed binaries",
    "AmbientCapabilities=": "the only way a non-root User= gets CAP_NET_BIND_SERVICE",
    "RestrictAddressFamilies=~AF_UNIX": "worker control sockets, sd_notify, control socket, unix endpoints",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "TCP endpoints",
    "RestrictAddressFamilies=~\u2026": "AF_VSOCK: vsock endpoints",
    "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)": "CAP_NET_BIND_SERVICE: ports below 1024",
    "PrivateNetwork=": "a proxy relays between the host's networks",
    "PrivateUsers=": "capabilities in a user namespace do not count for the host's network namespace",
    "DeviceAllow=": "char-rtc:r, which ProtectClock=yes adds",
    "IPAddressDeny=": "a proxy's peers are per deployment (drop-in)",
    "SystemCallFilter=~@mount": "mount, chroot: a worker with a Unix upstream builds its filesystem view",
    "RestrictNamespaces=~user": "the filesystem view's own user namespace (unprivileged mounts)",
    "RestrictNamespaces=~mnt": "the filesystem view's own mount namespace",
}
# examples/pf-proxyd.service.d/raw-packets.conf adds these on purpose.
ACCEPTED_RAW_PACKETS = {
    "RestrictAddressFamilies=~AF_NETLINK": "nfqueue",
    "CapabilityBoundingSet=~CAP_NET_ADMIN": "nfqueue bind and verdicts",
}

SERVICES = ["pf-proxyd.service", "pf-proxyd@example.service"]
EXAMPLE_SOCKETS = ["pf-proxyd-web.socket", "pf-proxyd-guest.socket"]
COMPAT_COMMANDS = ["vsock-to-ip", "ip-to-vsock", "vsock-to-ip-transparent", "ip-to-vsock-transparent",
                   "transparent-port-to-vsock", "port-to-vsock-transparent", "vsockproxy", "tcpfwd", "udpfwd",
                   "ip-to-vsock-raw-incoming", "ip-to-vsock-raw-outgoing", "vsock-to-ip-raw-incoming",
                   "vsock-to-ip-raw-outgoing", "kcptcp-client", "kcptcp-server"]


class Failure(Exception):
    pass


def log(*a):
    print(*a, flush=True)


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if check and p.returncode != 0:
        raise Failure(f"{shlex.join(cmd)} exited {p.returncode}\n{p.stdout}{p.stderr}")
    return p


# ---- unit files ---------------------------------------------------------------------------------

def parse_unit(path):
    """{section: [(key, value), ...]} in file order; enough of systemd.syntax(7) for our units."""
    sections, current = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
            elif "=" in line and current is not None:
                k, v = line.split("=", 1)
                current.append((k.strip(), v.strip()))
    return sections


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit, section, key):
    v = values(unit, section, key)
    if not v:
        raise Failure(f"{key}= missing in [{section}]")
    return v[-1]


def exec_argv(value, instance=None):
    """argv of an Exec*= value: prefixes (-@:+!) dropped, %i filled in."""
    value = value.lstrip("-@:+!")
    if instance is not None:
        value = value.replace("%i", instance)
    return shlex.split(value)


def seconds(span):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", span)
    if not m:
        raise Failure(f"cannot read time span {span!r}")
    return int(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)


# ---- the installed root -------------------------------------------------------------------------

class Root:
    """The build installed with DESTDIR into a temporary directory, plus what systemd-analyze
    --root needs from the host (the targets the units order against)."""

    def __init__(self, args):
        self.args = args
        self.path = tempfile.mkdtemp(prefix="pfp-systemd-")
        os.chmod(self.path, 0o755)
        env = dict(os.environ, DESTDIR=self.path)
        p = run([args.cmake, "--install", args.build, "--prefix", args.prefix], env=env)
        self.install_log = p.stdout
        self.unitdir = self.at(args.unitdir)
        # systemd-analyze --root resolves default dependencies (sysinit.target, ...) and After=
        # targets inside the root: give it the host's target units, never our own units.
        dest = os.path.join(self.path, "usr/lib/systemd/system")
        os.makedirs(dest, exist_ok=True)
        for host_units in ("/usr/lib/systemd/system", "/lib/systemd/system"):
            for name in os.listdir(host_units) if os.path.isdir(host_units) else []:
                if name.endswith(".target") and not os.path.exists(os.path.join(dest, name)):
                    shutil.copy2(os.path.join(host_units, name), dest)

    def at(self, absolute):
        return os.path.join(self.path, absolute.lstrip("/"))

    def unit(self, name):
        return os.path.join(self.unitdir, name)

    def etc_unit(self, name):
        d = self.at("/etc/systemd/system")
        os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
        return os.path.join(d, name)

    def examples(self):
        return os.path.join(self.at(self.args.docdir), "examples/systemd")

    def analyze(self, *a):
        return run(["systemd-analyze", *a, f"--root={self.path}"], check=False, cwd=self.path)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


# ---- install ------------------------------------------------------------------------------------

def expected_files(args):
    docs = args.docdir
    ex = f"{docs}/examples/systemd"
    files = {
        f"{args.sbindir}/pf-proxyd": "exe",
        f"{args.libexecdir}/pf-proxy/pf-proxy-worker": "exe",
        f"{args.bindir}/pf-proxy-compat": "exe",
        f"{args.unitdir}/pf-proxyd.service": "unit",
        f"{args.unitdir}/pf-proxyd@.service": "unit",
        f"{args.prefix}/lib/sysusers.d/pf-proxy.conf": "file",
        f"{args.prefix}/lib/tmpfiles.d/pf-proxy.conf": "file",
        f"{docs}/architecture.md": "file",
        f"{docs}/policy.md": "file",
        f"{docs}/security.md": "file",
        f"{docs}/examples/loopback.json": "file",
        f"{ex}/README.md": "file",
        f"{ex}/socket-activated.json": "file",
        f"{ex}/pf-proxyd-web.socket": "unit",
        f"{ex}/pf-proxyd-guest.socket": "unit",
        f"{ex}/pf-proxyd.service.d/socket-activation.conf": "unit",
        f"{ex}/pf-proxyd.service.d/raw-packets.conf": "unit",
    }
    for c in COMPAT_COMMANDS:
        files[f"{args.bindir}/{c}"] = "link:pf-proxy-compat"
    if args.with_ctl:
        files[f"{args.bindir}/pf-proxyctl"] = "exe"
    return files


def check_install(args):
    root = Root(args)
    try:
        problems = []
        for path, what in sorted(expected_files(args).items()):
            p = root.at(path)
            if what.startswith("link:"):
                if not os.path.islink(p) or os.readlink(p) != what[5:]:
                    problems.append(f"{path}: expected a symlink to {what[5:]}")
                continue
            if not os.path.isfile(p):
                problems.append(f"{path}: not installed")
                continue
            mode = os.stat(p).st_mode & 0o7777
            if what == "exe" and mode & 0o111 != 0o111:
                problems.append(f"{path}: mode {mode:o}, not executable by all")
            if what in ("unit", "file") and mode & 0o7133:
                problems.append(f"{path}: mode {mode:o}, expected 0644")
            if what == "unit":
                text = open(p).read()
                left = re.findall(r"@[A-Z_]+@", text)
                if left:
                    problems.append(f"{path}: placeholders not filled in: {sorted(set(left))}")
        # Nothing outside the prefix: a package owns exactly PREFIX/...
        prefix = os.path.normpath(args.prefix).lstrip("/")
        for dirpath, _, names in os.walk(root.path):
            rel = os.path.relpath(dirpath, root.path)
            for n in names:
                f = os.path.normpath(os.path.join(rel, n))
                if f.startswith("usr/lib/systemd/system/") and n.endswith(".target"):
                    continue  # the host targets Root copied in
                if not (f + "/").startswith(prefix + "/"):
                    problems.append(f"/{f}: installed outside the prefix {args.prefix}")
        # Every command a service runs exists: ours in the root, others (/bin/kill) on the host.
        for name in ("pf-proxyd.service", "pf-proxyd@.service"):
            unit = parse_unit(root.unit(name))
            for key in ("ExecStartPre", "ExecStart", "ExecReload"):
                for v in values(unit, "Service", key):
                    exe = exec_argv(v, "example")[0]
                    if not exe.startswith("/"):
                        problems.append(f"{name}: {key}={exe} is not an absolute path")
                        continue
                    here = root.at(exe) if exe.startswith(args.prefix + "/") else exe
                    if not os.access(here, os.X_OK):
                        problems.append(f"{name}: {key}= runs {exe}, which is not installed")
                    if exe.startswith(args.prefix + "/") and exe != f"{args.sbindir}/pf-proxyd":
                        problems.append(f"{name}: {key}= runs {exe}, expected {args.sbindir}/pf-proxyd")
        log(f"installed into {root.path} with prefix {args.prefix}:")
        for dirpath, _, names in sorted(os.walk(root.at(args.prefix))):
            for n in sorted(names):
                log("  /" + os.path.relpath(os.path.join(dirpath, n), root.path))
        if problems:
            raise Failure("install problems:\n  " + "\n  ".join(problems))
    finally:
        root.cleanup()


# ---- verify -------------------------------------------------------------------------------------

def verify(root, *units):
    """Every finding of systemd-analyze verify, warnings included (it exits 0 on many of them,
    such as an unknown key)."""
    p = root.analyze("verify", "--man=no", *units)
    out = (p.stdout + p.stderr).strip()
    if p.returncode != 0 and not out:
        out = f"exit status {p.returncode}"
    return out


def check_verify(args):
    root = Root(args)
    try:
        problems = []
        out = verify(root, *SERVICES)
        log(f"verify {' '.join(SERVICES)}: {out or 'clean'}")
        if out:
            problems.append(out)

        # The examples as the README installs them: socket units and drop-in in /etc.
        ex = root.examples()
        for s in EXAMPLE_SOCKETS:
            shutil.copy(os.path.join(ex, s), root.etc_unit(s))
        shutil.copy(os.path.join(ex, "pf-proxyd.service.d/socket-activation.conf"),
                    root.etc_unit("pf-proxyd.service.d/socket-activation.conf"))
        out = verify(root, "pf-proxyd.service", *EXAMPLE_SOCKETS)
        log(f"verify with the socket-activation examples: {out or 'clean'}")
        if out:
            problems.append(out)
        shutil.copy(os.path.join(ex, "pf-proxyd.service.d/raw-packets.conf"),
                    root.etc_unit("pf-proxyd.service.d/raw-packets.conf"))
        out = verify(root, "pf-proxyd.service")
        log(f"verify with raw-packets.conf: {out or 'clean'}")
        if out:
            problems.append(out)
        shutil.rmtree(root.at("/etc/systemd/system"))

        # The example policy fits the example sockets (names and families).
        pol = os.path.join(ex, "socket-activated.json")
        p = run([root.at(f"{args.sbindir}/pf-proxyd"), "--check", "--policy", pol], check=False)
        log(f"pf-proxyd --check {os.path.basename(pol)}: exit {p.returncode} {p.stderr.strip()}")
        if p.returncode != 0:
            problems.append(f"the example policy does not pass --check:\n{p.stderr}")
        with open(pol) as f:
            wanted = {x["listen"].removeprefix("systemd:"): x["listen_family"]
                      for x in json.load(f)["proxies"]}
        passed = {}
        for s in EXAMPLE_SOCKETS:
            u = parse_unit(os.path.join(ex, s))
            listen = one(u, "Socket", "ListenStream")
            family = ("vsock" if listen.startswith("vsock:") else
                      "unix" if listen.startswith(("/", "@")) else "tcp")
            passed[one(u, "Socket", "FileDescriptorName")] = family
        if wanted != passed:
            problems.append(f"the example policy wants {wanted} (name: listen_family), "
                            f"the example sockets pass {passed}")

        problems += check_users_and_dirs(root)

        # Negative controls: verify must notice a mistyped key and a missing binary.
        service = root.unit("pf-proxyd.service")
        good = open(service).read()
        with open(service, "w") as f:
            f.write(good.replace("[Service]\n", "[Service]\nNoNewPrivilege=yes\n", 1))
        if not verify(root, "pf-proxyd.service"):
            problems.append("negative control: verify did not notice NoNewPrivilege= (a typo)")
        with open(service, "w") as f:
            f.write(good)
        exe = root.at(f"{args.sbindir}/pf-proxyd")
        os.rename(exe, exe + ".away")
        if not verify(root, "pf-proxyd@example.service"):
            problems.append("negative control: verify did not notice a missing pf-proxyd")
        os.rename(exe + ".away", exe)
        if verify(root, *SERVICES):
            problems.append("negative control: restoring the unit did not make verify clean")
        if problems:
            raise Failure("\n".join(problems))
    finally:
        root.cleanup()


def check_users_and_dirs(root):
    """sysusers.d and tmpfiles.d applied to the root, as package installation would."""
    problems = []
    p = run(["systemd-sysusers", f"--root={root.path}"], check=False)
    noise = [l for l in p.stderr.splitlines() if not re.match(r"Creating (user|group) ", l)]
    if p.returncode != 0 or noise or p.stdout.strip():
        return [f"systemd-sysusers --root failed ({p.returncode}):\n{p.stdout}{p.stderr}"]
    ids = {}
    for line in open(root.at("/etc/passwd")):
        f = line.split(":")
        ids[f[0]] = (int(f[2]), int(f[3]), f[5], f[6].strip())
    groups = {l.split(":")[0]: int(l.split(":")[2]) for l in open(root.at("/etc/group"))}
    if "pf-proxy" not in ids or "pf-proxy" not in groups:
        return ["sysusers.d/pf-proxy.conf did not create user and group pf-proxy"]
    uid, gid, _, shell = ids["pf-proxy"]
    if uid >= 1000 or gid != groups["pf-proxy"] or not shell.endswith("nologin"):
        problems.append(f"pf-proxy is not a system user with its own group: {ids['pf-proxy']}")
    p = run(["systemd-tmpfiles", "--create", f"--root={root.path}"], check=False)
    if p.returncode != 0 or p.stdout.strip() or p.stderr.strip():
        return problems + [f"systemd-tmpfiles --create --root failed ({p.returncode}):\n"
                           f"{p.stdout}{p.stderr}"]
    for path, want in (("/etc/pf-proxy", (0, gid, 0o750)), ("/run/pf-proxy", (uid, gid, 0o750))):
        try:
            st = os.stat(root.at(path))
        except FileNotFoundError:
            problems.append(f"tmpfiles.d did not create {path}")
            continue
        got = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
        log(f"{path}: uid {got[0]} gid {got[1]} mode {got[2]:04o}")
        if got != want:
            problems.append(f"{path}: uid/gid/mode {got}, expected {want}")
    return problems


# ---- security -----------------------------------------------------------------------------------

def security(root, unit):
    """(score, failing check names, exit status with --threshold)."""
    text = root.analyze("security", "--offline=true", f"--threshold={THRESHOLD}", "--no-pager", unit)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", text.stdout)
    if not m:
        raise Failure(f"no exposure level for {unit}:\n{text.stdout}{text.stderr}")
    js = root.analyze("security", "--offline=true", "--json=short", unit)
    failing = [x["name"] for x in json.loads(js.stdout) if x["set"] is False]
    return float(m.group(1)), failing, text.returncode


def security_problems(root, unit, accepted, label=None):
    score, failing, rc = security(root, unit)
    label = label or unit
    log(f"{label}: exposure {score}")
    problems = []
    if rc != 0:
        problems.append(f"{label}: exposure {score} is above {THRESHOLD / 10}")
    for name in failing:
        if name not in accepted:
            problems.append(f"{label}: newly exposed: {name}")
    for name in sorted(set(accepted) - set(failing)):
        log(f"  note: {name} now passes; it can leave the accepted list")
    return problems


def check_security(args):
    root = Root(args)
    try:
        problems = []
        for unit in SERVICES:
            problems += security_problems(root, unit, ACCEPTED)
        shutil.copy(os.path.join(root.examples(), "pf-proxyd.service.d/raw-packets.conf"),
                    root.etc_unit("pf-proxyd.service.d/raw-packets.conf"))
        problems += security_problems(root, "pf-proxyd.service", {**ACCEPTED, **ACCEPTED_RAW_PACKETS},
                                      "pf-proxyd.service + raw-packets.conf")
        shutil.rmtree(root.at("/etc/systemd/system"))

        # Negative controls, on a copy in /etc (which takes precedence over the prefix's).
        good = open(root.unit("pf-proxyd.service")).read()

        def mutated(text, what):
            with open(root.etc_unit("pf-proxyd.service"), "w") as f:
                f.write(text)
            got = security_problems(root, "pf-proxyd.service", ACCEPTED, f"negative control ({what})")
            os.remove(root.etc_unit("pf-proxyd.service"))
            return got

        if not mutated(re.sub(r"(?m)^NoNewPrivileges=.*\n", "", good), "no NoNewPrivileges="):
            problems.append("negative control: dropping NoNewPrivileges= went unnoticed")
        bare = "\n".join(l for l in good.splitlines()
                         if l.startswith(("[", "Exec", "Type=", "User=", "Group=")))
        with open(root.etc_unit("pf-proxyd.service"), "w") as f:
            f.write(bare + "\n")
        score, _, rc = security(root, "pf-proxyd.service")
        os.remove(root.etc_unit("pf-proxyd.service"))
        log(f"negative control (no sandbox at all): exposure {score}")
        if rc == 0:
            problems.append(f"negative control: a unit without sandbox passed the threshold ({score})")
        if problems:
            raise Failure("\n".join(problems))
    finally:
        root.cleanup()


# ---- system calls -------------------------------------------------------------------------------

def syscall_groups():
    groups, current = {}, None
    for line in run(["systemd-analyze", "syscall-filter", "--no-pager"]).stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#") and current is not None:
            current.append(line.strip())
    return groups


def expand(names, groups):
    out = set()
    for n in names:
        if n.startswith("@"):
            if n not in groups:
                raise Failure(f"unknown system call group {n}")
            out |= expand(groups[n], groups)
        else:
            out.add(n)
    return out


def allowed_syscalls(unit, groups):
    """The allow list SystemCallFilter= lines build, in order (systemd.exec(5): the first line
    decides allow- or deny-list; later '~' lines remove from an allow list, others add)."""
    lines = values(unit, "Service", "SystemCallFilter")
    if not lines or lines[0].startswith("~"):
        raise Failure("the unit has no SystemCallFilter= allow list")
    allowed = set()
    for line in lines:
        deny = line.startswith("~")
        names = expand(line.lstrip("~").split(), groups)
        allowed = allowed - names if deny else allowed | names
    return allowed


def worker_syscalls(source):
    """{syscall: [profiles]} from the per-kind tables in docs/security.md (a unit test keeps them
    equal to workers/sandbox_profiles.cpp)."""
    need, profile = {}, None
    for line in open(os.path.join(source, "docs/security.md")):
        m = re.match(r"<!-- profile:(\S+) -->", line)
        if m:
            profile = m.group(1)
            continue
        if line.startswith("#"):
            profile = None  # a heading ends a profile's table
        m = re.match(r"\| `([a-z0-9_]+)` \|", line)
        if m and profile:
            need.setdefault(m.group(1), set()).add(profile)
    if len(need) < 30:
        raise Failure(f"found only {len(need)} system calls in docs/security.md: format changed?")
    return need


def filter_problems(unit_path, groups, need, label):
    unit = parse_unit(unit_path)
    allowed = allowed_syscalls(unit, groups)
    missing = {s: p for s, p in need.items() if s not in allowed}
    return [f"{label}: {s} (profiles: {', '.join(sorted(p))}) is denied by the unit"
            for s, p in sorted(missing.items())]


def check_syscalls(args):
    root = Root(args)
    try:
        groups = syscall_groups()
        need = worker_syscalls(args.source)
        problems = []
        filters = {}
        for name in ("pf-proxyd.service", "pf-proxyd@.service"):
            path = root.unit(name)
            filters[name] = values(parse_unit(path), "Service", "SystemCallFilter")
            got = filter_problems(path, groups, need, name)
            log(f"{name}: {len(need)} worker system calls, {len(got)} denied")
            problems += got
        if filters["pf-proxyd.service"] != filters["pf-proxyd@.service"]:
            problems.append("the two services have different SystemCallFilter= lines")
        # Negative control: without seccomp in the allow list, workers could not start.
        good = open(root.unit("pf-proxyd.service")).read()
        bad = root.etc_unit("pf-proxyd.service")
        with open(bad, "w") as f:
            f.write(good.replace("SystemCallFilter=@system-service seccomp",
                                 "SystemCallFilter=@system-service"))
        if not filter_problems(bad, groups, {**need, "seccomp": {"lock-down"}}, "control"):
            problems.append("negative control: a filter without seccomp went unnoticed")
        if problems:
            raise Failure("\n".join(problems))
    finally:
        root.cleanup()


# ---- exec ---------------------------------------------------------------------------------------

class Echo(threading.Thread):
    """The upstream: echoes whatever it gets."""

    def __init__(self, path=None):
        super().__init__(daemon=True)
        if path is None:
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            return
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.listen()
        self.port = None

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    @staticmethod
    def serve(c):
        with c:
            while data := c.recv(65536):
                c.sendall(data)


class Notify:
    """A NOTIFY_SOCKET like systemd's: datagrams with the sender's credentials and fds."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.messages = []  # (pid, {key: value}, number of fds)

    def wait_for(self, key, value, timeout, alive=None):
        """The first message with key=value, or None after timeout (or once `alive`, a Popen,
        has exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if m[1].get(key) == value:
                    return m
            if alive is not None and alive.poll() is not None:
                return None
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64 * 4) +
                                                    socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid, fds = None, 0
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(payload[0:4], sys.byteorder)
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for i in range(0, len(payload) - len(payload) % 4, 4):
                        os.close(int.from_bytes(payload[i:i + 4], sys.byteorder))
                        fds += 1
            fields = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
            self.messages.append((pid, fields, fds))
        return None


def free_port(low=None):
    """A free TCP port on 127.0.0.1; below 1024 when low (needs root to probe)."""
    candidates = range(700, 1000) if low else [0]
    for port in candidates:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise Failure("no free port")


def relay_once(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while data := c.recv(65536):
            got += data
    return got


def strace_names(path):
    """System call names and socket families from an strace -f log."""
    names, families = set(), set()
    for line in open(path):
        m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]", line)
        if m:
            names.add(m.group(1))
        m = re.match(r"\d+\s+(?:socket|socketpair)\((AF_[A-Z0-9]+)", line)
        if m:
            families.add(m.group(1))
    names.discard("exited")
    return names, families


def exec_unit(args, root, echo, name, instance):
    """Runs one service's Exec lines as systemd would; returns a list of problems."""
    work = tempfile.mkdtemp(prefix="pfp-systemd-exec-")
    os.chmod(work, 0o777)
    main = None
    try:
        unit = parse_unit(root.unit(name))
        label = name.replace("@.", f"@{instance}.") if instance else name
        svc = lambda key: values(unit, "Service", key)
        as_root = os.geteuid() == 0
        capnames = lambda key: [c.lower().removeprefix("cap_") for c in one(unit, "Service", key).split()]
        caps, bound = capnames("AmbientCapabilities"), capnames("CapabilityBoundingSet")
        umask = int(one(unit, "Service", "UMask"), 8)

        # A policy such as a unit-run pf-proxyd has, with a privileged port when we can grant
        # CAP_NET_BIND_SERVICE (as root), and no "user": the unit already runs as its user.
        port = free_port()
        low = free_port(low=True) if as_root else None
        proxies = [{"name": "web", "listen": f"tcp:127.0.0.1:{port}",
                    "upstream": f"tcp:127.0.0.1:{echo.port}", "workers": 2}]
        if low:
            proxies.append({"name": "low", "listen": f"tcp:127.0.0.1:{low}",
                            "upstream": f"tcp:127.0.0.1:{echo.port}"})
        # A Unix upstream: its worker builds its filesystem view (user and mount namespace,
        # mount, chroot), which the unit's filters must allow.
        os.makedirs(os.path.join(work, "up"), mode=0o755)
        unix_echo = Echo(os.path.join(work, "up", "echo.sock"))
        unix_echo.start()
        unix_port = free_port()
        proxies.append({"name": "unixup", "listen": f"tcp:127.0.0.1:{unix_port}",
                        "upstream": f"unix:{work}/up/echo.sock"})
        policy = os.path.join(work, "policy.json")
        with open(policy, "w") as f:
            json.dump({"drain_timeout": "2s", "proxies": proxies}, f)
        os.chmod(policy, 0o644)
        # WORK/run stands in for /run; systemd creates RuntimeDirectory= before the start.
        run_root = os.path.join(work, "run")
        # As systemd makes it: owned by User= (nobody stands in), RuntimeDirectoryMode=.
        # pf-proxyd refuses a socket directory others may write to.
        run_mode = int(one(unit, "Service", "RuntimeDirectoryMode"), 8)
        for d in values(unit, "Service", "RuntimeDirectory"):
            path = os.path.join(run_root, d.replace("%i", instance or ""))
            os.makedirs(path)
            if as_root:
                os.chown(path, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
            os.chmod(path, run_mode)
        notify = Notify(os.path.join(work, "notify"))

        def command(value, mainpid=None):
            """An Exec*= line with the root's binaries, our policy and runtime directory."""
            argv = []
            for a in exec_argv(value, instance):
                if mainpid:
                    a = a.replace("$MAINPID", str(mainpid))
                if a.startswith(args.prefix + "/"):
                    a = root.at(a)
                a = re.sub(r"^/etc/pf-proxy/[^/]+\.json$", policy, a)
                a = a.replace("/run/", run_root + "/", 1) if a.startswith("/run/") else a
                argv.append(a)
            if os.path.basename(argv[0]) == "pf-proxyd":
                # pf-proxyd looks for its worker in the compiled-in libexec directory, which is
                # the prefix's on a real system; here it is inside the root.
                argv += ["--worker", root.at(f"{args.libexecdir}/pf-proxy/pf-proxy-worker")]
            return argv

        # User= (a system user: nobody stands in for pf-proxy), AmbientCapabilities=,
        # CapabilityBoundingSet=, NoNewPrivileges=, UMask=.
        identity = []
        if as_root:
            plus = lambda cs: "".join(",+" + c for c in cs)
            identity = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "--no-new-privs", "--bounding-set=-all" + plus(bound),
                        "--inh-caps=-all" + plus(caps), "--ambient-caps=-all" + plus(caps)]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "NOTIFY_SOCKET": notify.path,
               # LeakSanitizer (sanitizer builds) cannot stop threads under strace.
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"}
        watchdog = svc("WatchdogSec")
        if watchdog:
            # Shortened from the unit's interval so the test need not wait for it; pf-proxyd
            # must ping at half of whatever WATCHDOG_USEC says.
            env["WATCHDOG_USEC"] = "2000000"
        traces = []

        def traced(argv):
            trace = os.path.join(work, f"trace.{len(traces)}")
            traces.append(trace)
            log("$ " + shlex.join(argv))
            return subprocess.Popen(identity + ["strace", "-f", "-qq", "-o", trace] + argv,
                                    env=env, umask=umask, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        problems = []
        for v in svc("ExecStartPre"):
            p = traced(command(v))
            out, _ = p.communicate(timeout=60)
            if p.returncode != 0:
                return [f"{label}: ExecStartPre= failed ({p.returncode}):\n{out}"]

        main = traced(command(one(unit, "Service", "ExecStart")))
        ready = notify.wait_for("READY", "1", 60, alive=main)
        if ready is None:
            main.kill()
            return [f"{label}: ExecStart=: no READY=1 (exit status {main.wait()}):\n"
                    f"{main.communicate()[0]}"]
        mainpid = ready[0]
        # NotifyAccess=main: systemd ignores messages from anyone but the main process.
        children = open(f"/proc/{main.pid}/task/{main.pid}/children").read().split()
        if str(mainpid) not in children:
            problems.append(f"{label}: READY=1 came from pid {mainpid}, not the main process")
        for p in [port, unix_port] + ([low] if low else []):
            if relay_once(p, b"hello through pf-proxyd\n") != b"hello through pf-proxyd\n":
                problems.append(f"{label}: port {p}: the relay did not echo")
        # The control socket: in the RuntimeDirectory=, mode 0660 despite UMask=0077 (group
        # members use pf-proxyctl), answering pf-proxyctl.
        argv = command(one(unit, "Service", "ExecStart"))
        if "--control" in argv:
            ctl = argv[argv.index("--control") + 1]
            st = os.stat(ctl)
            if st.st_mode & 0o7777 != 0o660:
                problems.append(f"{label}: control socket mode {st.st_mode & 0o7777:04o}, expected 0660")
            if args.with_ctl:
                p = run(identity[:4] + [root.at(f"{args.bindir}/pf-proxyctl"), "--control", ctl,
                                        "status"], check=False, env=env)
                log(f"pf-proxyctl status: exit {p.returncode}")
                if p.returncode != 0:
                    problems.append(f"{label}: pf-proxyctl status failed:\n{p.stdout}{p.stderr}")
        if watchdog and notify.wait_for("WATCHDOG", "1", 3, alive=main) is None:
            problems.append(f"{label}: WatchdogSec= is set, but pf-proxyd sent no WATCHDOG=1 "
                            "within WATCHDOG_USEC (2s here): systemd would kill it")

        for v in svc("ExecReload"):
            p = traced(command(v, mainpid))
            out, _ = p.communicate(timeout=60)
            if p.returncode != 0:
                problems.append(f"{label}: ExecReload={v} failed ({p.returncode}):\n{out}")
        notify.wait_for("never", "never", 1.5)  # what the reload sends
        if main.poll() is not None:
            return problems + [f"{label}: pf-proxyd died on reload:\n{main.communicate()[0]}"]
        if relay_once(port, b"after reload\n") != b"after reload\n":
            problems.append(f"{label}: the relay did not echo after the reload")

        # KillMode=mixed: SIGTERM to the main process only; it must drain and exit 0 in time.
        os.kill(mainpid, signal.SIGTERM)
        try:
            out, _ = main.communicate(timeout=seconds(one(unit, "Service", "TimeoutStopSec")))
        except subprocess.TimeoutExpired:
            main.kill()
            return problems + [f"{label}: pf-proxyd did not stop within TimeoutStopSec=:\n"
                               f"{main.communicate()[0]}"]
        log(out.rstrip())
        if main.returncode != 0:
            problems.append(f"{label}: pf-proxyd exited {main.returncode} on SIGTERM, expected 0")
        notify.wait_for("never", "never", 0.2)
        sent = [m[1] for m in notify.messages]
        strangers = {m[0] for m in notify.messages} - {mainpid}
        if strangers:
            problems.append(f"{label}: notify messages from pids {sorted(strangers)}, which "
                            "NotifyAccess=main makes systemd ignore")
        log("notify: " + " | ".join(" ".join(f"{k}={v}" for k, v in m.items()) for m in sent))
        # RELOADING=1 puts the unit into "reloading" until the next READY=1.
        last_reloading = max((i for i, m in enumerate(sent) if m.get("RELOADING") == "1"), default=None)
        if last_reloading is not None and not any(m.get("READY") == "1" for m in sent[last_reloading:]):
            problems.append(f"{label}: RELOADING=1 without a READY=1 after it: the unit would "
                            "stay in state reloading")
        stored = sum(m[2] for m in notify.messages if m[1].get("FDSTORE") == "1")
        if stored > int(one(unit, "Service", "FileDescriptorStoreMax")):
            problems.append(f"{label}: pf-proxyd stored {stored} fds, more than FileDescriptorStoreMax=")

        # Everything that ran stayed inside the unit's system call and address family filters.
        used, families = set(), set()
        for t in traces:
            n, f = strace_names(t)
            used |= n
            families |= f
        allowed = allowed_syscalls(unit, syscall_groups())
        denied = sorted(used - allowed)
        log(f"{label}: {len(used)} system calls used, denied by the unit: {denied or 'none'}")
        if denied:
            problems.append(f"{label}: pf-proxyd or a worker used system calls the unit denies "
                            f"(EPERM under systemd): {denied}")
        allowed_families = set(one(unit, "Service", "RestrictAddressFamilies").split())
        log(f"{label}: address families used: {sorted(families)}")
        if families - allowed_families:
            problems.append(f"{label}: address families the unit does not allow: "
                            f"{sorted(families - allowed_families)}")
        # Negative control: the comparison notices a call outside the filter (capset, the one
        # call @privileged lends pf-proxyd, is always used).
        if not used - (allowed - {"capset"}):
            problems.append("negative control: a filter without capset would have passed")
        return problems
    finally:
        if main is not None and main.poll() is None:
            main.kill()
            main.wait()
        shutil.rmtree(work, ignore_errors=True)


def check_exec(args):
    if shutil.which("strace") is None:
        raise Failure("strace is missing (scripts/install-deps.sh installs it)")
    root = Root(args)
    echo = Echo()
    echo.start()
    try:
        problems = []
        for name, instance in (("pf-proxyd.service", None), ("pf-proxyd@.service", "example")):
            problems += exec_unit(args, root, echo, name, instance)
        if problems:
            raise Failure("\n".join(problems))
    finally:
        echo.sock.close()
        root.cleanup()


CHECKS = {"install": check_install, "verify": check_verify, "security": check_security,
          "syscalls": check_syscalls, "exec": check_exec}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("check", choices=CHECKS)
    ap.add_argument("--cmake", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--sbindir", required=True, help="absolute, as CMAKE_INSTALL_FULL_SBINDIR")
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--libexecdir", required=True)
    ap.add_argument("--docdir", required=True)
    ap.add_argument("--unitdir", required=True, help="absolute")
    ap.add_argument("--with-ctl", type=int, default=0, help="1 if pf-proxyctl is built")
    args = ap.parse_args()
    try:
        CHECKS[args.check](args)
    except Failure as e:
        log(f"FAIL: {e}")
        return 1
    log(f"{args.check}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
