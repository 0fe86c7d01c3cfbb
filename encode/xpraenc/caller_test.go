package xpraenc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/servetest"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// The caller below is written from xpra 6.x's remote codec
// (xpra/codecs/remote/encoder.py, common.py, xpra/client/base/adapter.py):
// the packets and argument orders it sends, and the way its network
// layer frames them (rencodeplus with the FLUSH flag, lz4 from the first
// packet, plain bytes over 16 KiB lz4-compressed into raw chunks:
// PROTOCOL.md §1.3, §3.2).

var quiet = slog.New(slog.DiscardHandler)

type fixture struct {
	srv  *Server
	pool *pool.Pool
	path string
}

func start(t testing.TB, cfg Config, pcfg pool.Config) *fixture {
	t.Helper()
	if cfg.AllowUID == nil {
		cfg.AllowUID = servetest.AllowAll
	}
	p := pool.Open(nil, pcfg, quiet)
	t.Cleanup(p.Close) // after the server's
	srv := New(cfg, p, quiet)
	return &fixture{srv: srv, pool: p, path: servetest.Serve(t, srv)}
}

type caller struct {
	t  testing.TB
	uc *net.UnixConn
	c  *conn.Conn // for reading: raw chunks, lz4 and rencodeplus decoded
}

func dial(t testing.TB, path string) *caller {
	t.Helper()
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	return &caller{t: t, uc: uc, c: conn.New(uc)}
}

// send frames a packet as 6.x's socket_handler does with lz4 on.
func (c *caller) send(p ...any) {
	c.t.Helper()
	if err := c.trySend(p...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *caller) trySend(p ...any) error {
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
	c.uc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.uc.Write(out)
	return err
}

func (c *caller) read() conn.Packet {
	c.t.Helper()
	p, err := c.tryRead()
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *caller) tryRead() (conn.Packet, error) {
	c.uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c.c.ReadPacket()
}

// expect reads one packet of the given type.
func (c *caller) expect(name string) conn.Packet {
	c.t.Helper()
	p := c.read()
	if p[0] != name {
		c.t.Fatalf("got %v, want %s", brief(p), name)
	}
	return p
}

func brief(p conn.Packet) []any {
	out := make([]any, len(p))
	for i, v := range p {
		if b, ok := v.([]byte); ok && len(b) > 16 {
			v = "<" + value.TypeName(v) + ">"
		}
		out[i] = v
	}
	return out
}

// hello6 is the hello 6.x's RemoteCodecClient sends: adapter.py
// make_hello (version, uuid), common.py make_hello (client_type=encode,
// no windows/keyboard/mouse, rgb encodings, network-state off, wants),
// the mmap subsystem's two areas (adapter.py init: mmap=both) and the
// packet encoder and compressor caps.
func hello6(encoding string) value.Dict {
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

// handshake does what adapter.py's do_connect does and returns the
// video specs as the caller keeps them.
func (c *caller) handshake(encoding string) (caps.Caps, value.Dict) {
	c.t.Helper()
	c.send("hello", hello6(encoding))
	h := c.expect("hello")
	hc := caps.New(h[1].(value.Dict))
	enc := c.expect("encodings")
	d, ok := enc[1].(value.Dict)
	if !ok {
		c.t.Fatalf("encodings packet %v", brief(enc))
	}
	v, _ := d.Get("video")
	video, ok := v.(value.Dict)
	if !ok {
		c.t.Fatalf("encodings packet without a video dict: %v", d)
	}
	c.expect("startup-complete")
	return hc, video
}

// frame packs picture n as a 6.x ImageWrapper's pixels and metadata.
func frame(img frametest.RGB, f codec.PixelFormat, stride int) (value.Dict, []byte) {
	meta := value.Dict{
		{Key: "x", Value: int64(0)}, {Key: "y", Value: int64(0)},
		{Key: "width", Value: int64(img.W)}, {Key: "height", Value: int64(img.H)},
		{Key: "depth", Value: int64(24)}, {Key: "bytesperpixel", Value: int64(f.BytesPerPixel())},
		{Key: "planes", Value: int64(0)}, {Key: "rowstride", Value: int64(stride)},
		{Key: "pixel_format", Value: f.String()}, {Key: "full_range", Value: true},
	}
	return meta, frametest.Pack(img, f, stride)
}

// expectDisconnect reads until the server's disconnect and the end of
// the stream.
func (c *caller) expectDisconnect(reason string) string {
	c.t.Helper()
	var got []string
	for {
		p, err := c.tryRead()
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

func mustEnv(t testing.TB, k string) string {
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("%s not set", k)
	}
	return v
}
