#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 17's goals, each with its measured value and met / not met, from
one run of bench/proxy-compare.sh (which calls this at its end).

    goals.py [--setup-csv FILE] [--flood FILE] [--setup-mode TEXT] [--base-4m RATIO]

--setup-csv: hello_rtt.py's --csv samples (targets "direct" and "ours").
--flood: bench/flood.py's JSON lines ("io.Copy" and "ours").
--setup-mode: how setup was measured (back-to-back, or after an idle gap).
--base-4m: "no worse than today at 4 MiB": ours/io.Copy CPU per MB recorded
  in issue 17 at 07e7c6b (0.94).
Only the goals of the parts given are printed; one without figures (all
its connections failed, say) is "not measured".
The figures are a noisy machine's: they never fail anything (exit 0).
"""
import argparse, csv, json, statistics


def pct(v, p):
    """interpolated, as hello_rtt.py's table computes it"""
    v = sorted(v)
    k = (len(v) - 1) * p
    f = int(k)
    return v[f] + (v[min(f + 1, len(v) - 1)] - v[f]) * (k - f)


def setup(path):
    s = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            s.setdefault(row["target"], []).append(float(row["ms"]))
    return s


def verdict(ok):
    return "met" if ok else "NOT MET"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup-csv")
    ap.add_argument("--flood")
    ap.add_argument("--setup-mode", default="back-to-back")
    ap.add_argument("--base-4m", type=float, default=0.94)
    a = ap.parse_args()
    rows = []  # (goal, measured, verdict)

    s = setup(a.setup_csv) if a.setup_csv else {}
    if s.get("direct") and s.get("ours"):
        d, o = s["direct"], s["ours"]
        dm, om, dp, op = statistics.median(d), statistics.median(o), pct(d, .9), pct(o, .9)
        rows.append(("setup median <= direct + 10 ms (%s, n=%d)" % (a.setup_mode, len(o)),
                     "ours %.1f, direct %.1f: %+.1f ms" % (om, dm, om - dm), verdict(om - dm <= 10)))
        rows.append(("setup p90 <= direct + 15 ms (%s, n=%d)" % (a.setup_mode, len(o)),
                     "ours %.1f, direct %.1f: %+.1f ms" % (op, dp, op - dp), verdict(op - dp <= 15)))
    elif a.setup_csv:
        rows.append(("setup median <= direct + 10 ms, p90 <= direct + 15 ms", "-", "not measured (no samples)"))

    fl = [json.loads(l) for l in open(a.flood) if l.strip()] if a.flood else []
    sizes = sorted({r["size"] for r in fl}) or [65536, 262144, 4194304]
    for size in sizes if a.flood else []:
        name = "%d KiB" % (size >> 10) if size < 1 << 20 else "%d MiB" % (size >> 20)
        cp = [r for r in fl if r["size"] == size and r["label"] == "io.Copy"]
        us = [r for r in fl if r["size"] == size and r["label"] == "ours"]
        cpu_c = [r["relay_cpu_ms_per_mb"] for r in cp if "relay_cpu_ms_per_mb" in r]
        cpu_o = [r["relay_cpu_ms_per_mb"] for r in us if "relay_cpu_ms_per_mb" in r]
        if cpu_c and cpu_o:
            ratio = statistics.median(cpu_o) / statistics.median(cpu_c)
            if size >= 4 << 20:
                goal, ok = "relay CPU/MB at %s no worse than today (%.2fx io.Copy's)" % (name, a.base_4m), ratio <= a.base_4m
            else:
                goal, ok = "relay CPU/MB at %s <= 1.25x io.Copy's" % name, ratio <= 1.25
            rows.append((goal, "%.3f vs %.3f ms/MB: %.2fx (medians of %d)" % (
                statistics.median(cpu_o), statistics.median(cpu_c), ratio, len(cpu_o)), verdict(ok)))
        else:
            rows.append(("relay CPU/MB at %s" % name, "-", "not measured"))
        base = {r.get("round"): r["mb_s"] for r in cp}
        share = [100 * r["mb_s"] / base[r.get("round")] for r in us if r.get("round") in base]
        if share:
            m = statistics.median(share)
            rows.append(("throughput at %s >= 90 %% of io.Copy's" % name,
                         "%.0f %% (same-round median of %d, range %.0f-%.0f)" % (m, len(share), min(share), max(share)),
                         verdict(m >= 90)))
        else:
            rows.append(("throughput at %s >= 90 %% of io.Copy's" % name, "-", "not measured"))

    print("| issue 17 goal | measured | met? |")
    print("| --- | --- | --- |")
    for g, m, v in rows:
        print("| %s | %s | %s |" % (g, m, v))


if __name__ == "__main__":
    main()
