#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Where setup time goes: the median offset (ms from the accept) of each
stage over a supervisor log's connections, from the 'setup timeline' lines
the supervisor writes at debug level (XPRA_PROXY_DEBUG=1) and the 'relay
setup timeline' lines of their relays, joined on the worker's pid.

    timeline.py LOG

Prints one row per stage, in the order of the setup, with its median,
p90 and the median step from the stage before it; and one connection's
whole timeline (the median connection by hello_forwarded).
"""
import re, statistics, sys

NUM = re.compile(r'^-?[0-9.]+$')


def fields(line):
    out = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line):
        out[m.group(1)] = m.group(2).strip('"')
    return out


def pct(v, p):
    v = sorted(v)
    k = (len(v) - 1) * p
    f = int(k)
    return v[f] + (v[min(f + 1, len(v) - 1)] - v[f]) * (k - f)


SUP = ["accept", "handover", "hello", "challenge", "answer", "verdict", "relay_exec", "accepted_sent"]
# relay_go: a warm relay (started ahead of its login) given its client;
# such a relay has no relay_main in this connection's timeline.
REL = ["relay_main", "relay_go", "relay_read", "chosen", "connected", "hello_sent", "server_hello", "hello_forwarded"]


def main():
    sup, rel = {}, {}
    spare = {True: 0, False: 0}
    for line in open(sys.argv[1], errors="replace"):
        if 'msg="setup timeline"' in line:
            f = fields(line)
            if f.get("result") == "relayed" and f.get("worker", "0") != "0":
                sup[f["worker"]] = {k: float(v) for k, v in f.items() if k in SUP and NUM.match(v)}
                spare[f.get("spare") == "true"] += 1
        elif 'msg="relay setup timeline"' in line:
            f = fields(line)
            rel[f.get("pid")] = {k: float(v) for k, v in f.items() if k in REL and NUM.match(v)}
    conns = [dict(sup[w], **rel.get(w, {})) for w in sup]
    if not conns:
        print("no setup timelines in %s (run the proxy with XPRA_PROXY_DEBUG=1)" % sys.argv[1])
        return
    print("setup timelines: %d relayed connections (%d took the warm spare, %d a process started for them), %d with the relay's line, %d by a warm relay"
          % (len(conns), spare[True], spare[False], sum(1 for w in sup if w in rel), sum(1 for c in conns if "relay_go" in c)))
    print("| stage | median ms from accept | p90 | median step from the stage before |")
    print("| --- | --- | --- | --- |")
    # In the order they happen (an early relay starts before the answer).
    order = sorted((st for st in SUP + REL if any(st in c for c in conns)),
                   key=lambda st: statistics.median([c[st] for c in conns if st in c]))
    prev = None
    for st in order:
        v = [c[st] for c in conns if st in c]
        step = [c[st] - c[prev] for c in conns if st in c and prev in c] if prev else []
        print("| %s | %.1f | %.1f | %s |" % (st, statistics.median(v), pct(v, .9), "%.1f" % statistics.median(step) if step else "-"))
        prev = st
    full = sorted((c for c in conns if "hello_forwarded" in c), key=lambda c: c["hello_forwarded"])
    if full:
        c = full[len(full) // 2]
        print("one connection (the median by hello_forwarded): " + " ".join("%s=%.1f" % (s, c[s]) for s in order if s in c))


if __name__ == "__main__":
    main()
