#!/usr/bin/env python3
"""The manual pages (man/*.scd, rendered by the build into BUILD/man/).

  render   every page renders with groff -man -Tutf8 -ww without a warning, and man -l reads it.
  options  each program's --help and its page name the same options: pf-proxyd(8) and
           pf-proxyctl(8) in their OPTIONS sections; pf-proxy-compat(1) in each command's
           SYNOPSIS line, against `COMMAND --help` of every seed command.

Exit 0 when all hold; otherwise one line per difference and exit 1.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys

PAGES = ["pf-proxyd.8", "pf-proxyctl.8", "pf-proxy.json.5", "pf-proxy-compat.1"]
COMPAT = ["vsock-to-ip", "ip-to-vsock", "vsock-to-ip-transparent", "ip-to-vsock-transparent",
          "transparent-port-to-vsock", "port-to-vsock-transparent", "vsockproxy"]
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def check_render(man_dir):
    failures = []
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    for page in PAGES:
        path = man_dir / page
        if not path.is_file():
            failures.append(f"{path}: not built")
            continue
        r = run(["groff", "-man", "-Tutf8", "-ww", "-z", str(path)], env=env)
        if r.returncode != 0 or r.stderr.strip():
            failures.append(f"{page}: groff -ww: {r.stderr.strip() or r.returncode}")
        # What lintian runs on every page (its groff-message check).
        r = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(path)], env=env)
        if r.returncode != 0 or r.stderr.strip():
            failures.append(f"{page}: man --warnings -l: {r.stderr.strip() or r.returncode}")
        r = run(["man", "-l", str(path)], env=dict(env, MANPAGER="cat", PAGER="cat"))
        name = page.rsplit(".", 1)[0]
        if r.returncode != 0 or name not in r.stdout:
            failures.append(f"{page}: man -l does not show it ({r.returncode})")
    print(f"{len(PAGES)} pages rendered")
    return failures


def section(source_text, title):
    """The lines of the scdoc section `# TITLE`."""
    out, inside = [], False
    for line in source_text.splitlines():
        if line.startswith("# "):
            inside = line[2:].strip() == title
            continue
        if inside:
            out.append(line)
    return out


def page_options(lines):
    """Options defined in an OPTIONS section: the *-x*, *--long* of each term line."""
    opts = set()
    for line in lines:
        if line.startswith("*"):
            opts.update(OPTION.findall(line.replace("*", " ")))
    return opts


def help_options(text):
    opts = set()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("-"):
            # Boost: "-p [ --policy ] arg", "--check"; clap layout: "-v, --vsock-addr <X>".
            head = re.split(r"\s{2,}", s)[0]
            opts.update(OPTION.findall(head.replace("[", " ").replace("]", " ")))
    return opts


def compare(what, help_set, page_set):
    failures = []
    if help_set - page_set:
        failures.append(f"{what}: in --help, not in the page: {sorted(help_set - page_set)}")
    if page_set - help_set:
        failures.append(f"{what}: in the page, not in --help: {sorted(page_set - help_set)}")
    return failures


def check_options(source, bin_dir):
    failures = []
    for prog in ["pf-proxyd", "pf-proxyctl"]:
        scd = (source / "man" / f"{prog}.8.scd").read_text()
        r = run([str(bin_dir / prog), "--help"])
        if r.returncode != 0:
            failures.append(f"{prog} --help exited {r.returncode}")
            continue
        h = help_options(r.stdout)
        if len(h) < 4:
            failures.append(f"{prog} --help: found only {sorted(h)}")
        failures += compare(prog, h, page_options(section(scd, "OPTIONS")))
    scd = (source / "man" / "pf-proxy-compat.1.scd").read_text()
    synopsis = section(scd, "SYNOPSIS")
    all_page = page_options(section(scd, "OPTIONS"))
    for cmd in COMPAT:
        r = run([str(bin_dir / "pf-proxy-compat"), cmd, "--help"])
        if r.returncode != 0:
            failures.append(f"{cmd} --help exited {r.returncode}")
            continue
        h = help_options(r.stdout)
        lookup = "transparent-port-to-vsock" if cmd == "port-to-vsock-transparent" else cmd
        line = next((l for l in synopsis if l.startswith(f"*{lookup}*")), None)
        if line is None:
            failures.append(f"pf-proxy-compat.1: no SYNOPSIS line for {cmd}")
            continue
        # --help and --version are in every command's help; the page lists them once.
        syn = set(OPTION.findall(line.replace("*", " "))) | {"-h", "--help", "-V", "--version"}
        long_help = {o for o in h if o.startswith("--")}
        failures += compare(f"{cmd} (SYNOPSIS)", long_help, {o for o in syn if o.startswith("--")})
        missing = h - all_page
        if missing:
            failures.append(f"{cmd}: options not described in OPTIONS: {sorted(missing)}")
    print(f"options compared for pf-proxyd, pf-proxyctl and {len(COMPAT)} seed commands")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["render", "options"])
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    source, build = pathlib.Path(args.source), pathlib.Path(args.build)
    if args.check == "render":
        failures = check_render(build / "man")
    else:
        failures = check_options(source, build / "bin")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
