#!/usr/bin/python3
"""Relay throughput and CPU for BENCHMARKS.md, on the lab's proxy_bench.py
harness (its fake 3.1.3 server floods 400 draws of 256 KiB as raw chunks).

proxy_bench.py starts its clock at the first bytes after the hello; its fake
server sends the hello and a new-window packet, sleeps 0.5 s, then floods. A
relay that forwards the hello and the new-window in separate writes (ours, and
xpra's own proxy, which re-encodes the hello) gets the 0.5 s pause counted in
its time. Here the clock starts at the first draw and stops at the last one.

    /usr/bin/python3 bench/flood.py --fake-port 15300 (--direct | --via URL) [--proxy-pid PID]
"""
import argparse, os, sys, threading, time

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "lab", "peers", "tools")
sys.path.insert(0, TOOLS)
import proxy_bench as pb  # noqa: E402
from proxy_bench import HDR, decompress, decode, hello_rtt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake-port", type=int, required=True)
    ap.add_argument("--via")
    ap.add_argument("--direct", action="store_true")
    ap.add_argument("--packets", type=int, default=400)
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--proxy-pid", type=int)
    a = ap.parse_args()
    ready, stats = threading.Event(), {}
    threading.Thread(target=pb.fake_server, args=(a.fake_port, a.packets, a.size, "webp", ready, stats), daemon=True).start()
    ready.wait(10)
    url = "tcp://127.0.0.1:%d/" % a.fake_port if a.direct else a.via
    caps = hello_rtt.base_caps("attach", os.path.join(TOOLS, "..", "..", "..", "xpra", "traces", "a2-hello-direct.c2s.bin"))
    _, _, s = hello_rtt.one(url, caps, hold=1)
    s.settimeout(60)
    pids = ([a.proxy_pid] + pb.children(a.proxy_pid)) if a.proxy_pid else []
    buf, got, nbytes, t_first, c0 = b"", 0, 0, None, None
    while got < a.packets:
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d
        while len(buf) >= 8:
            _, flags, level, index, size = HDR.unpack_from(buf, 0)
            if len(buf) < 8 + size:
                break
            if t_first is not None:
                nbytes += 8 + size
            if index == 0:
                p = decode(decompress(buf[8:8 + size], level), flags)
                t = p[0].decode() if isinstance(p[0], bytes) else p[0]
                if t in ("draw", 35):
                    got += 1
                    if t_first is None:
                        # the clock starts with the first draw
                        t_first = time.perf_counter()
                        pids = sorted(set(pids + (pb.children(a.proxy_pid) if a.proxy_pid else [])))
                        c0 = pb.cpu_ticks(pids)
            buf = buf[8 + size:]
    t_last = time.perf_counter()
    c1 = pb.cpu_ticks(pids) if pids else 0
    s.close()
    el = t_last - (t_first or t_last)
    mb = nbytes / 1e6
    line = "%-28s %d/%d draws, %.1f MB in %.3fs = %.0f MB/s" % (
        "direct" if a.direct else "via " + url.split("@")[-1], got, a.packets, mb, el, mb / el if el else 0)
    if pids:
        cpu_s = (c1 - c0) / os.sysconf("SC_CLK_TCK")
        line += "; relay cpu %.2fs = %.1f cpu-ms per MB" % (cpu_s, 1000 * cpu_s / mb if mb else 0)
    print(line)


if __name__ == "__main__":
    main()
