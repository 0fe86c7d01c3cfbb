// SPDX-License-Identifier: GPL-2.0-or-later

package compress

import (
	"bytes"
	"compress/zlib"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"runtime"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func TestLevelBytes(t *testing.T) {
	tests := []struct {
		a     Algo
		level int
		want  byte
	}{
		{None, 5, 0}, {Zlib, 1, 1}, {Zlib, 0, 1}, {Zlib, 12, 9}, {LZ4, 1, 0x11}, {LZ4, 3, 0x13}, {LZ4, 99, 0x1f},
		{LZO, 1, 0x21}, {Brotli, 1, 0x41}, {Brotli, 20, 0x4b},
	}
	for _, tc := range tests {
		if got := LevelByte(tc.a, tc.level); got != tc.want {
			t.Errorf("LevelByte(%s, %d) = %#x, want %#x", tc.a, tc.level, got, tc.want)
		}
		if tc.a != None && AlgoOf(tc.want) != tc.a {
			t.Errorf("AlgoOf(%#x) = %s, want %s", tc.want, AlgoOf(tc.want), tc.a)
		}
	}
	if AlgoOf(0) != None || AlgoOf(0x33) != LZ4 || AlgoOf(0x60) != LZO || AlgoOf(7) != Zlib {
		t.Error("AlgoOf precedence is lz4, lzo, brotli, zlib")
	}
	for _, n := range []string{"none", "zlib", "lz4", "lzo", "brotli"} {
		if a, ok := ParseAlgo(n); !ok || a.String() != n {
			t.Errorf("ParseAlgo(%q) = %v %v", n, a, ok)
		}
	}
	if _, ok := ParseAlgo("zstd"); ok {
		t.Error("zstd is not an xpra compressor")
	}
}

// TV5 (PROTOCOL.md §10): a 400-byte hello compressed with lz4 and zlib.
func TestTV5(t *testing.T) {
	payload, err := rencode.Encode([]any{"hello", value.Dict{{Key: "padding", Value: strings.Repeat("x", 380)}}}, rencode.Legacy)
	if err != nil || len(payload) != 400 {
		t.Fatalf("TV5 payload is %d bytes (%v), want 400", len(payload), err)
	}
	out, lvl, err := Compress(LZ4, 1, payload)
	if err != nil {
		t.Fatal(err)
	}
	if lvl != 0x11 || !bytes.HasPrefix(out, []byte{0x90, 0x01, 0, 0}) {
		t.Fatalf("lz4: level %#x, payload % x", lvl, out[:4])
	}
	out, lvl, err = Compress(Zlib, 1, payload)
	if err != nil {
		t.Fatal(err)
	}
	if lvl != 1 || !bytes.HasPrefix(out, []byte{0x78, 0x01}) {
		t.Fatalf("zlib: level %#x, payload % x", lvl, out[:2])
	}
}

func TestRoundTrip(t *testing.T) {
	random := make([]byte, 100_000)
	rand.Read(random)
	inputs := map[string][]byte{
		"empty":  {},
		"text":   []byte(strings.Repeat("xpra proxy ", 5000)),
		"random": random,
		"one":    {42},
	}
	for _, a := range []Algo{None, Zlib, LZ4, Brotli} {
		for name, in := range inputs {
			for _, level := range []int{1, 6, 11} {
				out, lvl, err := Compress(a, level, in)
				if err != nil {
					t.Fatalf("%s %s: %v", a, name, err)
				}
				if AlgoOf(lvl) != a {
					t.Fatalf("%s %s: level byte %#x names %s", a, name, lvl, AlgoOf(lvl))
				}
				limit := len(in)
				if a == Brotli {
					limit = 1 << 20 // brotli's window is at least 1 KiB
				}
				back, err := Decompress(lvl, out, limit)
				if err != nil {
					t.Fatalf("%s %s level %d: %v", a, name, level, err)
				}
				if !bytes.Equal(back, in) {
					t.Fatalf("%s %s: round trip differs", a, name)
				}
			}
		}
	}
}

func TestLimits(t *testing.T) {
	const max = 1 << 20
	zeros := make([]byte, 64<<20)
	var zb bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&zb, 9)
	zw.Write(zeros)
	zw.Close()
	var bb bytes.Buffer
	bw := brotli.NewWriterLevel(&bb, 5)
	bw.Write(zeros)
	bw.Close()
	lz, _, _ := Compress(LZ4, 1, zeros[:2*max])

	lie := make([]byte, 4+10)
	binary.LittleEndian.PutUint32(lie, 200<<20)
	small := make([]byte, 4+10)
	binary.LittleEndian.PutUint32(small, 100_000)

	tests := []struct {
		name    string
		level   byte
		payload []byte
		state   uint64 // what the decoder itself may allocate
	}{
		{"zlib bomb", 9, zb.Bytes(), 1 << 20},
		// brotli's ring buffer is its window, at most 16 MiB (lgwin 24;
		// the large-window extension is not enabled), the default packet
		// limit.
		{"brotli bomb", 0x45, bb.Bytes(), 16 << 20},
		{"lz4 over the limit", 0x11, lz, 0},
		{"lz4 prefix beyond the limit", 0x11, lie, 0},
		{"lz4 prefix beyond any ratio", 0x11, small, 0},
		{"uncompressed over the limit", 0, make([]byte, max+1), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Decompress(tc.level, tc.payload, max)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			// The output buffer never exceeds max+1; doubling leaves at most
			// about 2×max allocated in total, plus the decoders' own state.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 3*max+tc.state {
				t.Fatalf("allocated %d bytes for a %d-byte limit", grew, max)
			}
		})
	}
}

// A brotli stream declaring a window beyond the limit is refused before
// the decoder allocates it (found by FuzzReadPacket: 78 bytes made the
// decoder allocate 16 MiB).
func TestBrotliWindowLimit(t *testing.T) {
	var b bytes.Buffer
	w := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 5, LGWin: 24})
	w.Write([]byte("small"))
	w.Close()
	if _, err := Decompress(0x45, b.Bytes(), 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("16 MiB window with a 1 MiB limit: %v", err)
	}
	if out, err := Decompress(0x45, b.Bytes(), 16<<20); err != nil || string(out) != "small" {
		t.Fatalf("16 MiB window with a 16 MiB limit: %q %v", out, err)
	}
	// Python's brotli (xpra) declares 4 MiB whatever the data: a small
	// packet with it passes a 1 MiB limit.
	b.Reset()
	w = brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: 5, LGWin: 22})
	w.Write([]byte("small"))
	w.Close()
	if out, err := Decompress(0x45, b.Bytes(), 1<<20); err != nil || string(out) != "small" {
		t.Fatalf("4 MiB window with a 1 MiB limit: %q %v", out, err)
	}
	m := budget.New(budget.ForPacket(1 << 20))
	if out, err := DecompressWithin(0x45, b.Bytes(), 1<<20, m); err != nil || string(out) != "small" {
		t.Fatalf("4 MiB window within a 1 MiB packet's budget: %q %v", out, err)
	}
	for _, tc := range []struct {
		hdr  []byte
		want int
	}{{[]byte{0}, 1<<16 - 16}, {[]byte{0x0b}, 1<<22 - 16}, {[]byte{0x21}, 1<<10 - 16}, {[]byte{0x01}, 1<<17 - 16}} {
		if got, err := brotliWindow(tc.hdr); err != nil || got != tc.want {
			t.Errorf("brotliWindow(% x) = %d, %v; want %d", tc.hdr, got, err, tc.want)
		}
	}
	if _, err := brotliWindow([]byte{0x11}); err == nil {
		t.Error("large-window stream accepted")
	}
}

func TestErrors(t *testing.T) {
	if _, err := Decompress(0x21, []byte{0xf0, 0, 0, 0, 1, 0}, 100); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "lzo") {
		t.Fatalf("lzo: %v", err)
	}
	for name, in := range map[string][]byte{"short lz4": {1, 0}, "bad lz4": {5, 0, 0, 0, 0xff, 0xff}} {
		if _, err := Decompress(0x11, in, 1000); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Decompress(1, []byte("not zlib"), 1000); err == nil {
		t.Error("bad zlib: no error")
	}
	if _, err := Decompress(0x41, []byte("not brotli at all"), 1000); err == nil {
		t.Error("bad brotli: no error")
	}
	if _, _, err := Compress(LZO, 1, []byte("x")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("compressing with lzo: %v", err)
	}
}

// A lz4 block claiming the exact size of what it holds decodes; one
// byte too few in the prefix fails instead of truncating silently.
func TestLZ4SizeMismatch(t *testing.T) {
	in := []byte(strings.Repeat("abc", 100))
	out, lvl, _ := Compress(LZ4, 1, in)
	binary.LittleEndian.PutUint32(out, uint32(len(in)+1))
	if _, err := Decompress(lvl, out, 1000); err == nil {
		t.Fatal("a wrong size prefix was accepted")
	}
}

func FuzzDecompress(f *testing.F) {
	for _, a := range []Algo{Zlib, LZ4, Brotli} {
		out, lvl, _ := Compress(a, 1, []byte(strings.Repeat("fuzz me ", 50)))
		f.Add(lvl, out)
	}
	f.Add(byte(0x21), []byte{0xf0, 0, 0, 0, 1, 0})
	// Issue 12's amplification payloads: 4 MiB of empty lists.
	for _, a := range []Algo{Zlib, LZ4, Brotli} {
		out, lvl, _ := Compress(a, 9, bytes.Repeat([]byte{0xc0}, 4<<20-64))
		f.Add(lvl, out)
	}
	const max = 1 << 20
	f.Fuzz(func(t *testing.T, level byte, payload []byte) {
		fuzzcheck.Bounded(t, 3*max+16<<20, func() {
			out, err := Decompress(level, payload, max)
			if err == nil && len(out) > max {
				t.Fatalf("%d bytes out with a %d limit", len(out), max)
			}
			// A budget refuses, or gives the same bytes.
			m := budget.New(budget.Limits{Bytes: max})
			outB, errB := DecompressWithin(level, payload, max, m)
			switch {
			case errB == nil && (err != nil || !bytes.Equal(out, outB)):
				t.Fatalf("with a budget: %d bytes, without: %d bytes, %v", len(outB), len(out), err)
			case errB != nil && err == nil && !errors.Is(errB, budget.ErrExceeded):
				t.Fatalf("a budget turned success into %v", errB)
			}
			if used, _ := m.Used(); errB == nil && used > max {
				t.Fatalf("charged %d bytes of a %d budget and succeeded", used, max)
			}
			if err == nil && AlgoOf(level) != None && AlgoOf(level) != LZO {
				// What we can read, we can write and read again.
				re, lvl, err := Compress(AlgoOf(level), 1, out)
				if err != nil {
					t.Fatal(err)
				}
				back, err := Decompress(lvl, re, max)
				if err != nil || !bytes.Equal(back, out) {
					t.Fatalf("re-compression round trip failed: %v", err)
				}
			}
		})
	})
}
