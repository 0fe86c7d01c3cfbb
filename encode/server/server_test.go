// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	mockserver "github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/servetest"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
)

var quiet = slog.New(slog.DiscardHandler)

type fixture struct {
	srv  *Server
	pool *pool.Pool
	path string
}

// start serves on a fresh socket with the real NVML (no GPU here) or lib.
func start(t *testing.T, cfg Config, pcfg pool.Config, lib nvml.Interface) *fixture {
	t.Helper()
	if cfg.AllowUID == nil {
		cfg.AllowUID = servetest.AllowAll
	}
	p := pool.Open(lib, pcfg, quiet)
	t.Cleanup(p.Close) // after the server's
	srv := New(cfg, p, quiet)
	return &fixture{srv: srv, pool: p, path: servetest.Serve(t, srv)}
}

func (f *fixture) client(t *testing.T) *client.Client {
	t.Helper()
	c := client.New(f.path, client.Options{ServerUID: os.Getuid(), Log: quiet})
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func h264(w, h int) encproto.Open {
	return encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: uint16(w), Height: uint16(h), Quality: 80, Speed: 70}
}

// Frames go in through shared memory and come back as H.264 and JPEG a
// real decoder shows as the same pictures.
func TestEncodeThroughWorker(t *testing.T) {
	f := start(t, Config{}, pool.Config{}, nil)
	c := f.client(t)
	hello, _ := c.Connected()
	if hello.Version != encproto.Version || len(hello.Codecs) != 2 || !strings.Contains(hello.Note, "no GPU") {
		t.Logf("hello %+v", hello) // a GPU machine adds h265 and has no note
	}
	for _, tc := range []struct {
		open   encproto.Open
		stride int
		frames int
	}{
		{h264(640, 360), 640*4 + 64, 8},
		{encproto.Open{Codec: codec.H264, Format: codec.RGB, Width: 320, Height: 240, Quality: 90, Speed: 30, Profile: "baseline"}, 320 * 3, 4},
		{encproto.Open{Codec: codec.JPEG, Format: codec.BGRA, Width: 333, Height: 201, Quality: 90}, 333 * 4, 1},
	} {
		ctx, err := c.Open(tc.open)
		if err != nil {
			t.Fatal(err)
		}
		wantBackend := encproto.X264
		if tc.open.Codec == codec.JPEG {
			wantBackend = encproto.JPEG
		} else if ctx.Info.Backend == encproto.X264 && ctx.Info.Fallback == "" {
			t.Fatalf("CPU video context without a reason: %+v", ctx.Info)
		}
		if ctx.Info.Backend != wantBackend && ctx.Info.Backend != encproto.NVENC {
			t.Fatalf("%+v", ctx.Info)
		}
		w, h := int(tc.open.Width), int(tc.open.Height)
		frame, err := client.NewFrame(tc.stride * h)
		if err != nil {
			t.Fatal(err)
		}
		var stream []byte
		var src []frametest.RGB
		for n := 0; n < tc.frames; n++ {
			img := frametest.Synthetic(w, h, n)
			src = append(src, img)
			copy(frame.Bytes(), frametest.Pack(img, tc.open.Format, tc.stride))
			var key bool
			stream, key, err = ctx.AppendCompress(stream, frame, 0, tc.stride, client.FrameOptions{Quality: -1, Speed: -1})
			if err != nil {
				t.Fatal(err)
			}
			if key != (n == 0) {
				t.Fatalf("frame %d keyframe=%v", n, key)
			}
		}
		frame.Close()
		pics := frametest.Decode(t, tc.open.Codec, stream, w, h)
		if len(pics) != tc.frames {
			t.Fatalf("%d pictures decoded, sent %d", len(pics), tc.frames)
		}
		for i := range pics {
			if q := frametest.PSNR(src[i], pics[i]); q < 30 {
				t.Fatalf("%v frame %d: PSNR %.1f", tc.open.Codec, i, q)
			}
		}
		if err := ctx.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if st := f.srv.Status(); st.Contexts != 0 || st.Pool.CPU != 0 {
		t.Fatalf("after closing: %+v", st)
	}
}

// raw is a client that can send what encode/client never would.
type raw struct {
	t   *testing.T
	c   *encproto.Conn
	seq uint32
}

func dialRaw(t *testing.T, path string) *raw {
	t.Helper()
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	uc.SetDeadline(time.Now().Add(10 * time.Second))
	r := &raw{t: t, c: encproto.NewConn(uc)}
	t.Cleanup(func() { r.c.Close() })
	return r
}

func (r *raw) do(req encproto.Request, fd int) (encproto.Reply, error) {
	r.t.Helper()
	body, typ, err := encproto.AppendRequest(nil, req)
	if err != nil {
		r.t.Fatal(err)
	}
	r.seq++
	if err := r.c.Write(typ, r.seq, body, nil, fd); err != nil {
		return nil, err
	}
	h, rb, _, err := r.c.Read(encproto.MaxReplyBody)
	if err != nil {
		return nil, err
	}
	if h.Seq != r.seq {
		r.t.Fatalf("reply %d to %d", h.Seq, r.seq)
	}
	return encproto.ParseReply(h, rb)
}

func (r *raw) open(o encproto.Open) uint32 {
	r.t.Helper()
	rep, err := r.do(o, -1)
	if err != nil {
		r.t.Fatal(err)
	}
	op, ok := rep.(encproto.Opened)
	if !ok {
		r.t.Fatalf("open: %+v", rep)
	}
	return op.Ctx
}

func memfd(t *testing.T, size int, seals int) int {
	t.Helper()
	fd, err := unix.MemfdCreate("t", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.Fatal(err)
	}
	if seals != 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

// What a client can do wrong with its frame: each is a BadFrame or
// NoContext reply, the worker survives it, and the context still works.
func TestBadFrames(t *testing.T) {
	f := start(t, Config{}, pool.Config{}, nil)
	r := dialRaw(t, f.path)
	ctx := r.open(h264(64, 64))
	good := 64 * 4 * 64
	file, err := os.CreateTemp(t.TempDir(), "frame")
	if err != nil {
		t.Fatal(err)
	}
	file.Truncate(int64(good))
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[1])
	for _, tc := range []struct {
		name string
		fd   func() int
		req  encproto.Compress
		code encproto.ErrorCode
		want string
	}{
		{"unsealed memfd", func() int { return memfd(t, good, 0) }, encproto.Compress{Ctx: ctx, Stride: 256}, encproto.BadFrame, "F_SEAL_SHRINK"},
		{"memfd one byte short", func() int { return memfd(t, good-1, unix.F_SEAL_SHRINK) }, encproto.Compress{Ctx: ctx, Stride: 256}, encproto.BadFrame, "needs 16384"},
		{"offset past the end", func() int { return memfd(t, good, unix.F_SEAL_SHRINK) }, encproto.Compress{Ctx: ctx, Stride: 256, Offset: 4096}, encproto.BadFrame, "needs"},
		{"huge offset", func() int { return memfd(t, good, unix.F_SEAL_SHRINK) }, encproto.Compress{Ctx: ctx, Stride: 256, Offset: 1 << 62}, encproto.BadFrame, "offset"},
		{"stride below a row", func() int { return memfd(t, good, unix.F_SEAL_SHRINK) }, encproto.Compress{Ctx: ctx, Stride: 255}, encproto.BadFrame, "stride"},
		{"a regular file", func() int { fd, _ := unix.Dup(int(file.Fd())); return fd }, encproto.Compress{Ctx: ctx, Stride: 256}, encproto.BadFrame, "not a memfd"},
		{"a pipe", func() int { fd, _ := unix.Dup(pipe[0]); return fd }, encproto.Compress{Ctx: ctx, Stride: 256}, encproto.BadFrame, "not a memfd"},
		{"unknown context", func() int { return memfd(t, good, unix.F_SEAL_SHRINK) }, encproto.Compress{Ctx: ctx + 1, Stride: 256}, encproto.NoContext, "no context"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := tc.fd()
			rep, err := r.do(tc.req, fd)
			unix.Close(fd)
			var e *encproto.Error
			if err != nil || !errors.As(replyAsErr(rep), &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %#v %v, want %v %q", rep, err, tc.code, tc.want)
			}
			// The same connection and context go on.
			fd = memfd(t, good, unix.F_SEAL_SHRINK)
			defer unix.Close(fd)
			rep, err = r.do(encproto.Compress{Ctx: ctx, Stride: 256, Quality: -1, Speed: -1}, fd)
			if _, ok := rep.(encproto.Compressed); !ok || err != nil {
				t.Fatalf("after: %#v %v", rep, err)
			}
		})
	}
}

func replyAsErr(rep encproto.Reply) error {
	if e, ok := rep.(*encproto.Error); ok {
		return e
	}
	return nil
}

// Garbage on the socket gets a BadRequest reply and a closed connection;
// the worker keeps serving others.
func TestGarbage(t *testing.T) {
	f := start(t, Config{}, pool.Config{}, nil)
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		append([]byte("XE\x02\x00\x01\x00\x00\x00"), 0xff, 0xff, 0xff, 0x7f), // 2 GiB open request
		[]byte("XE\x01\x00\x01\x00\x00\x00\x02\x00\x00\x00\x09\x00"),         // hello, version 9
	} {
		uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: f.path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		uc.SetDeadline(time.Now().Add(5 * time.Second))
		uc.Write(junk)
		c := encproto.NewConn(uc)
		h, body, _, err := c.Read(encproto.MaxReplyBody)
		if err != nil {
			t.Fatalf("%q: %v", junk, err)
		}
		rep, _ := encproto.ParseReply(h, body)
		if e, ok := rep.(*encproto.Error); !ok || e.Code != encproto.BadRequest {
			t.Fatalf("%q: %#v", junk, rep)
		}
		if _, _, _, err := c.Read(encproto.MaxReplyBody); err == nil {
			t.Fatalf("%q: connection left open", junk)
		}
		uc.Close()
	}
	f.client(t) // still serving
}

// A context belongs to its connection: another connection cannot use or
// close it, and it is freed (with its pool slot) when its owner leaves.
func TestTenancy(t *testing.T) {
	f := start(t, Config{}, pool.Config{MaxCPU: 1}, nil)
	a := dialRaw(t, f.path)
	ctx := a.open(h264(64, 64))
	b := dialRaw(t, f.path)
	fd := memfd(t, 64*64*4, unix.F_SEAL_SHRINK)
	defer unix.Close(fd)
	for _, req := range []encproto.Request{encproto.Compress{Ctx: ctx, Stride: 256}, encproto.Close{Ctx: ctx}} {
		sendFd := -1
		if _, ok := req.(encproto.Compress); ok {
			sendFd = fd
		}
		rep, err := b.do(req, sendFd)
		if e, ok := rep.(*encproto.Error); err != nil || !ok || e.Code != encproto.NoContext {
			t.Fatalf("%T from another connection: %#v %v", req, rep, err)
		}
	}
	// The pool is full (MaxCPU 1) until a's context goes with a.
	if rep, _ := b.do(h264(64, 64), -1); replyAsErr(rep) == nil {
		t.Fatalf("second CPU context admitted: %#v", rep)
	}
	a.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.Status().Contexts != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("context of a closed connection kept: %+v", f.srv.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.open(h264(64, 64))
}

// Limits: contexts per connection and per user, CPU contexts in total,
// connections per uid, sizes. Past each, a clear refusal, not a failure
// mid-stream.
func TestLimits(t *testing.T) {
	f := start(t, Config{MaxContextsPerConn: 3, MaxConnsPerUID: 3, MaxWidth: 1920, MaxHeight: 1080},
		pool.Config{MaxCPU: 4, MaxPerUser: 5}, nil)
	a := dialRaw(t, f.path)
	for i := 0; i < 3; i++ {
		a.open(h264(64, 64))
	}
	expectErr := func(r *raw, o encproto.Open, code encproto.ErrorCode, want string) {
		t.Helper()
		rep, err := r.do(o, -1)
		e, ok := rep.(*encproto.Error)
		if err != nil || !ok || e.Code != code || !strings.Contains(e.Message, want) {
			t.Fatalf("%+v: %#v %v, want %v %q", o, rep, err, code, want)
		}
	}
	expectErr(a, h264(64, 64), encproto.Refused, "3 contexts on this connection")
	b := dialRaw(t, f.path)
	b.open(h264(64, 64))                                                              // 4th x264 context
	expectErr(b, h264(64, 64), encproto.Refused, "pool full")                         // MaxCPU
	b.open(encproto.Open{Codec: codec.JPEG, Format: codec.BGRX, Width: 9, Height: 9}) // JPEG is not a video slot; 5th for the uid
	expectErr(b, encproto.Open{Codec: codec.JPEG, Format: codec.BGRX, Width: 9, Height: 9}, encproto.Refused, "holds 5 contexts")
	expectErr(b, h264(1922, 1080), encproto.Invalid, "exceeds 1920x1080")
	expectErr(b, h264(63, 64), encproto.Invalid, "even dimensions")
	expectErr(b, encproto.Open{Codec: codec.H264, Format: 42, Width: 64, Height: 64}, encproto.Invalid, "pixel")
	expectErr(b, encproto.Open{Codec: codec.JPEG, Format: codec.BGRX, Width: 64, Height: 64, Profile: "high"}, encproto.Invalid, "profile")
	// A third connection is the uid's limit; a fourth is closed unread.
	dialRaw(t, f.path).do(encproto.Status{}, -1)
	d := dialRaw(t, f.path)
	if rep, err := d.do(encproto.Hello{Version: 1}, -1); err == nil {
		t.Fatalf("fourth connection served: %#v", rep)
	}
	var st Status
	rep, err := b.do(encproto.Status{}, -1)
	if err != nil || json.Unmarshal(rep.(encproto.StatusReply).JSON, &st) != nil {
		t.Fatal(rep, err)
	}
	if st.Contexts != 5 || st.Pool.CPU != 4 || st.Pool.Users != 1 || st.Conns != 3 {
		t.Fatalf("status %+v", st)
	}
}

// Peer credentials decide before anything is read: a uid not allowed
// gets its connection closed without a reply.
func TestPeerNotAllowed(t *testing.T) {
	me := uint32(os.Getuid())
	f := start(t, Config{AllowUID: func(uid uint32) bool { return uid != me }}, pool.Config{}, nil)
	r := dialRaw(t, f.path)
	if rep, err := r.do(encproto.Hello{Version: 1}, -1); err == nil {
		t.Fatalf("served uid %d: %#v", me, rep)
	}
	if st := f.srv.Status(); st.Conns != 0 {
		t.Fatalf("%+v", st)
	}
}

// GPUs seen by NVML (go-nvml's mock) but no NVENC driver: the worker
// says so and every video context runs on x264 with that reason.
func TestGPUsWithoutDriver(t *testing.T) {
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib64"} {
		if _, err := os.Stat(dir + "/libnvidia-encode.so.1"); err == nil {
			t.Skip("an NVENC driver is installed")
		}
	}
	lib, err := mockserver.New(mockserver.WithGPUs(gpus.Multiple(2, gpus.A100_SXM4_40GB)...))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range lib.Devices {
		md := d.(*mockserver.Device)
		md.GetEncoderCapacityFunc = func(nvml.EncoderType) (int, nvml.Return) { return 100, nvml.SUCCESS }
		md.GetEncoderUtilizationFunc = func() (uint32, uint32, nvml.Return) { return 0, 167000, nvml.SUCCESS }
		md.GetEncoderSessionsFunc = func() ([]nvml.EncoderSessionInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	f := start(t, Config{}, pool.Config{}, lib)
	c := f.client(t)
	hello, _ := c.Connected()
	if !strings.Contains(hello.Note, "libnvidia-encode.so.1") || len(hello.Codecs) != 2 {
		t.Fatalf("hello %+v", hello)
	}
	ctx, err := c.Open(h264(64, 64))
	if err != nil || ctx.Info.Backend != encproto.X264 || ctx.Info.GPU != -1 || !strings.Contains(ctx.Info.Fallback, "no NVENC driver") {
		t.Fatalf("%+v %v", ctx, err)
	}
	_, err = c.Open(encproto.Open{Codec: codec.HEVC, Format: codec.BGRX, Width: 64, Height: 64})
	if !client.IsRefused(err) || !strings.Contains(err.Error(), "h265 needs a GPU") {
		t.Fatal(err)
	}
}

// The worker maps a frame once per memfd and reads the client's later
// writes through that mapping: nothing is copied on the way in.
func TestFrameMappingReused(t *testing.T) {
	f := start(t, Config{}, pool.Config{}, nil)
	c := f.client(t)
	ctx, err := c.Open(encproto.Open{Codec: codec.JPEG, Format: codec.RGB, Width: 32, Height: 32, Quality: 95})
	if err != nil {
		t.Fatal(err)
	}
	frame, err := client.NewFrame(2 * 32 * 32 * 3)
	if err != nil {
		t.Fatal(err)
	}
	defer frame.Close()
	var outs [][]byte
	for i, col := range [][3]byte{{250, 0, 0}, {0, 0, 250}, {0, 250, 0}} {
		off := uint64((i % 2) * 32 * 32 * 3) // two pictures in one buffer
		copy(frame.Bytes()[off:], frametest.Pack(frametest.Solid(32, 32, col[0], col[1], col[2]), codec.RGB, 96))
		out, _, err := ctx.AppendCompress(nil, frame, off, 96, client.FrameOptions{Quality: -1})
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
	}
	for i, want := range [][3]byte{{250, 0, 0}, {0, 0, 250}, {0, 250, 0}} {
		p := frametest.Decode(t, codec.JPEG, outs[i], 32, 32)[0].Pix
		for ch := 0; ch < 3; ch++ {
			if d := int(p[ch]) - int(want[ch]); d < -30 || d > 30 {
				t.Fatalf("picture %d is %v, want %v", i, p[:3], want)
			}
		}
	}
}
