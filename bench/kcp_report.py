#!/usr/bin/env python3
"""bench/kcp.sh's helpers.

  kcp_report.py cpu PID...        utime+stime (clock ticks) of the PIDs and all their descendants
  kcp_report.py table RESULTS     the markdown table of results.tsv (round, path, metric, value)

The table: medians over rounds. Throughput in Gbit/s (iperf3's received bytes / seconds), the
round trip p50 of one 100-byte request in flight and what the tunnel adds to the direct path's,
and the tunnel processes' CPU per MB carried (both ends, their workers included). "vs kcptun"
divides the pf path's number by the kcptun path with the matching key setting and loss (-K
against --crypt aes, no key against --crypt none): above 1 is better for throughput, below 1 is
better for round trip and CPU.
"""
import argparse
import collections
import math
import os
import statistics
import sys

PATHS = ["direct", "pf", "pf-K", "pf-K-kernelbuf", "kcptun-none", "kcptun-aes",
         "pf-loss5", "pf-K-loss5", "kcptun-none-loss5", "kcptun-aes-loss5"]
PEER = {"pf": "kcptun-none", "pf-K": "kcptun-aes", "pf-K-kernelbuf": "kcptun-aes",
        "pf-loss5": "kcptun-none-loss5", "pf-K-loss5": "kcptun-aes-loss5"}
TARGET_GBITS = 1.0      # pf-K, 0 % loss
TARGET_ADDED_US = 1500  # pf-K, 0 % loss: added p50 per request


def cpu(pids):
    parent = {}
    ticks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    wanted = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    print(sum(ticks.get(p, 0) for p in wanted))


def fmt(x, digits=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def table(a):
    data = collections.defaultdict(lambda: collections.defaultdict(list))
    with open(a.results) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            _, path, metric, value = parts
            try:
                data[path][metric].append(float(value))
            except ValueError:
                pass

    def med(path, metric):
        v = [x for x in data[path][metric] if not math.isnan(x)]
        return statistics.median(v) if v else None

    row = {}
    for p in PATHS:
        if p not in data:
            continue
        b, s, c = med(p, "bytes"), med(p, "seconds"), med(p, "cpu_s")
        gbits = b * 8 / s / 1e9 if b and s else None
        mb = b / 1e6 if b else None
        row[p] = {"gbits": gbits, "p50": med(p, "p50_us"),
                  "cpu_ms_mb": c * 1000 / mb if (c is not None and mb) else None}
    d = row.get("direct", {})
    print(f"KCP tunnel vs direct TCP and kcptun, loopback, {a.rounds} round(s) of {a.duration} s "
          f"per measurement (load average at the end: {a.load}); medians.\n")
    print("| path | Gbit/s | x direct | p50 us | added p50 us | CPU ms/MB | "
          "vs kcptun: tput x | p50 x | CPU/MB x |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in PATHS:
        if p not in row:
            continue
        r = row[p]
        x_direct = r["gbits"] / d["gbits"] if r["gbits"] and d.get("gbits") else None
        added = r["p50"] - d["p50"] if r["p50"] is not None and d.get("p50") is not None else None
        peer = row.get(PEER.get(p, ""), {})

        def ratio(k):
            return r[k] / peer[k] if r.get(k) and peer.get(k) else None
        print(f"| {p} | {fmt(r['gbits'])} | {fmt(x_direct)} | {fmt(r['p50'], 0)} | "
              f"{fmt(added, 0) if p != 'direct' else '-'} | "
              f"{fmt(r['cpu_ms_mb'], 2) if p != 'direct' else '-'} | "
              f"{fmt(ratio('gbits'))} | {fmt(ratio('p50'))} | {fmt(ratio('cpu_ms_mb'))} |")
    k = row.get("pf-K")
    if k:
        checks = [
            ("pf-K throughput >= 1 Gbit/s", k["gbits"] is not None and k["gbits"] >= TARGET_GBITS),
            ("pf-K added p50 <= 1.5 ms", k["p50"] is not None and d.get("p50") is not None
             and k["p50"] - d["p50"] <= TARGET_ADDED_US),
        ]
        for peer in ("kcptun-aes", "kcptun-none"):
            q = row.get(peer)
            if not q:
                continue
            checks += [
                (f"pf-K throughput > {peer}", bool(k["gbits"] and q["gbits"]
                                                    and k["gbits"] > q["gbits"])),
                (f"pf-K p50 < {peer}", bool(k["p50"] and q["p50"] and k["p50"] < q["p50"])),
                (f"pf-K CPU/MB < {peer}", bool(k["cpu_ms_mb"] and q["cpu_ms_mb"]
                                                and k["cpu_ms_mb"] < q["cpu_ms_mb"])),
            ]
        print()
        for what, ok in checks:
            print(f"- {what}: {'met' if ok else 'MISSED'}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cpu")
    c.add_argument("pids", type=int, nargs="+")
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--rounds", default="?")
    t.add_argument("--duration", default="?")
    t.add_argument("--load", default="?")
    a = ap.parse_args()
    if a.cmd == "cpu":
        cpu(a.pids)
    else:
        table(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
