// SPDX-License-Identifier: GPL-2.0-or-later

// Package bench holds the encoder benchmarks (bench_test.go; the xpra
// 6.x socket's in xpra6_test.go) and the script that drives xpra 3.1.3's
// own x264 pipeline (xpra_x264.py).
package bench
