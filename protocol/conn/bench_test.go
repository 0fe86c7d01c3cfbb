// SPDX-License-Identifier: GPL-2.0-or-later

package conn

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// realHello is the payload of the first frame a real 3.1.3 client sent
// (a2-hello-direct), decompressed: 67 KB of rencode. bench/python_rencode.py
// times python3-rencode on the same bytes.
func realHello(b *testing.B) []byte {
	data, err := os.ReadFile(filepath.Join(shared.Traces(b), "a2-hello-direct.c2s.bin"))
	if err != nil {
		b.Fatal(err)
	}
	f, err := wire.NewReader(bytes.NewReader(data)).ReadFrame()
	if err != nil {
		b.Fatal(err)
	}
	p, err := compress.Decompress(f.Header.Level, f.Payload, wire.AbsMaxSize)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// drawPacket is a draw packet with 1 MiB of pixels inline (not as a raw
// chunk), the worst case for a decoder.
func drawPacket(b *testing.B) []byte {
	pixels := bytes.Repeat([]byte{1, 2, 3, 4}, 1<<18)
	p, err := rencode.Encode([]any{"draw", int64(1), int64(0), int64(0), int64(512), int64(512), "rgb32", pixels,
		int64(7), int64(2048), value.Dict{{Key: "lz4", Value: int64(1)}}}, rencode.Legacy)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkDecodeRealHello(b *testing.B) {
	p := realHello(b)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rencode.Decode(p, rencode.Legacy); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeRealHello(b *testing.B) {
	p := realHello(b)
	v, err := rencode.Decode(p, rencode.Legacy)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, len(p))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = rencode.Append(buf[:0], v, rencode.Legacy); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeDraw1MiB(b *testing.B) {
	p := drawPacket(b)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rencode.Decode(p, rencode.Legacy); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadCapture reads every packet of a real attach session's
// server side (93 KB: hello, draws with raw chunks, lz4) through Conn.
func BenchmarkReadCapture(b *testing.B) {
	dir := shared.Traces(b)
	data, err := os.ReadFile(filepath.Join(dir, "d-attach-direct.1.s2c.bin"))
	if err != nil {
		b.Fatal(err)
	}
	announced := helloAliases(b, filepath.Join(dir, "d-attach-direct.1.c2s.bin"))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c := New(rw{bytes.NewReader(data), io.Discard})
		c.SetAnnouncedAliases(announced)
		for {
			if _, err := c.ReadPacket(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}
