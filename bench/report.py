#!/usr/bin/env python3
"""Prints bench/run.sh's final table from its results.tsv (round, test, path, metric, value).

Medians over rounds. "x direct" is the median of the per-round ratios (each round's proxy number
divided by the same round's direct number, measured minutes apart at most), which cancels much of
the machine's slow drift; the absolute medians are printed next to it.
"""
import argparse
import collections
import statistics
import sys

PATHS = ["direct", "pf-w1", "pf-w2", "pf-thr", "socat", "haproxy", "sdproxy", "base-w1", "base-w2"]
PF = ("pf-w1", "pf-w2")  # the paths the targets are about (base-*: a baseline build, for comparison)
WITH_X_HAPROXY = ("base-", "bp-", "pf-thr", "ref-")  # other paths also shown against haproxy
TPUT = [
    ("t1f", "bulk 1 stream  c->s"),
    ("t1r", "bulk 1 stream  s->c (-R)"),
    ("t4f", "bulk 4 streams c->s"),
    ("t4r", "bulk 4 streams s->c (-R)"),
]
TARGET_TPUT = {"t1f": 0.7, "t1r": 0.7, "t4f": 0.75, "t4r": 0.75}  # x direct
TARGET_RR_VS_HAPROXY = 1.1  # connection rate, x haproxy
TARGET_CPU_VS_HAPROXY = 0.6  # proxy CPU per short connection, x haproxy's
TARGET_LAT = 1.8  # p50 round trip with 1 request in flight, x direct
TARGET_IDLE_KB = 1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--duration", type=int, default=0)
    ap.add_argument("--idle-conns", type=int, default=0)
    ap.add_argument("--rr-conns", type=int, default=0)
    ap.add_argument("--rr-threads", type=int, default=0)
    ap.add_argument("--server-threads", type=int, default=0)
    ap.add_argument("--noisy", type=int, default=0)
    a = ap.parse_args()

    # data[test][path][metric] = {round: value}
    data = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(dict)))
    with open(a.results) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            rnd, test, path, metric, value = parts
            try:
                data[test][path][metric][int(rnd)] = float(value)
            except ValueError:
                data[test][path][metric][int(rnd)] = value
    # Paths run.sh adds by option (pf-thr: --threads; bp-WINDOW: --busy-poll; ref-ev, ref-thr:
    # --reference) follow the fixed ones, in file order.
    for test in list(data.values()):
        for path in list(test):
            if path not in PATHS:
                PATHS.append(path)

    def med(test, path, metric):
        vals = [v for v in data[test][path][metric].values() if isinstance(v, float)]
        return statistics.median(vals) if vals else None

    def rng(test, path, metric, fmt):
        vals = [v for v in data[test][path][metric].values() if isinstance(v, float)]
        if len(vals) < 2:
            return ""
        return (fmt + "-" + fmt) % (min(vals), max(vals))

    def ratio(test, path, metric):
        return ratio_to(test, path, metric, "direct")

    def ratio_to(test, path, metric, other):
        own = data[test][path][metric]
        base = data[test][other][metric]
        rs = [own[r] / base[r] for r in own if r in base and isinstance(own[r], float)
              and isinstance(base.get(r), float) and base[r] > 0]
        return statistics.median(rs) if rs else None

    verdicts = []
    rows = []

    def fmt_x(x):
        return "%.2f" % x if x is not None else "?"

    for test, label in TPUT:
        if test not in data:
            continue
        first = True
        for path in PATHS:
            g = med(test, path, "gbps") if path in data[test] else None
            if g is None:
                continue
            x = ratio(test, path, "gbps") if path != "direct" else 1.0
            xh = ratio_to(test, path, "gbps", "haproxy") if path in PF or path.startswith(WITH_X_HAPROXY) else None
            cores = med(test, path, "cores")
            cpu = ""
            if cores is not None and cores > 0:
                cpu = "%.2f core = %.0f Gb/s/core" % (cores, g / cores)
            machine = med(test, path, "all_cores")
            target = result = ""
            if path in PF:
                target = ">= %.2fx" % TARGET_TPUT[test]
                result = "PASS" if x is not None and x >= TARGET_TPUT[test] else "MISS"
                verdicts.append(("%s, %s" % (label.strip(), path), x, target, result))
            rows.append((label + ", Gbit/s" if first else "", path, "%.2f" % g,
                         rng(test, path, "gbps", "%.1f"), fmt_x(x), fmt_x(xh) if xh else "", cpu,
                         "%.2f cores" % machine if machine is not None else "", target, result))
            first = False

    if "rr" in data:
        first = True
        for path in PATHS:
            r = med("rr", path, "rate")
            if r is None:
                continue
            x = ratio("rr", path, "rate") if path != "direct" else 1.0
            xh = ratio_to("rr", path, "rate", "haproxy") if path in PF or path.startswith(WITH_X_HAPROXY) else None
            cpu_us = med("rr", path, "cpu_us")
            cpu = "%.0f us/conn" % cpu_us if cpu_us is not None else ""
            share = med("rr", path, "busiest_share")
            if share is not None:
                cpu += ", busiest worker %d%%" % share
            mus = med("rr", path, "all_us")
            target = result = ""
            if path in PF:
                target = ">= %.1fx haproxy" % TARGET_RR_VS_HAPROXY
                result = "PASS" if xh is not None and xh >= TARGET_RR_VS_HAPROXY else "MISS"
                verdicts.append(("short-connection rate x haproxy, %s" % path, xh, target, result))
                cx = ratio_to("rr", path, "cpu_us", "haproxy")
                verdicts.append(("proxy CPU per short connection x haproxy's, %s" % path, cx,
                                 "<= %.1fx" % TARGET_CPU_VS_HAPROXY,
                                 "PASS" if cx is not None and cx <= TARGET_CPU_VS_HAPROXY else "MISS"))
            rows.append(("short connections, conn/s" if first else "", path, "%.0f" % r,
                         rng("rr", path, "rate", "%.0f"), fmt_x(x), fmt_x(xh) if xh else "", cpu,
                         "%.0f us/conn" % mus if mus is not None else "", target, result))
            first = False
        first = True
        for path in PATHS:
            p50, p99 = med("rr", path, "p50"), med("rr", path, "p99")
            if p50 is None:
                continue
            errs = sum(v for v in data["rr"][path]["errors"].values() if isinstance(v, float))
            rows.append(("  latency p50/p99, us" if first else "", path, "%.0f/%.0f" % (p50, p99 or 0),
                         "errors: %d" % errs if errs else "", "", "", "", "", "", ""))
            first = False

    if "lat" in data:
        first = True
        for path in PATHS:
            p50 = med("lat", path, "p50")
            if p50 is None:
                continue
            x = ratio("lat", path, "p50") if path != "direct" else 1.0
            xh = ratio_to("lat", path, "p50", "haproxy") if path in PF or path.startswith(WITH_X_HAPROXY) else None
            p99 = med("lat", path, "p99")
            cpu = med("lat", path, "cpu_us")
            naps = med("lat", path, "sleeps")
            target = result = ""
            if path in PF:
                target = "<= %.1fx" % TARGET_LAT
                result = "PASS" if x is not None and x <= TARGET_LAT else "MISS"
                verdicts.append(("round trip p50, 1 in flight, %s" % path, x, target, result))
            rows.append(("1 in flight, p50 (p99) us" if first else "", path,
                         "%.1f (%.0f)" % (p50, p99 or 0), rng("lat", path, "p50", "%.0f"), fmt_x(x),
                         fmt_x(xh) if xh else "",
                         ("%.1f us/exchange" % cpu if cpu is not None else "") +
                         (", %.2f sleeps" % naps if naps is not None else ""),
                         "", target, result))
            first = False

    if "idle" in data:
        first = True
        for path in ("pf-w2", "haproxy"):
            kb = med("idle", path, "kb_per_conn")
            if kb is None:
                continue
            fds = sorted(set(str(v if isinstance(v, str) else int(v))
                             for v in data["idle"][path]["fds_added"].values()))
            target = result = ""
            if path == "pf-w2":
                target = "<= %.0f KB" % TARGET_IDLE_KB
                result = "PASS" if kb <= TARGET_IDLE_KB else "MISS"
                verdicts.append(("idle memory, pf-w2, KB worker RSS per connection", kb, target, result))
            rows.append(("idle memory, KB RSS/conn" if first else "", path, "%.2f" % kb,
                         rng("idle", path, "kb_per_conn", "%.2f"), "", "",
                         "fds added: " + " ".join(fds) if fds else "", "", target, result))
            first = False

    hdr = ("measurement", "path", "median", "range", "x direct", "x haproxy", "proxy CPU",
           "all-party CPU", "target", "result")
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, hdr))
    print()
    print("pf-proxy benchmark: %d round(s), %d s per measurement, %d idle connections, "
          "%d short connections in flight (%d client threads, %d server threads); medians over rounds"
          % (a.rounds, a.duration, a.idle_conns, a.rr_conns, a.rr_threads, a.server_threads))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join("%-*s" % (w, c) for w, c in zip(widths, r)).rstrip())
    print()
    print("Targets:")
    for name, x, target, result in verdicts:
        print("  %-4s %-52s %s (target %s)" % (result, name, "%.2f" % x if x is not None else "?", target))
    floors = [p for p in PATHS if p.startswith("ref-")]
    if floors:
        print("Floors, the smallest correct relays (bench/ref_relay.cpp), on the targets' scales:")
        for path in floors:
            cx = ratio_to("rr", path, "cpu_us", "haproxy") if "rr" in data else None
            rx = ratio_to("rr", path, "rate", "haproxy") if "rr" in data else None
            lx = ratio("lat", path, "p50") if "lat" in data else None
            print("  %-8s CPU per short connection %s x haproxy's, rate %s x haproxy's, "
                  "p50 1 in flight %s x direct" % (path, fmt_x(cx), fmt_x(rx), fmt_x(lx)))
    print("x direct / x haproxy: median of per-round ratios. proxy CPU: the proxy's own processes "
          "(user+sys; socat includes its forked children).")
    print("all-party CPU: client + server + proxy processes (kernel work they cause included), in "
          "cores (bulk) or CPU us per connection (short connections).")
    # Other load: machine-wide busy CPU minus ours, per bulk measurement.
    other = []
    for test, _ in TPUT:
        for path in PATHS:
            m, o = data[test][path]["machine"], data[test][path]["all_cores"]
            other += [m[r] - o[r] for r in m if r in o and isinstance(m[r], float)]
    if other:
        print("Other load on the machine during the bulk measurements (busy CPUs not ours, incl. steal): "
              "median %.2f, max %.2f cores." % (statistics.median(other), max(other)))
    if a.noisy:
        print("Note: %d measurement(s) started while other processes kept the CPUs busy; "
              "ratios are more trustworthy than absolute numbers." % a.noisy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
