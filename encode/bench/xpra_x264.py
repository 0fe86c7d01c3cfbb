#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive xpra 3.1.3's own x264 pipeline on raw BGRX frames, for the
encoder benchmarks: csc_swscale (BGRX -> YUV420P) then enc_x264, as an
xpra server does for a video region of an X11 window.

usage: xpra_x264.py FRAMES_FILE WIDTH HEIGHT COUNT QUALITY SPEED
FRAMES_FILE holds COUNT packed BGRX frames (stride = WIDTH*4). Then, per
line on stdin, a number N: encode the next N frames (cycling), answer one
line "BYTES NANOSECONDS": bitstream bytes produced and the time spent
encoding, measured here so neither start-up nor the pipe counts.
"""
import sys
import time

from xpra.codecs.csc_swscale import colorspace_converter as csc_mod
from xpra.codecs.enc_x264 import encoder as enc_mod
from xpra.codecs.image_wrapper import ImageWrapper


def main():
    path, w, h, count, quality, speed = sys.argv[1], *map(int, sys.argv[2:7])
    stride = w * 4
    with open(path, "rb") as f:
        data = f.read()
    if len(data) != stride * h * count:
        sys.exit("frames file holds %d bytes, expected %d" % (len(data), stride * h * count))
    frames = memoryview(data)
    csc_mod.init_module()
    enc_mod.init_module()
    csc = csc_mod.ColorspaceConverter()
    csc.init_context(w, h, "BGRX", w, h, "YUV420P", speed)
    enc = enc_mod.Encoder()
    enc.init_context(w, h, "YUV420P", ["YUV420P"], "h264", quality, speed, (1, 1), {})
    sys.stderr.write("xpra x264: %s\n" % {k: v for k, v in enc.get_info().items() if k in ("preset", "tune", "profile")})
    n = 0
    print("ready", flush=True)
    for line in sys.stdin:
        total = 0
        start = time.perf_counter_ns()
        for _ in range(int(line)):
            i = n % count
            n += 1
            img = ImageWrapper(0, 0, w, h, frames[i * stride * h:(i + 1) * stride * h], "BGRX", 24, stride, 4, ImageWrapper.PACKED)
            yuv = csc.convert_image(img)
            out, _ = enc.compress_image(yuv, quality, speed, {})
            total += len(out)
        print(total, time.perf_counter_ns() - start, flush=True)


if __name__ == "__main__":
    main()
