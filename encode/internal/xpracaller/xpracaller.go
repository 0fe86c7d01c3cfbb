// SPDX-License-Identifier: GPL-2.0-or-later

// Package xpracaller is a caller of the encoder's xpra-protocol socket
// (encode/xpraenc) that speaks as xpra 6.x's remote codec does, for
// tests and benchmarks.
//
// It is written from xpra 6.x's remote codec
// (xpra/codecs/remote/encoder.py, common.py, xpra/client/base/adapter.py):
// the packets and argument orders it sends, and the way its network
// layer frames them (rencodeplus with the FLUSH flag, lz4 from the first
// packet, plain bytes over 16 KiB lz4-compressed into raw chunks:
// PROTOCOL.md §1.3, §3.2).
package xpracaller

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Caller is one connection. The methods that fail the test must be
// called from the test's goroutine; the Try ones may be called from any.
type Caller struct {
	t  testing.TB
	UC *net.UnixConn // for writing bytes no well-behaved caller would
	c  *conn.Conn    // for reading: raw chunks, lz4 and rencodeplus decoded
}

// Dial connects to the socket at path, closed when the test ends.
func Dial(t testing.TB, path string) *Caller {
	t.Helper()
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	return &Caller{t: t, UC: uc, c: conn.New(uc)}
}

// Send frames a packet as 6.x's socket_handler does with lz4 on.
func (c *Caller) Send(p ...any) {
	c.t.Helper()
	if err := c.TrySend(p...); err != nil {
		c.t.Fatal(err)
	}
}

// TrySend is Send returning its error.
func (c *Caller) TrySend(p ...any) error {
	var out []byte
	main := append([]any(nil), p...)
	for i := 1; i < len(main); i++ {
		b, ok := main[i].([]byte)
		if !ok || len(b) <= 16384 {
			continue
		}
		z, level, err := compress.Compress(compress.LZ4, 1, b)
		if err != nil {
			return err
		}
		out = wire.AppendHeader(out, wire.Header{Level: level, Index: byte(i), Size: uint32(len(z))})
		out = append(out, z...)
		main[i] = []byte{}
	}
	payload, err := rencode.Encode(main, rencode.Plus)
	if err != nil {
		return err
	}
	h := wire.Header{Flags: wire.RencodePlus.Flag() | wire.FlagFlush}
	if len(payload) > conn.MinCompressSize {
		if payload, h.Level, err = compress.Compress(compress.LZ4, 1, payload); err != nil {
			return err
		}
	}
	h.Size = uint32(len(payload))
	out = append(wire.AppendHeader(out, h), payload...)
	c.UC.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.UC.Write(out)
	return err
}

// Read reads one packet.
func (c *Caller) Read() conn.Packet {
	c.t.Helper()
	p, err := c.TryRead()
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// TryRead is Read returning its error.
func (c *Caller) TryRead() (conn.Packet, error) {
	c.UC.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c.c.ReadPacket()
}

// Expect reads one packet of the given type.
func (c *Caller) Expect(name string) conn.Packet {
	c.t.Helper()
	p := c.Read()
	if p[0] != name {
		c.t.Fatalf("got %v, want %s", Brief(p), name)
	}
	return p
}

// Brief is p for a message: long byte strings shown by type only.
func Brief(p conn.Packet) []any {
	out := make([]any, len(p))
	for i, v := range p {
		if b, ok := v.([]byte); ok && len(b) > 16 {
			v = "<" + value.TypeName(v) + ">"
		}
		out[i] = v
	}
	return out
}

// Hello6 is the hello 6.x's RemoteCodecClient sends: adapter.py
// make_hello (version, uuid), common.py make_hello (client_type=encode,
// no windows/keyboard/mouse, rgb encodings, network-state off, wants),
// the mmap subsystem's two areas (adapter.py init: mmap=both) and the
// packet encoder and compressor caps.
func Hello6(encoding string) value.Dict {
	var id [16]byte
	rand.Read(id[:])
	area := func(name string) value.Dict {
		return value.Dict{
			{Key: "file", Value: "/tmp/xpra." + name + ".mmap"},
			{Key: "size", Value: int64(2 << 30)},
			{Key: "token", Value: int64(0x1234567)},
			{Key: "token_index", Value: int64(512)},
			{Key: "token_bytes", Value: int64(16)},
		}
	}
	enc := value.Dict{{Key: "core", Value: []any{"rgb32", "rgb24"}}}
	if encoding != "" {
		enc = append(enc, value.Item{Key: "setting", Value: encoding})
	}
	return value.Dict{
		{Key: "version", Value: "6.4"},
		{Key: "uuid", Value: hex.EncodeToString(id[:])},
		{Key: "client_type", Value: "encode"},
		{Key: "windows", Value: false},
		{Key: "keyboard", Value: false},
		{Key: "encodings", Value: []any{"rgb32", "rgb24"}},
		{Key: "encoding", Value: enc},
		{Key: "mouse", Value: false},
		{Key: "network-state", Value: false},
		{Key: "wants", Value: []any{"encodings", "video"}},
		{Key: "mmap", Value: value.Dict{{Key: "read", Value: area("read")}, {Key: "write", Value: area("write")}}},
		{Key: "encoders", Value: []any{"rencodeplus", "yaml"}},
		{Key: "rencodeplus", Value: value.Dict{{Key: "", Value: true}}},
		{Key: "compressors", Value: []any{"lz4", "brotli", "none"}},
		{Key: "lz4", Value: value.Dict{{Key: "", Value: true}}},
		{Key: "compression_level", Value: int64(1)},
	}
}

// Handshake does what adapter.py's do_connect does and returns the
// server's hello and the video specs as the caller keeps them.
func (c *Caller) Handshake(encoding string) (caps.Caps, value.Dict) {
	c.t.Helper()
	c.Send("hello", Hello6(encoding))
	h := c.Expect("hello")
	hc := caps.New(h[1].(value.Dict))
	enc := c.Expect("encodings")
	d, ok := enc[1].(value.Dict)
	if !ok {
		c.t.Fatalf("encodings packet %v", Brief(enc))
	}
	v, _ := d.Get("video")
	video, ok := v.(value.Dict)
	if !ok {
		c.t.Fatalf("encodings packet without a video dict: %v", d)
	}
	c.Expect("startup-complete")
	return hc, video
}

// Metadata is a 6.x ImageWrapper's metadata for a w×h picture of
// format f at 0,0.
func Metadata(w, h int, f codec.PixelFormat, stride int) value.Dict {
	return value.Dict{
		{Key: "x", Value: int64(0)}, {Key: "y", Value: int64(0)},
		{Key: "width", Value: int64(w)}, {Key: "height", Value: int64(h)},
		{Key: "depth", Value: int64(24)}, {Key: "bytesperpixel", Value: int64(f.BytesPerPixel())},
		{Key: "planes", Value: int64(0)}, {Key: "rowstride", Value: int64(stride)},
		{Key: "pixel_format", Value: f.String()}, {Key: "full_range", Value: true},
	}
}

// Frame packs img as a 6.x ImageWrapper's pixels and metadata.
func Frame(img frametest.RGB, f codec.PixelFormat, stride int) (value.Dict, []byte) {
	return Metadata(img.W, img.H, f, stride), frametest.Pack(img, f, stride)
}

// ExpectDisconnect reads until the server's disconnect and the end of
// the stream, and returns the disconnect's last detail.
func (c *Caller) ExpectDisconnect(reason string) string {
	c.t.Helper()
	var got []string
	for {
		p, err := c.TryRead()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection still open after %v", got)
			}
			break // reset by peer: closed
		}
		if p[0] == packet.Disconnect {
			r, details := packet.DisconnectReason(p)
			got = append(append(got, r), details...)
		}
	}
	if len(got) == 0 || got[0] != reason {
		c.t.Fatalf("disconnect %q, want reason %q", got, reason)
	}
	return got[len(got)-1]
}
