// SPDX-License-Identifier: GPL-2.0-or-later

// Package compress handles the compression of xpra chunks (PROTOCOL.md §3):
// the level byte of the chunk header says which algorithm and level were
// used; the receiver needs no other state.
//
// Library choices: zlib is the standard library's. lz4 is
// github.com/pierrec/lz4/v4, the most used pure-Go lz4, because xpra sends
// raw lz4 *blocks* (with its own 4-byte size prefix) rather than lz4 frames
// and that library exposes the block API. brotli is
// github.com/andybalholm/brotli, a pure-Go translation of Google's C library,
// so the proxy needs no cgo. lzo (3.1 only, not in Debian's xpra) is
// recognised and refused with a clear error.
package compress

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/pierrec/lz4/v4"

	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
)

// Algo is a compression algorithm.
type Algo int

const (
	None Algo = iota
	Zlib
	LZ4
	LZO
	Brotli
)

var names = [...]string{None: "none", Zlib: "zlib", LZ4: "lz4", LZO: "lzo", Brotli: "brotli"}

func (a Algo) String() string {
	if a >= 0 && int(a) < len(names) {
		return names[a]
	}
	return fmt.Sprintf("compress.Algo(%d)", int(a))
}

// ParseAlgo maps a name used in hello caps to an Algo.
func ParseAlgo(name string) (Algo, bool) {
	for i, n := range names {
		if n == name {
			return Algo(i), true
		}
	}
	return None, false
}

// Level-byte flags (PROTOCOL.md §3.1).
const (
	flagLZ4    = 0x10
	flagLZO    = 0x20
	flagBrotli = 0x40
)

// AlgoOf tells which algorithm a chunk's level byte names, with the
// receiver's precedence: lz4, lzo, brotli, else zlib for any non-zero level.
func AlgoOf(level byte) Algo {
	switch {
	case level == 0:
		return None
	case level&flagLZ4 != 0:
		return LZ4
	case level&flagLZO != 0:
		return LZO
	case level&flagBrotli != 0:
		return Brotli
	}
	return Zlib
}

// LevelByte is the header level byte for data compressed with a at level.
func LevelByte(a Algo, level int) byte {
	switch a {
	case Zlib:
		return byte(clamp(level, 1, 9))
	case LZ4:
		return flagLZ4 | byte(clamp(level, 1, 15))
	case LZO:
		return flagLZO | byte(clamp(level, 1, 15))
	case Brotli:
		return flagBrotli | byte(clamp(level, 1, 11))
	}
	return 0
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }

// ErrTooLarge: the data would decompress beyond the caller's limit.
var ErrTooLarge = errors.New("compress: decompressed size exceeds the limit")

// ErrUnsupported names an algorithm this build cannot handle.
var ErrUnsupported = errors.New("compress: unsupported algorithm")

// brotliDefaultWindow is the window of Python's brotli.compress (lgwin
// 22), which xpra uses whatever the size of the data: accepted under any
// limit, so that a small packet is never refused for its encoder's
// default. The output is still bounded by the limit.
const brotliDefaultWindow = 1<<22 - 16

// lz4MaxRatio is the largest expansion an lz4 block can encode (a run of
// one literal repeated): a size prefix claiming more is a lie, refused
// before anything is allocated.
const lz4MaxRatio = 255

// Decompress undoes the compression named by a chunk's level byte. The
// result never exceeds max bytes, and no more than max+1 bytes are ever
// allocated for it, whatever the input claims.
func Decompress(level byte, payload []byte, max int) ([]byte, error) {
	return DecompressWithin(level, payload, max, nil)
}

// DecompressWithin is Decompress that also charges m for what it
// allocates (the output buffer as it grows, brotli's window), so that a
// packet's decompressed bytes and its decoded values share one budget;
// it stops with an error wrapping budget.ErrExceeded at the first charge
// over m's limits. A nil m charges nothing.
func DecompressWithin(level byte, payload []byte, max int, m *budget.Meter) ([]byte, error) {
	switch AlgoOf(level) {
	case None:
		if len(payload) > max {
			return nil, fmt.Errorf("%w: %d > %d", ErrTooLarge, len(payload), max)
		}
		return payload, nil
	case LZ4:
		return decompressLZ4(payload, max, m)
	case Zlib:
		r, err := zlib.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("compress: zlib: %w", err)
		}
		out, err := readLimited(r, max, len(payload), m)
		if err != nil {
			return nil, fmt.Errorf("compress: zlib: %w", err)
		}
		return out, nil
	case Brotli:
		// The decoder allocates the window the stream declares before it
		// produces a byte: refuse windows beyond the limit up front.
		w, err := brotliWindow(payload)
		if err != nil {
			return nil, fmt.Errorf("compress: brotli: %w", err)
		}
		if w > max && w > brotliDefaultWindow {
			return nil, fmt.Errorf("%w: brotli window of %d bytes", ErrTooLarge, w)
		}
		// The decoder sizes its ring buffer to the data of a short stream
		// and to the window only for a long one, whose output then stops
		// at max: charging the window in full would refuse Python's 4 MiB
		// default for every small packet under a 4 MiB budget. What goes
		// uncharged is bounded by the accepted window (4 MiB).
		if err := m.Alloc(min(w, max)); err != nil {
			return nil, fmt.Errorf("compress: brotli window: %w", err)
		}
		out, err := readLimited(brotli.NewReader(bytes.NewReader(payload)), max, len(payload), m)
		if err != nil {
			return nil, fmt.Errorf("compress: brotli: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: lzo (level byte %#02x): python-lzo's format is not implemented; ask the peer for lz4 or zlib", ErrUnsupported, level)
}

func decompressLZ4(payload []byte, max int, m *budget.Meter) ([]byte, error) {
	if len(payload) < 4 {
		return nil, fmt.Errorf("compress: lz4: %d bytes is too short for the size prefix", len(payload))
	}
	size := binary.LittleEndian.Uint32(payload)
	block := payload[4:]
	if uint64(size) > uint64(max) {
		return nil, fmt.Errorf("%w: lz4 size prefix %d > %d", ErrTooLarge, size, max)
	}
	if uint64(size) > uint64(len(block))*lz4MaxRatio+16 {
		return nil, fmt.Errorf("compress: lz4: size prefix %d impossible for a %d-byte block", size, len(block))
	}
	if err := m.Alloc(int(size)); err != nil {
		return nil, fmt.Errorf("compress: lz4: %w", err)
	}
	out := make([]byte, size)
	n, err := lz4.UncompressBlock(block, out)
	if err != nil {
		return nil, fmt.Errorf("compress: lz4: %w", err)
	}
	if n != int(size) {
		return nil, fmt.Errorf("compress: lz4: block gave %d bytes, prefix said %d", n, size)
	}
	return out, nil
}

// brotliWindow reads the window size from a brotli stream header (RFC
// 7932 §9.1: WBITS, bits read from the least significant end).
func brotliWindow(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, errors.New("empty stream")
	}
	bits := uint(b[0])
	if len(b) > 1 {
		bits |= uint(b[1]) << 8
	}
	wbits := 16
	switch {
	case bits&1 == 0:
	case (bits>>1)&7 != 0:
		wbits = 17 + int((bits>>1)&7)
	default:
		switch m := (bits >> 4) & 7; m {
		case 0:
			wbits = 17
		case 1:
			return 0, errors.New("large-window brotli streams are not accepted")
		default:
			wbits = 8 + int(m)
		}
	}
	return 1<<wbits - 16, nil
}

// readLimited reads r to EOF into a buffer that grows by doubling but is
// never allocated larger than max+1, so a decompression bomb fails with
// ErrTooLarge rather than exhausting memory. m is charged for every
// buffer, the ones outgrown included.
func readLimited(r io.Reader, max, hint int, m *budget.Meter) ([]byte, error) {
	size := min(clamp(hint*4, 512, 1<<20), max+1)
	if err := m.Alloc(size); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > max {
				return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, max)
			}
			next := min(2*cap(buf), max+1)
			if err := m.Grow(next, 1); err != nil {
				return nil, err
			}
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) > max {
				return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, max)
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Compress compresses data with a at level, returning the payload and the
// level byte for its chunk header.
func Compress(a Algo, level int, data []byte) ([]byte, byte, error) {
	switch a {
	case None:
		return data, 0, nil
	case LZ4:
		out := make([]byte, 4+lz4.CompressBlockBound(len(data)))
		binary.LittleEndian.PutUint32(out, uint32(len(data)))
		var c lz4.Compressor
		n, err := c.CompressBlock(data, out[4:])
		if err != nil {
			return nil, 0, fmt.Errorf("compress: lz4: %w", err)
		}
		return out[:4+n], LevelByte(LZ4, level), nil
	case Zlib:
		var b bytes.Buffer
		w, err := zlib.NewWriterLevel(&b, clamp(level, 1, 9))
		if err != nil {
			return nil, 0, fmt.Errorf("compress: zlib: %w", err)
		}
		if _, err := w.Write(data); err != nil {
			return nil, 0, fmt.Errorf("compress: zlib: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, 0, fmt.Errorf("compress: zlib: %w", err)
		}
		return b.Bytes(), LevelByte(Zlib, level), nil
	case Brotli:
		level = clamp(level, 1, 11)
		if len(data) > 1<<20 {
			level = min(level, 9) // as xpra: the top levels are too slow on big inputs
		}
		// The smallest window that holds the data: receivers (ours
		// included) refuse windows larger than their packet limit.
		lgwin := 10
		for lgwin < 24 && 1<<lgwin-16 < len(data) {
			lgwin++
		}
		var b bytes.Buffer
		w := brotli.NewWriterOptions(&b, brotli.WriterOptions{Quality: level, LGWin: lgwin})
		if _, err := w.Write(data); err != nil {
			return nil, 0, fmt.Errorf("compress: brotli: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, 0, fmt.Errorf("compress: brotli: %w", err)
		}
		return b.Bytes(), LevelByte(Brotli, level), nil
	}
	return nil, 0, fmt.Errorf("%w: %s", ErrUnsupported, a)
}
