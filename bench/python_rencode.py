#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Times python3-rencode (what xpra 3.1.3 uses) on the same inputs as the Go
benchmarks in protocol/conn/bench_test.go, for BENCHMARKS.md.

    /usr/bin/python3 bench/python_rencode.py [../shared/xpra/traces]
"""
import struct
import sys
import timeit
import zlib

import rencode

traces = sys.argv[1] if len(sys.argv) > 1 else "../shared/xpra/traces"
with open(traces + "/a2-hello-direct.c2s.bin", "rb") as f:
    data = f.read()
_, flags, level, index, size = struct.unpack("!cBBBI", data[:8])
hello = zlib.decompress(data[8:8 + size]) if level else data[8:8 + size]
draw = rencode.dumps(["draw", 1, 0, 0, 512, 512, "rgb32", bytes([1, 2, 3, 4]) * (1 << 18),
                      7, 2048, {"lz4": 1}])
hello_value = rencode.loads(hello)


def bench(name, fn, nbytes):
    runs, total = 0, 0.0
    number = 1
    while total < 2.0:
        total = timeit.timeit(fn, number=number)
        runs = number
        number *= 2
    per = total / runs
    print("%-22s %10.0f ns/op %10.2f MB/s  (%d bytes)" % (name, per * 1e9, nbytes / per / 1e6, nbytes))


bench("DecodeRealHello", lambda: rencode.loads(hello), len(hello))
bench("EncodeRealHello", lambda: rencode.dumps(hello_value), len(hello))
bench("DecodeDraw1MiB", lambda: rencode.loads(draw), len(draw))
