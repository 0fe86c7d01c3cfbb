#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Relay throughput and CPU per MB for BENCHMARKS.md: a fake xpra 3.1.3
server floods draws (each one raw chunk of SIZE opaque bytes, index 7, then
its rencoded 'draw' main chunk, the framing a real 3.1.3 server uses) to a
client that connects directly or through a relay.

    flood.py --fake-port 15300 (--direct | --via URL) [--label L]
             [--packets N] [--size BYTES] [--relay-pid PID] [--out FILE]
    flood.py --summary FILE      # medians and ranges of the runs in FILE

The fake server answers the client's (relayed) hello with the real server
hello captured in traces/e1 and a 'new-window', waits 0.5 s, then floods.
The clock starts when the client has the first draw and stops at the last:
proxy_bench.py, whose fake server this replaces, starts it at the first
bytes after the hello, so a relay that forwards the hello and new-window in
separate writes had the 0.5 s pause counted. This fake server reuses one
payload buffer (proxy_bench.py kept N copies: 500 MB for 2000 draws), and
the client skips raw payloads with recv_into instead of concatenating
bytes, so the harness's own cost stays well below the relays'.

CPU of the relay is the run time in nanoseconds (/proc/PID/task/*/schedstat)
of every thread of PID and all its descendants, summed, sampled when the
first draw arrives and after the last (proxy_bench.py read utime+stime of
the main process and its direct children, in 10 ms ticks). A thread that
ends between the two samples would be missed; the relays here keep theirs.
"""
import argparse, json, os, socket, statistics, struct, sys, threading, time

# The lab's tools, beside the checkout (../shared/lab/peers/tools) unless $LAB says where the lab is.
TOOLS = os.path.join(os.environ.get("LAB") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                            "shared", "lab", "peers"), "tools")
sys.path.insert(0, TOOLS)
import hello_rtt  # noqa: E402
import proxy_bench as pb  # noqa: E402
import rencode  # noqa: E402
from xpra_decode import HDR, decompress, decode  # noqa: E402

TRACES = os.path.join(TOOLS, "..", "..", "..", "xpra", "traces")


def fake_server(port, n, size, ready, stats):
    hello, neww = pb.captured_server_frames()
    raw_header = struct.pack("!BBBBL", 0x50, 0, 0, 7, size)
    payload = memoryview(os.urandom(size))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4)
    ready.set()
    s, _ = ls.accept()
    ls.close()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hello_rtt.read_packet(s, b"")  # the (relayed) client hello
    # Drain whatever the relay sends (its pings) so it never blocks.
    threading.Thread(target=lambda: [None for _ in iter(lambda: s.recv(65536), b"")], daemon=True).start()
    s.sendall(hello + neww)
    time.sleep(0.5)
    for seq in range(1, n + 1):
        pkt = rencode.dumps([b"draw", 1, 0, 0, 164, 164, b"webp", b"", seq, 0, {b"window-size": [164, 164]}])
        parts = [raw_header, payload, struct.pack("!BBBBL", 0x50, 1, 0, 0, len(pkt)) + pkt]
        sent = s.sendmsg(parts)
        if sent < 8 + size + len(parts[2]):  # a blocking sendmsg sends all, unless interrupted
            s.sendall(b"".join(parts)[sent:])
    stats["sent"] = True
    time.sleep(3)
    s.close()


class Stream:
    """Frames from a socket, with raw payloads skipped rather than kept."""

    def __init__(self, s):
        self.s = s
        self.buf = bytearray(1 << 20)
        self.mv = memoryview(self.buf)
        self.r = self.w = 0
        self.total = 0

    def _recv(self, mv):
        n = self.s.recv_into(mv)
        if n == 0:
            raise EOFError("connection closed")
        self.total += n
        return n

    def read(self, n):
        if self.w - self.r < n:
            if self.r:
                self.buf[:self.w - self.r] = self.buf[self.r:self.w]
                self.w -= self.r
                self.r = 0
            if n > len(self.buf):
                self.buf.extend(bytes(n - len(self.buf)))
                self.mv = memoryview(self.buf)
            while self.w < n:
                self.w += self._recv(self.mv[self.w:])
        out = bytes(self.mv[self.r:self.r + n])
        self.r += n
        return out

    def skip(self, n):
        k = min(n, self.w - self.r)
        self.r += k
        n -= k
        if n:
            self.r = self.w = 0
            while n:
                n -= self._recv(self.mv[:min(n, len(self.buf))])


def tree(pid):
    """pid and all its descendants"""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ns(pids):
    """run time of all threads of pids, from schedstat (nanoseconds)"""
    t = 0
    for p in pids:
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for tid in tasks:
            try:
                t += int(open("/proc/%d/task/%s/schedstat" % (p, tid)).read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return t


def run(a):
    ready, stats = threading.Event(), {}
    threading.Thread(target=fake_server, args=(a.fake_port, a.packets, a.size, ready, stats), daemon=True).start()
    ready.wait(10)
    url = "tcp://127.0.0.1:%d/" % a.fake_port if a.direct else a.via
    caps = hello_rtt.base_caps("attach", os.path.join(TRACES, "a2-hello-direct.c2s.bin"))
    _, _, s = hello_rtt.one(url, caps, hold=1)
    s.settimeout(60)
    st = Stream(s)
    got = nbytes = 0
    t_first = c0 = None
    pids = []
    self0 = time.process_time()
    while got < a.packets:
        _, flags, level, index, size = HDR.unpack(st.read(8))
        if index:
            st.skip(size)
            if t_first is not None:
                nbytes += 8 + size
            continue
        body = st.read(size)
        if t_first is not None:
            nbytes += 8 + size
        p = decode(decompress(body, level), flags)
        t = p[0].decode() if isinstance(p[0], bytes) else p[0]
        if t in ("draw", 35):
            got += 1
            if t_first is None:
                # The clock starts with the first draw; so does the relay's CPU.
                t_first = time.perf_counter()
                if a.relay_pid:
                    pids = tree(a.relay_pid)
                    c0 = cpu_ns(pids)
                self0 = time.process_time()
    t_last = time.perf_counter()
    c1 = cpu_ns(sorted(set(pids + tree(a.relay_pid)))) if a.relay_pid else None
    self1 = time.process_time()
    s.close()
    el = t_last - t_first
    mb = nbytes / 1e6
    res = {"label": a.label or ("direct" if a.direct else a.via.split("@")[-1]), "size": a.size, "round": a.round,
           "draws": got, "mb": round(mb, 1), "seconds": round(el, 4), "mb_s": round(mb / el, 1),
           "harness_cpu_ms_per_mb": round(1000 * (self1 - self0) / mb, 3)}
    line = "%-24s %5d draws of %7d B, %6.1f MB in %6.3fs = %6.0f MB/s; harness %.2f cpu-ms/MB" % (
        res["label"], got, a.size, mb, el, mb / el, res["harness_cpu_ms_per_mb"])
    if a.relay_pid:
        res["relay_cpu_ms_per_mb"] = round((c1 - c0) / 1e6 / mb, 3)
        line += "; relay %.3f cpu-ms/MB (%d processes)" % (res["relay_cpu_ms_per_mb"], len(set(pids)))
    print(line, flush=True)
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(res) + "\n")


def summary(path, base="io.Copy"):
    """medians and ranges per draw size and relay; throughput also as a
    share of the base relay's in the same round (rounds interleave the
    relays, so a share cancels much of a busy machine's drift)"""
    rows = [json.loads(l) for l in open(path) if l.strip()]
    groups, bases = {}, {}
    for r in rows:
        groups.setdefault((r["size"], r["label"]), []).append(r)
        if r["label"] == base:
            bases[(r["size"], r.get("round"))] = r["mb_s"]
    print("| draw size | relay | runs | MB/s median (range) | MB/s / %s's, same round | relay CPU-ms per MB median (range) |" % base)
    print("| --- | --- | --- | --- | --- | --- |")
    order = {}
    for i, r in enumerate(rows):
        order.setdefault((r["size"], r["label"]), i)

    def rng(v, fmt):
        return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(v), min(v), max(v)) if v else "—"

    for (size, label), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0]])):
        share = [100 * r["mb_s"] / bases[(size, r.get("round"))] for r in rs
                 if label != base and r.get("round") is not None and (size, r.get("round")) in bases]
        cpu = [r["relay_cpu_ms_per_mb"] for r in rs if "relay_cpu_ms_per_mb" in r]
        print("| %d KiB | %s | %d | %s | %s | %s |" % (size >> 10, label, len(rs), rng([r["mb_s"] for r in rs], "%.0f"),
                                                  rng(share, "%.0f %%").replace("%%", "%"), rng(cpu, "%.3f")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fake-port", type=int)
    ap.add_argument("--via")
    ap.add_argument("--direct", action="store_true")
    ap.add_argument("--label")
    ap.add_argument("--packets", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--relay-pid", "--proxy-pid", type=int)
    ap.add_argument("--out")
    ap.add_argument("--round", type=int, help="recorded with the run, for --summary's same-round shares")
    ap.add_argument("--summary")
    a = ap.parse_args()
    if a.summary:
        summary(a.summary)
    else:
        run(a)


if __name__ == "__main__":
    main()
