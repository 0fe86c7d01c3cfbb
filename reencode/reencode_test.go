// SPDX-License-Identifier: GPL-2.0-or-later

package reencode

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/internal/encodelab"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/relay"
)

// reencodeLab is a Reencoder between a fake 3.1 server (the test writes
// its packets) and the relay's end (the test reads what the client
// would get), with a real encoder worker behind it.
type reencodeLab struct {
	t      *testing.T
	worker *encodelab.Worker
	enc    *client.Client
	re     *Reencoder
	server *conn.Conn // the server's side: write packets here
	relay  *conn.Conn // the relay's side: read them here
	srvNet net.Conn
}

func startEncoder(t *testing.T, extra ...string) *encodelab.Worker {
	t.Helper()
	// The relay side of these tests runs as the test's own user.
	return encodelab.Start(t, append([]string{"--allow-uids=" + strconv.Itoa(os.Getuid())}, extra...)...)
}

func newReencodeLab(t *testing.T, w *encodelab.Worker, opts Options) *reencodeLab {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	srvNet, err := fileConn(fds[0], "server")
	if err != nil {
		t.Fatal(err)
	}
	proxyNet, err := fileConn(fds[1], "proxy")
	if err != nil {
		t.Fatal(err)
	}
	enc := client.New(w.Socket, client.Options{ServerUID: w.UID, Timeout: time.Second, Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(enc.Close)
	sh := caps.ParseHello(value.Dict{{Key: "rencode", Value: true}, {Key: "version", Value: "3.1.3"}})
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	re, err := New(enc, proxyNet, conn.New(proxyNet), sh, opts, log)
	if err != nil {
		t.Fatal(err)
	}
	_, rc := re.Relay()
	l := &reencodeLab{t: t, worker: w, enc: enc, re: re, server: conn.New(srvNet), relay: rc, srvNet: srvNet}
	t.Cleanup(func() { srvNet.Close(); re.Close() })
	return l
}

func (l *reencodeLab) send(p conn.Packet) {
	l.t.Helper()
	if err := l.server.WritePacket(p); err != nil {
		l.t.Fatal(err)
	}
}

func (l *reencodeLab) recv() conn.Packet {
	l.t.Helper()
	nc, _ := l.re.Relay()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := l.relay.ReadPacket()
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

// recvDraw reads packets until a draw.
func (l *reencodeLab) recvDraw() draw {
	l.t.Helper()
	for {
		p := l.recv()
		if name, _ := value.AsString(p[0]); name != "draw" {
			continue
		}
		d, err := parseDraw(p)
		if err != nil {
			l.t.Fatal(err)
		}
		return d
	}
}

// picture is a BGRX test image: colour bars over a gradient, shifted by k.
func picture(w, h, k int) []byte {
	bars := [][3]byte{{255, 255, 255}, {0, 255, 255}, {255, 255, 0}, {0, 255, 0}, {255, 0, 255}, {0, 0, 255}, {255, 0, 0}, {0, 0, 0}}
	pix := make([]byte, w*h*4)
	for y := range h {
		for x := range w {
			i := (y*w + x) * 4
			if y < h/2 {
				c := bars[((x+k)*len(bars)/w)%len(bars)] // R, G, B
				pix[i], pix[i+1], pix[i+2] = c[2], c[1], c[0]
			} else {
				pix[i], pix[i+1], pix[i+2] = byte(x*255/w), byte(y*255/h), byte(k*16)
			}
			pix[i+3] = 0xFF
		}
	}
	return pix
}

func rgbPacket(wid int64, x, y, w, h int, pix []byte, seq int64, opts value.Dict) conn.Packet {
	if opts == nil {
		opts = value.Dict{{Key: "rgb_format", Value: "BGRX"}}
	}
	return conn.Packet{"draw", wid, int64(x), int64(y), int64(w), int64(h), "rgb24", pix, seq, int64(w * 4), opts}
}

func newWindow(wid int64, w, h int) conn.Packet {
	return conn.Packet{"new-window", wid, int64(0), int64(0), int64(w), int64(h), value.Dict{}, value.Dict{}}
}

func optInt(d draw, k string) int64 {
	v, _ := d.opt(k)
	n, _ := value.AsInt(v)
	return n
}

func optStr(d draw, k string) string {
	v, _ := d.opt(k)
	s, _ := value.AsString(v)
	return s
}

// decodeH264 decodes an annex-B stream with Debian's ffmpeg into BGRX
// pictures of w x h.
func decodeH264(t *testing.T, stream []byte, w, h int) [][]byte {
	t.Helper()
	ffmpeg := testenv.Command(t, "ffmpeg")
	cmd := exec.Command(ffmpeg, "-v", "error", "-f", "h264", "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "bgra", "pipe:1")
	cmd.Stdin = bytes.NewReader(stream)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
	}
	size := w * h * 4
	if len(out) == 0 || len(out)%size != 0 {
		t.Fatalf("ffmpeg gave %d bytes, not %dx%d pictures", len(out), w, h)
	}
	var pics [][]byte
	for i := 0; i < len(out); i += size {
		pics = append(pics, out[i:i+size])
	}
	return pics
}

// meanDiff is the mean absolute difference of the colour bytes of two
// BGRX pictures of w x h, the second with rows stride bytes apart.
func meanDiff(a []byte, b []byte, w, h, stride int) float64 {
	var sum, n int
	for y := range h {
		for x := range w {
			for c := range 3 {
				d := int(a[(y*w+x)*4+c]) - int(b[y*stride+x*4+c])
				sum += max(d, -d)
				n++
			}
		}
	}
	return float64(sum) / float64(n)
}

func isKeyframe(data []byte) bool {
	// annex-B: an SPS (NAL type 7) comes before every keyframe.
	for i := 0; i+4 < len(data); i++ {
		if data[i] == 0 && data[i+1] == 0 && data[i+2] == 1 && data[i+3]&0x1F == 7 {
			return true
		}
	}
	return false
}

// TestReencodeDraws: what the client gets for what a 3.1 server sends,
// with a real encoder worker; the H.264 it gets decodes (ffmpeg) to the
// window as the server drew it.
func TestReencodeDraws(t *testing.T) {
	w := startEncoder(t)
	tests := []struct {
		name string
		opts Options
		run  func(t *testing.T, l *reencodeLab)
	}{
		{"a full draw becomes H.264 of the window, frames numbered", Options{}, func(t *testing.T, l *reencodeLab) {
			const W, H = 96, 64
			l.send(newWindow(1, W, H))
			var stream []byte
			var want [][]byte
			for k := range 3 {
				pix := picture(W, H, k*8)
				want = append(want, pix)
				l.send(rgbPacket(1, 0, 0, W, H, pix, int64(10+k), nil))
				d := l.recvDraw()
				if d.coding != "h264" || d.x != 0 || d.y != 0 || d.w != W || d.h != H || d.rowstride != 0 {
					t.Fatalf("frame %d: %s %d,%d %dx%d stride %d", k, d.coding, d.x, d.y, d.w, d.h, d.rowstride)
				}
				if optStr(d, "csc") != "YUV420P" || optInt(d, "frame") != int64(k) {
					t.Fatalf("frame %d options %v", k, d.opts)
				}
				if seq, _ := value.AsInt(d.seq); seq != int64(10+k) {
					t.Fatalf("frame %d sequence %v", k, d.seq)
				}
				if isKeyframe(d.data) != (k == 0) {
					t.Fatalf("frame %d keyframe=%v", k, isKeyframe(d.data))
				}
				stream = append(stream, d.data...)
			}
			for k, got := range decodeH264(t, stream, W, H) {
				if diff := meanDiff(got, want[k], W, H, W*4); diff > 4 {
					t.Errorf("frame %d decodes %.1f away from the window on average", k, diff)
				}
			}
			if n := l.re.Stats.Frames.Load(); n != 3 {
				t.Errorf("frames counted: %d", n)
			}
		}},
		{"sub-rectangles update the window's copy", Options{}, func(t *testing.T, l *reencodeLab) {
			const W, H = 128, 96
			l.send(newWindow(2, W, H))
			base := picture(W, H, 0)
			l.send(rgbPacket(2, 0, 0, W, H, base, 1, nil))
			first := l.recvDraw()
			// The right half changes: the frame shows the left half as
			// before and the new right half.
			half := picture(W/2, H, 5)
			l.send(rgbPacket(2, W/2, 0, W/2, H, half, 2, nil))
			second := l.recvDraw()
			if second.coding != "h264" || second.w != W || second.h != H {
				t.Fatalf("got %s %dx%d", second.coding, second.w, second.h)
			}
			want := append([]byte(nil), base...)
			blit(want, W*4, W/2, 0, half, W/2*4, W/2, H, codec.BGRX)
			pics := decodeH264(t, append(append([]byte(nil), first.data...), second.data...), W, H)
			// Colour edges blur in 4:2:0: a wrong composition is far worse.
			if diff, stale := meanDiff(pics[1], want, W, H, W*4), meanDiff(pics[1], base, W, H, W*4); diff > 8 || diff*3 > stale {
				t.Errorf("composed frame is %.1f away on average (%.1f from the stale picture)", diff, stale)
			}
		}},
		{"small draws and draws before the window is whole stay rgb, lz4 when the client takes it", Options{LZ4: true}, func(t *testing.T, l *reencodeLab) {
			const W, H = 128, 96
			l.send(newWindow(3, W, H))
			// Not the whole window yet: the proxy does not know the rest.
			l.send(rgbPacket(3, 0, 0, W, H-8, picture(W, H-8, 0), 1, nil))
			if d := l.recvDraw(); d.coding != "rgb24" || optInt(d, "lz4") != 1 {
				t.Fatalf("partial first draw: %s %v", d.coding, d.opts)
			}
			l.send(rgbPacket(3, 0, 0, W, H, picture(W, H, 0), 2, nil))
			if d := l.recvDraw(); d.coding != "h264" {
				t.Fatalf("full draw: %s", d.coding)
			}
			small := picture(16, 16, 3)
			l.send(rgbPacket(3, 4, 4, 16, 16, small, 3, nil))
			d := l.recvDraw()
			if d.coding != "rgb24" || d.x != 4 || d.w != 16 || !bytes.Equal(d.data, small) {
				t.Fatalf("small draw: %s at %d width %d, %d bytes", d.coding, d.x, d.w, len(d.data))
			}
		}},
		{"an odd size: the last column and row go as rgb", Options{}, func(t *testing.T, l *reencodeLab) {
			const W, H = 129, 97
			l.send(newWindow(4, W, H))
			pix := picture(W, H, 0)
			l.send(rgbPacket(4, 0, 0, W, H, pix, 7, nil))
			v, col, row := l.recvDraw(), l.recvDraw(), l.recvDraw()
			if v.coding != "h264" || v.w != W-1 || v.h != H-1 {
				t.Fatalf("video part: %s %dx%d", v.coding, v.w, v.h)
			}
			if col.coding != "rgb32" || col.x != W-1 || col.y != 0 || col.w != 1 || col.h != H || !bytes.Equal(col.data[4:8], pix[(2*W-1)*4:2*W*4]) {
				t.Fatalf("column: %s %d,%d %dx%d", col.coding, col.x, col.y, col.w, col.h)
			}
			if row.coding != "rgb32" || row.x != 0 || row.y != H-1 || row.w != W-1 || row.h != 1 || !bytes.Equal(row.data, pix[(H-1)*W*4:(H-1)*W*4+(W-1)*4]) {
				t.Fatalf("row: %s %d,%d %dx%d", row.coding, row.x, row.y, row.w, row.h)
			}
			for _, d := range []draw{v, col, row} {
				if seq, _ := value.AsInt(d.seq); seq != 7 {
					t.Fatalf("sequence %v", d.seq)
				}
			}
		}},
		{"what it cannot take passes untouched", Options{}, func(t *testing.T, l *reencodeLab) {
			const W, H = 64, 64
			l.send(newWindow(5, W, H))
			l.recv()
			pix := picture(W, H, 0)
			z, _, _ := compress.Compress(compress.LZ4, 1, pix)
			for _, p := range []conn.Packet{
				rgbPacket(5, 0, 0, W, H, z, 1, value.Dict{{Key: "rgb_format", Value: "BGRX"}, {Key: "lz4", Value: int64(1)}}),
				rgbPacket(5, 0, 0, W, H, pix, 2, value.Dict{{Key: "rgb_format", Value: "BGRA"}}),
				{"draw", int64(5), int64(0), int64(0), int64(W), int64(H), "png", []byte("\x89PNG..."), int64(3), int64(0), value.Dict{}},
				rgbPacket(99, 0, 0, W, H, pix, 4, nil), // no such window
				{"cursor", []byte("pixels"), int64(1)},
			} {
				l.send(p)
				got := l.recv()
				if !value.Equal(got, p, true) {
					t.Fatalf("%v changed on the way:\n%#v\n%#v", p[0], got, p)
				}
			}
			if l.re.Stats.Frames.Load() != 0 {
				t.Fatal("re-encoded something it should not have")
			}
		}},
		{"a resize or a lost window ends the context", Options{}, func(t *testing.T, l *reencodeLab) {
			l.send(newWindow(6, 64, 64))
			l.send(rgbPacket(6, 0, 0, 64, 64, picture(64, 64, 0), 1, nil))
			if d := l.recvDraw(); optInt(d, "frame") != 0 {
				t.Fatal(d.opts)
			}
			l.send(rgbPacket(6, 0, 0, 64, 64, picture(64, 64, 1), 2, nil))
			if d := l.recvDraw(); optInt(d, "frame") != 1 {
				t.Fatal(d.opts)
			}
			l.send(conn.Packet{"window-resized", int64(6), int64(80), int64(60)})
			l.send(rgbPacket(6, 0, 0, 80, 60, picture(80, 60, 0), 3, nil))
			if d := l.recvDraw(); d.w != 80 || optInt(d, "frame") != 0 || !isKeyframe(d.data) {
				t.Fatalf("after resize: %dx%d %v", d.w, d.h, d.opts)
			}
			if n := l.re.Stats.Contexts.Load(); n != 1 {
				t.Fatalf("%d contexts", n)
			}
			l.send(conn.Packet{"lost-window", int64(6)})
			l.recv()
			if n := l.re.Stats.Contexts.Load(); n != 0 {
				t.Fatalf("%d contexts after lost-window", n)
			}
		}},
		{"scrolls move the window's copy as the client moves its own", Options{MinPixels: 16 * 64}, func(t *testing.T, l *reencodeLab) {
			const W, H = 64, 64
			l.send(newWindow(7, W, H))
			base := picture(W, H, 0)
			l.send(rgbPacket(7, 0, 0, W, H, base, 1, nil))
			first := l.recvDraw()
			// Rows 16..63 move up by 16, then the bottom 16 rows are redrawn
			// (big enough to be video).
			sc := conn.Packet{"draw", int64(7), int64(0), int64(0), int64(W), int64(H), "scroll",
				[]any{[]any{int64(0), int64(16), int64(W), int64(48), int64(0), int64(-16)}}, int64(2), int64(0), value.Dict{}}
			l.send(sc)
			if got := l.recv(); !value.Equal(got, sc, true) {
				t.Fatal("scroll changed on the way")
			}
			bottom := picture(W, 16, 9)
			want := append([]byte(nil), base...)
			copy(want, base[16*W*4:])
			copy(want[48*W*4:], bottom)
			l.send(rgbPacket(7, 0, 48, W, 16, bottom, 3, nil))
			second := l.recvDraw()
			pics := decodeH264(t, append(append([]byte(nil), first.data...), second.data...), W, H)
			if diff, stale := meanDiff(pics[1], want, W, H, W*4), meanDiff(pics[1], base, W, H, W*4); diff > 8 || diff*3 > stale {
				t.Errorf("scrolled frame is %.1f away on average (%.1f from the unscrolled picture)", diff, stale)
			}
		}},
		{"the last video frame is followed by a lossless refresh", Options{RefreshDelay: 50 * time.Millisecond}, func(t *testing.T, l *reencodeLab) {
			const W, H = 64, 64
			l.send(newWindow(8, W, H))
			pix := picture(W, H, 2)
			l.send(rgbPacket(8, 0, 0, W, H, pix, 5, nil))
			if d := l.recvDraw(); d.coding != "h264" {
				t.Fatal(d.coding)
			}
			d := l.recvDraw()
			if d.coding != "rgb32" || d.w != W || d.h != H || optStr(d, "rgb_format") != "BGRX" || !bytes.Equal(d.data, pix) {
				t.Fatalf("refresh: %s %dx%d %v", d.coding, d.w, d.h, d.opts)
			}
			if l.re.Stats.Refreshes.Load() != 1 {
				t.Fatal("refresh not counted")
			}
		}},
		{"the client's bytes reach the server untouched", Options{}, func(t *testing.T, l *reencodeLab) {
			nc, _ := l.re.Relay()
			msg := []byte("P\x00\x00\x00\x00\x00\x00\x05hello")
			if _, err := nc.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			l.srvNet.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(l.srvNet, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("server got %q, %v", got, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newReencodeLab(t, w, tc.opts)) })
	}
}

// TestReencodeWithoutWorker: with the worker gone, every draw goes as
// rgb and the client keeps drawing; once it is back, a new stream
// starts with a keyframe.
func TestReencodeWithoutWorker(t *testing.T) {
	w := startEncoder(t)
	l := newReencodeLab(t, w, Options{})
	const W, H = 64, 64
	l.send(newWindow(1, W, H))
	l.send(rgbPacket(1, 0, 0, W, H, picture(W, H, 0), 1, nil))
	if d := l.recvDraw(); d.coding != "h264" {
		t.Fatal(d.coding)
	}
	w.Kill()
	for k := range 5 {
		pix := picture(W, H, k)
		l.send(rgbPacket(1, 0, 0, W, H, pix, int64(2+k), nil))
		d := l.recvDraw()
		if d.coding != "rgb24" || !bytes.Equal(d.data, pix) {
			t.Fatalf("frame %d without the worker: %s", k, d.coding)
		}
	}
	w.Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for seq := int64(10); ; seq++ {
		l.send(rgbPacket(1, 0, 0, W, H, picture(W, H, int(seq)), seq, nil))
		d := l.recvDraw()
		if d.coding == "h264" {
			if optInt(d, "frame") != 0 || !isKeyframe(d.data) {
				t.Fatalf("resumed stream starts at frame %d (keyframe %v)", optInt(d, "frame"), isKeyframe(d.data))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("re-encoding did not resume with the worker back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if l.re.Stats.Rgb.Load() < 5 || l.re.Stats.Failures.Load() == 0 {
		t.Fatalf("counters: rgb %d failures %d", l.re.Stats.Rgb.Load(), l.re.Stats.Failures.Load())
	}
}

// TestReencodeRefused: past the pool's limit a window's draws go as rgb,
// and it is not asked again for every frame.
func TestReencodeRefused(t *testing.T) {
	w := startEncoder(t, "--max-cpu=1")
	l := newReencodeLab(t, w, Options{RetryRefused: time.Hour})
	for wid := int64(1); wid <= 2; wid++ {
		l.send(newWindow(wid, 64, 64))
	}
	l.send(rgbPacket(1, 0, 0, 64, 64, picture(64, 64, 0), 1, nil))
	if d := l.recvDraw(); d.coding != "h264" {
		t.Fatal(d.coding)
	}
	for k := range 4 {
		l.send(rgbPacket(2, 0, 0, 64, 64, picture(64, 64, k), int64(2+k), nil))
		if d := l.recvDraw(); d.coding != "rgb24" {
			t.Fatalf("second window, frame %d: %s", k, d.coding)
		}
	}
	if n := l.re.Stats.Refused.Load(); n != 1 {
		t.Fatalf("asked the pool %d times", n)
	}
}

func TestParseDraw(t *testing.T) {
	ok := conn.Packet{"draw", int64(1), int64(2), int64(3), int64(4), int64(5), []byte("rgb32"), make([]byte, 80), int64(9), int64(16),
		value.Dict{{Key: "rgb_format", Value: []byte("BGRX")}}}
	with := func(i int, v any) conn.Packet {
		p := append(conn.Packet(nil), ok...)
		p[i] = v
		return p
	}
	tests := []struct {
		name string
		p    conn.Packet
		err  bool
	}{
		{"a 3.1 rgb32 draw", ok, false},
		{"short", ok[:9], true},
		{"not a draw", with(0, "cursor"), true},
		{"negative x", with(2, int64(-1)), true},
		{"zero width", with(4, int64(0)), true},
		{"huge height", with(5, int64(1<<20)), true},
		{"text wid", with(1, "1"), true},
		{"list data", with(7, []any{}), true},
		{"negative stride", with(9, int64(-4)), true},
		{"options not a dict", with(10, int64(1)), true},
		{"no options", ok[:10], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseDraw(tc.p)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (d.wid != 1 || d.x != 2 || d.h != 5 || d.rowstride != 16) {
				t.Fatalf("%+v", d)
			}
		})
	}
	d, _ := parseDraw(ok)
	if f, err := d.rgbFormat(); err != nil || f != codec.BGRX {
		t.Fatalf("format %v %v", f, err)
	}
	if _, _, err := d.rgbPixels(codec.BGRX); err != nil {
		t.Fatal(err)
	}
	d.data = d.data[:60]
	if _, _, err := d.rgbPixels(codec.BGRX); err == nil {
		t.Fatal("short pixels accepted")
	}
}

func TestBlitFormats(t *testing.T) {
	for _, tc := range []struct {
		format string
		src    []byte
	}{
		{"BGRX", []byte{1, 2, 3, 0}}, {"BGRA", []byte{1, 2, 3, 9}},
		{"RGBX", []byte{3, 2, 1, 0}}, {"RGBA", []byte{3, 2, 1, 7}},
		{"BGR", []byte{1, 2, 3}}, {"RGB", []byte{3, 2, 1}},
		{"", []byte{3, 2, 1}}, // rgb24 without rgb_format: RGB
	} {
		t.Run(tc.format, func(t *testing.T) {
			// 3.1 names depth-24 windows rgb24 whatever their pixels.
			d := draw{coding: "rgb24", opts: value.Dict{{Key: "rgb_format", Value: tc.format}}}
			if tc.format == "" {
				d.opts = nil
			}
			f, err := d.rgbFormat()
			if err != nil {
				t.Fatal(err)
			}
			dst := make([]byte, 3*4*2)
			blit(dst, 3*4, 1, 1, tc.src, len(tc.src), 1, 1, f)
			if got := dst[3*4+4 : 3*4+7]; !bytes.Equal(got, []byte{1, 2, 3}) {
				t.Fatalf("BGR bytes %v", got)
			}
			if !bytes.Equal(dst[:3*4], make([]byte, 12)) {
				t.Fatal("wrote outside the region")
			}
		})
	}
}

func TestApplyScrolls(t *testing.T) {
	const w, h = 4, 4
	img := make([]byte, w*h*4)
	for i := range w * h {
		img[i*4] = byte(i)
	}
	at := func(x, y int) byte { return img[(y*w+x)*4] }
	applyScrolls(img, make([]byte, len(img)), w, h, []scroll{
		{0, 1, 4, 3, 0, -1},  // rows 1..3 up by one
		{0, 0, 2, 1, 10, 10}, // entirely outside: ignored
		{2, 0, 4, 4, 1, 0},   // clipped at the right edge
	})
	if at(0, 0) != 4 || at(0, 2) != 12 || at(3, 0) != 2 || at(3, 3) != 14 {
		t.Fatalf("got %v", img)
	}
}

func FuzzParseDraw(f *testing.F) {
	seed, _ := conn.Encode(nil, 0, conn.Packet{"draw", int64(1), int64(0), int64(0), int64(2), int64(2), "rgb32",
		make([]byte, 16), int64(1), int64(8), value.Dict{{Key: "rgb_format", Value: "BGRX"}}})
	f.Add(seed)
	sc, _ := conn.Encode(nil, 0, conn.Packet{"draw", int64(1), int64(0), int64(0), int64(2), int64(2), "scroll",
		[]any{[]any{int64(0), int64(1), int64(2), int64(1), int64(0), int64(-1)}}, int64(1), int64(0), value.Dict{}})
	f.Add(sc)
	f.Fuzz(func(t *testing.T, payload []byte) {
		fuzzcheck.Bounded(t, 16<<20, func() {
			p, err := conn.Decode(0, payload)
			if err != nil {
				return
			}
			if len(p) > 7 {
				if moves, err := parseScrolls(p[7]); err == nil {
					img := make([]byte, 8*8*4)
					applyScrolls(img, make([]byte, len(img)), 8, 8, moves)
				}
			}
			d, err := parseDraw(p)
			if err != nil {
				return
			}
			d.transformed()
			f, err := d.rgbFormat()
			if err != nil {
				return
			}
			pix, stride, err := d.rgbPixels(f)
			if err != nil || d.w > 64 || d.h > 64 {
				return
			}
			if d.x > 64 || d.y > 64 {
				return
			}
			dst := make([]byte, (d.x+d.w)*4*(d.y+d.h))
			blit(dst, (d.x+d.w)*4, d.x, d.y, pix, stride, d.w, d.h, f)
		})
	})
}

// TestRawFramesHello: asked for raw frames, the hello a 3.1 server gets
// names rgb only, uncompressed, with no scrolling or deltas; without,
// the client's encodings go through.
func TestRawFramesHello(t *testing.T) {
	client := value.Dict{{Key: "encodings", Value: []any{"h264", "png", "rgb"}}, {Key: "encoding", Value: "auto"},
		{Key: "encoding.rgb_lz4", Value: true}, {Key: "lz4", Value: true}, {Key: "encoding.scrolling", Value: true}}
	for _, raw := range []bool{false, true} {
		c := caps.New(relay.ServerHello(client, relay.ServerHelloOptions{Form: caps.Flat, RawFrames: raw}))
		got := map[string]any{"encodings": c.Strings("encodings"), "encoding": c.Str("encoding", ""),
			"rgb_lz4": c.Bool("encoding.rgb_lz4", true), "scrolling": c.Bool("encoding.scrolling", true),
			"lz4": c.Bool("lz4", false), "core": c.Strings("encodings.core")}
		want := map[string]any{"encodings": []string{"h264", "png", "rgb"}, "encoding": "auto", "rgb_lz4": true,
			"scrolling": true, "lz4": true, "core": []string(nil)}
		if raw {
			want = map[string]any{"encodings": []string{"rgb"}, "encoding": "rgb", "rgb_lz4": false,
				"scrolling": false, "lz4": true, "core": []string{"rgb24", "rgb32"}}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("raw=%v: got %v, want %v", raw, got, want)
		}
	}
}
