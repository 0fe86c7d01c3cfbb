// SPDX-License-Identifier: GPL-2.0-or-later

package reencode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/internal/encodelab"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
	"github.com/xpra-proxy/xpra-proxy/relay"
)

// The tests below run the whole relay path (as the relay worker's
// Session.relay does it: hello, Connect, ForServer, relay legs) between
// a fake client and a fake server built from PROXY.md §5 and
// PROTOCOL.md, with a real encoder worker, and decode what the client
// gets with ffmpeg.

// serverStyle is what a fake server of one xpra generation sends.
type serverStyle struct {
	name   string
	client value.Dict    // the client's hello (its generation matches)
	server value.Dict    // the server's hello
	enc    wire.Encoding // the packet encoder both sides use
	draw   string        // the draw packet's name
	proxy  bool          // the version sends proxy frames
	six    bool          // 6.x framing: main chunks lz4-compressed, flush bit set
	raw31  bool          // a 3.1 client: the raw rgb path
	check  func(*testing.T, value.Dict)
}

var codecsCaps = []any{"h264", "png", "jpeg", "rgb24", "rgb32"}

func styles() []serverStyle {
	flat4 := value.Dict{{Key: "version", Value: "4.4.6"}, {Key: "rencodeplus", Value: true}, {Key: "encoders", Value: []any{"rencodeplus"}},
		{Key: "encodings", Value: codecsCaps}, {Key: "encodings.core", Value: codecsCaps}, {Key: "encoding", Value: "auto"},
		{Key: "full_csc_modes", Value: value.Dict{{Key: "h264", Value: []any{"YUV420P"}}}}}
	nested6 := func(v string) value.Dict {
		return value.Dict{{Key: "version", Value: v}, {Key: "rencodeplus", Value: true}, {Key: "encoders", Value: []any{"rencodeplus"}},
			{Key: "encodings", Value: value.Dict{{Key: "", Value: codecsCaps}, {Key: "core", Value: codecsCaps}}},
			{Key: "encoding", Value: value.Dict{{Key: "", Value: "auto"}, {Key: "rgb_lz4", Value: true}}},
			{Key: "full_csc_modes", Value: value.Dict{{Key: "h264", Value: []any{"YUV420P"}}}}}
	}
	return []serverStyle{
		{name: "4.4 server, flat caps", client: flat4, server: value.Dict{{Key: "version", Value: "4.4.6"}, {Key: "rencodeplus", Value: true},
			{Key: "encodings", Value: codecsCaps}}, enc: wire.RencodePlus, draw: "draw", proxy: true},
		{name: "6.3 server, nested caps", client: nested6("6.3"), server: value.Dict{{Key: "version", Value: "6.3"}, {Key: "rencodeplus", Value: true},
			{Key: "encodings", Value: value.Dict{{Key: "", Value: codecsCaps}}}, {Key: "network", Value: value.Dict{{Key: "pings", Value: true}}}},
			enc: wire.RencodePlus, draw: "draw", proxy: true, six: true},
		{name: "6.3 server, 6.x packet names", client: nested6("6.3"), server: value.Dict{{Key: "version", Value: "6.3.1"}, {Key: "rencodeplus", Value: true}},
			enc: wire.RencodePlus, draw: "window-draw", proxy: true, six: true},
		// 6.4 dropped the proxy encoder: it never marks frames, and the
		// relay runs without its filter (a marked frame would pass as is).
		{name: "6.5 server", client: nested6("6.5"), server: value.Dict{{Key: "version", Value: "6.5"}, {Key: "rencodeplus", Value: true}},
			enc: wire.RencodePlus, draw: "draw"},
		// A 3.1 client keeps the raw path: no proxy keys (3.1.3 cannot
		// parse them), rgb asked for.
		{name: "3.1 client", client: value.Dict{{Key: "version", Value: "3.1.3"}, {Key: "rencode", Value: true}, {Key: "encodings", Value: codecsCaps},
			{Key: "encodings.core", Value: codecsCaps}}, server: value.Dict{{Key: "version", Value: "3.1.3"}, {Key: "rencode", Value: true}},
			enc: wire.Rencode, draw: "draw", raw31: true},
	}
}

// proxyRig is a relay between a fake client and a fake server.
type proxyRig struct {
	t      *testing.T
	style  serverStyle
	server *conn.Conn
	client *conn.Conn
	hello  value.Dict // what the worker sent the server
	done   chan error
}

func newProxyRig(t *testing.T, w *encodelab.Worker, st serverStyle) *proxyRig {
	t.Helper()
	fdsC, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := fileConn(fdsC[0], "client")
	cw, _ := fileConn(fdsC[1], "client-worker")
	fdsS, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sv, _ := fileConn(fdsS[0], "server")
	sw, _ := fileConn(fdsS[1], "server-worker")
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	client := conn.New(cw)
	ch := caps.ParseHello(st.client)
	if err := client.ApplyPeerHello(ch, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rig := &proxyRig{t: t, style: st, server: conn.New(sv), client: conn.New(cl), done: make(chan error, 1)}
	go func() { rig.done <- relayPath(ctx, w, client, ch, st.client, cw, sw, log) }()
	t.Cleanup(func() {
		cancel()
		cl.Close()
		sv.Close()
		select {
		case <-rig.done:
		case <-time.After(10 * time.Second):
			t.Error("the relay did not end")
		}
	})
	if err := rig.server.SetEncoding(st.enc); err != nil {
		t.Fatal(err)
	}
	// The worker's hello, as the server reads it.
	sv.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := rig.server.ReadPacket()
	if err != nil || p[0] != packet.Hello {
		t.Fatalf("server got %v, %v", p, err)
	}
	rig.hello, _ = p[1].(value.Dict)
	if err := rig.server.WritePacket(conn.Packet{packet.Hello, st.server}); err != nil {
		t.Fatal(err)
	}
	cl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if raws, f := rig.recvFrames(); f.Header.Index != 0 || len(raws) != 0 {
		t.Fatal("client: no hello")
	}
	return rig
}

// relayPath is the relay worker's path for a connection whose client is
// client (its hello, parsed: ch, and as sent: hello) once the server is
// connected (snc), with the parts it takes from this package: what
// worker's Session.relay does without a server challenge. It returns when
// the relay ends.
func relayPath(ctx context.Context, w *encodelab.Worker, client *conn.Conn, ch caps.Hello, hello value.Dict, cnc, snc net.Conn, log *slog.Logger) error {
	defer snc.Close()
	sc := conn.New(snc)
	if client.Encoding() == wire.RencodePlus {
		_ = sc.SetEncoding(wire.RencodePlus)
	}
	form := ch.Form()
	opts := relay.ServerHelloOptions{Username: ch.Username, Digests: digest.Supported(), SaltDigests: digest.SupportedSalt(),
		UID: os.Getuid(), GID: os.Getgid(), Form: form}
	enc, encOpts := Connect(w.Socket, w.UID, form, client.Encoding(), ch.Caps, log)
	if enc != nil {
		defer enc.Close()
		opts.RawFrames, opts.ProxyVideo = encOpts.Mode == RawFrames, encOpts.ProxyCaps
	}
	if err := sc.WritePacket(conn.Packet{packet.Hello, relay.ServerHello(hello, opts)}); err != nil {
		return err
	}
	p, err := sc.ReadPacket()
	if err != nil {
		return err
	}
	d, ok := p[1].(value.Dict)
	if p[0] != packet.Hello || !ok {
		return fmt.Errorf("server sent %v", p[0])
	}
	sh := caps.ParseHello(d)
	if err := sc.ApplyPeerHello(sh, 0); err != nil {
		return err
	}
	if err := client.WritePacket(conn.Packet{packet.Hello, relay.ClientHello(d, form, os.Getuid(), os.Getgid())}); err != nil {
		return err
	}
	cl := relay.NewLeg("client", cnc, client)
	cl.Form = form
	cl.EnablePings(ch.Caps)
	serverNet, serverConn, re := ForServer(enc, snc, sc, sh, encOpts, log)
	if re != nil {
		defer re.Close()
	}
	server := relay.NewLeg("server", serverNet, serverConn)
	server.Form = sh.Form()
	server.EnablePings(sh.Caps)
	relay.New(cl, server, log).Run(ctx)
	return nil
}

// sendFrames writes a packet as the server would (raw chunk for the
// pixels) and returns the exact frames.
func (r *proxyRig) send(p conn.Packet) []wire.Frame {
	r.t.Helper()
	frames, err := packetFrames(nil, r.style.enc, p)
	if err != nil {
		r.t.Fatal(err)
	}
	if r.style.six {
		m := &frames[len(frames)-1]
		z, level, err := compress.Compress(compress.LZ4, 1, m.Payload)
		if err != nil {
			r.t.Fatal(err)
		}
		m.Payload, m.Header.Level, m.Header.Size = z, level, uint32(len(z))
		m.Header.Flags |= wire.FlagFlush
	}
	if err := r.server.WriteFrames(frames...); err != nil {
		r.t.Fatal(err)
	}
	return frames
}

// recvFrames reads the frames of the client's next packet.
func (r *proxyRig) recvFrames() ([]wire.Frame, wire.Frame) {
	r.t.Helper()
	rd := r.client.Reader()
	var raws []wire.Frame
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			r.t.Fatalf("client: %v", err)
		}
		f.Payload = bytes.Clone(f.Payload)
		if f.Header.Index == 0 {
			return raws, f
		}
		raws = append(raws, f)
	}
}

// recvDraw reads the client's next draw (skipping the relay's pings),
// with the frames it came in.
func (r *proxyRig) recvDraw() (draw, []wire.Frame) {
	r.t.Helper()
	for {
		raws, f := r.recvFrames()
		p, err := conn.DecodeFrames(raws, f, wire.AbsMaxSize, packet.Aliases{})
		if err != nil {
			r.t.Fatal(err)
		}
		if name, _ := value.AsString(p[0]); name != "draw" && name != "window-draw" {
			continue
		}
		if name, _ := value.AsString(p[0]); name != r.style.draw {
			r.t.Fatalf("draw came as %q, sent as %q", name, r.style.draw)
		}
		d, err := parseDraw(p)
		if err != nil {
			r.t.Fatal(err)
		}
		return d, append(raws, f)
	}
}

// proxyFrame is a draw as a 4.x-6.3 server's proxy encoder sends it:
// raw pixels labelled h264, their layout in the options.
func proxyFrame(name string, wid int64, w, h int, pix []byte, stride int, seq int64, frame int) conn.Packet {
	opts := value.Dict{{Key: "proxy", Value: true}, {Key: "frame", Value: int64(frame)}, {Key: "pts", Value: int64(frame * 40)},
		{Key: "timestamp", Value: int64(1700000000000 + frame*40)}, {Key: "rowstride", Value: int64(stride)}, {Key: "depth", Value: int64(24)},
		{Key: "rgb_format", Value: "BGRX"}, {Key: "options", Value: value.Dict{{Key: "quality", Value: int64(80)}, {Key: "speed", Value: int64(60)}}}}
	if frame == 0 {
		opts = append(opts, value.Item{Key: "dst_formats", Value: []any{"YUV420P"}})
	}
	return conn.Packet{name, wid, int64(0), int64(0), int64(w), int64(h), "h264", pix, seq, int64(0), opts}
}

// padded is a picture with rows stride bytes apart (as X images are).
func padded(pix []byte, w, h, stride int) []byte {
	out := make([]byte, stride*h)
	for y := range h {
		copy(out[y*stride:], pix[y*w*4:(y+1)*w*4])
	}
	return out
}

func sameWire(a, b []wire.Frame) bool {
	return slices.EqualFunc(a, b, func(x, y wire.Frame) bool {
		return x.Header == y.Header && bytes.Equal(x.Payload, y.Payload)
	})
}

// checkProxyHello checks the keys as 4.x-6.3 parse them
// (encodings.py parse_encoding_caps, parse_proxy_video): flat
// "encoding.*" keys at the top level, str keys throughout, specs with
// the two colourspace attributes and only VideoSpec attributes.
func checkProxyHello(t *testing.T, hello value.Dict) {
	t.Helper()
	videoSpecAttrs := map[string]bool{"codec_class": true, "codec_type": true, "quality": true, "speed": true, "size_efficiency": true,
		"setup_cost": true, "cpu_cost": true, "gpu_cost": true, "min_w": true, "min_h": true, "max_w": true, "max_h": true,
		"can_scale": true, "score_boost": true, "width_mask": true, "height_mask": true, "max_instances": true, "encoding": true,
		"input_colorspace": true, "output_colorspaces": true, "has_lossless_mode": true}
	pv, ok := hello.Get("encoding.proxy.video")
	if b, isBool := pv.(bool); !ok || !isBool || !b {
		t.Fatalf("encoding.proxy.video = %#v", pv)
	}
	v, _ := hello.Get("encoding.proxy.video.encodings")
	encs, ok := v.(value.Dict)
	if !ok || len(encs) == 0 {
		t.Fatalf("encoding.proxy.video.encodings = %#v", v)
	}
	for _, e := range encs {
		if k, isStr := e.Key.(string); !isStr || k != "h264" {
			t.Fatalf("encoding key %#v", e.Key)
		}
		cs, ok := e.Value.(value.Dict)
		if !ok || len(cs) == 0 {
			t.Fatalf("colourspaces %#v", e.Value)
		}
		for _, c := range cs {
			name, isStr := c.Key.(string)
			if !isStr || !slices.Contains([]string{"BGRX", "RGBX"}, name) {
				t.Fatalf("colourspace key %#v", c.Key)
			}
			specs, ok := c.Value.([]any)
			if !ok || len(specs) == 0 {
				t.Fatalf("specs %#v", c.Value)
			}
			for _, s := range specs {
				spec, ok := s.(value.Dict)
				if !ok {
					t.Fatalf("spec %#v", s)
				}
				for _, it := range spec {
					if k, isStr := it.Key.(string); !isStr || !videoSpecAttrs[k] {
						t.Fatalf("spec key %#v is not a VideoSpec attribute", it.Key)
					}
				}
				in, _ := spec.Get("input_colorspace")
				out, _ := spec.Get("output_colorspaces")
				if s, isStr := in.(string); !isStr || s != name {
					t.Fatalf("input_colorspace %#v under %s", in, name)
				}
				if l, ok := out.([]any); !ok || len(l) == 0 || l[0] != "YUV420P" {
					t.Fatalf("output_colorspaces %#v", out)
				}
				for _, k := range []string{"score_boost", "max_instances", "width_mask", "height_mask", "max_w"} {
					if n, ok := spec.Get(k); !ok {
						t.Fatalf("spec without %s", k)
					} else if _, isInt := n.(int64); !isInt {
						t.Fatalf("%s is %T", k, n)
					}
				}
			}
		}
	}
	// The client's own encodings go through: the server picks h264 for
	// the client and finds the proxy encoder for it.
	if c := caps.New(hello); !slices.Contains(c.Strings("encodings"), "h264") {
		t.Fatalf("encodings %v", c.Strings("encodings"))
	}
}

// TestReencodeProxyFrames: per server generation, what the worker asks
// for and what the client gets for proxy frames, ordinary draws, a
// resize and a lost window.
func TestReencodeProxyFrames(t *testing.T) {
	w := startEncoder(t)
	status := client.New(w.Socket, client.Options{ServerUID: w.UID, Timeout: time.Second, Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(status.Close)
	contexts := func() int {
		b, err := status.Status()
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ Contexts int }
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		return st.Contexts
	}
	for _, st := range styles() {
		t.Run(st.name, func(t *testing.T) {
			rig := newProxyRig(t, w, st)
			if st.raw31 {
				c := caps.New(rig.hello)
				if _, has := rig.hello.Get("encoding.proxy.video"); has || !slices.Equal(c.Strings("encodings"), []string{"rgb"}) {
					t.Fatalf("3.1 hello: proxy video %v, encodings %v", has, c.Strings("encodings"))
				}
				return
			}
			checkProxyHello(t, rig.hello)
			const W, H, stride = 128, 96, 128*4 + 64
			rig.send(conn.Packet{"new-window", int64(1), int64(0), int64(0), int64(W), int64(H), value.Dict{}, value.Dict{}})
			if !st.proxy {
				// No filter: even a marked frame passes byte for byte.
				sent := rig.send(proxyFrame(st.draw, 1, W, H, padded(picture(W, H, 0), W, H, stride), stride, 5, 0))
				if _, got := rig.recvDraw(); !sameWire(got, sent) {
					t.Fatal("a 6.4+ session's draw was changed")
				}
				return
			}
			var stream []byte
			var want [][]byte
			for k := range 4 {
				pix := picture(W, H, k*8)
				want = append(want, pix)
				rig.send(proxyFrame(st.draw, 1, W, H, padded(pix, W, H, stride), stride, int64(100+k), k))
				d, got := rig.recvDraw()
				if flush := got[len(got)-1].Header.Flags&wire.FlagFlush != 0; flush != st.six {
					t.Fatalf("frame %d: flush bit %v", k, flush)
				}
				if e := got[len(got)-1].Header.Encoding(); e != st.enc {
					t.Fatalf("frame %d encoded with %v, the client reads %v", k, e, st.enc)
				}
				if d.coding != "h264" || d.x != 0 || d.y != 0 || d.w != W || d.h != H || d.rowstride != 0 {
					t.Fatalf("frame %d: %s %d,%d %dx%d stride %d", k, d.coding, d.x, d.y, d.w, d.h, d.rowstride)
				}
				if seq, _ := value.AsInt(d.seq); seq != int64(100+k) {
					t.Fatalf("frame %d came with sequence %v", k, d.seq)
				}
				wantType := map[bool]string{true: "IDR", false: "P"}[k == 0]
				if optStr(d, "csc") != "YUV420P" || optInt(d, "frame") != int64(k) || optStr(d, "type") != wantType || optInt(d, "pts") != int64(k*40) {
					t.Fatalf("frame %d options %v", k, d.opts)
				}
				for _, key := range []string{"proxy", "rgb_format", "rowstride", "options", "dst_formats", "depth", "timestamp"} {
					if _, has := d.opt(key); has {
						t.Fatalf("frame %d still has %q: %v", k, key, d.opts)
					}
				}
				if isKeyframe(d.data) != (k == 0) {
					t.Fatalf("frame %d keyframe=%v", k, isKeyframe(d.data))
				}
				stream = append(stream, d.data...)
				// Ordinary draws in between pass byte for byte.
				for _, p := range []conn.Packet{
					{st.draw, int64(1), int64(8), int64(8), int64(16), int64(16), "png", []byte("\x89PNG not really"), int64(200 + k), int64(0), value.Dict{}},
					{st.draw, int64(1), int64(0), int64(0), int64(W), int64(H), "rgb24", picture(W, H, k), int64(300 + k), int64(W * 4),
						value.Dict{{Key: "rgb_format", Value: "BGRX"}}},
				} {
					sent := rig.send(p)
					if _, got := rig.recvDraw(); !sameWire(got, sent) {
						t.Fatalf("%s draw changed on the way", p[6])
					}
				}
			}
			for k, got := range decodeH264(t, stream, W, H) {
				if diff := meanDiff(got, want[k], W, H, W*4); diff > 4 {
					t.Errorf("frame %d decodes %.1f away from the window on average", k, diff)
				}
			}
			// A resize: the server starts a new stream at the new size,
			// so does the relay.
			const W2, H2 = 160, 120
			rig.send(conn.Packet{"window-resized", int64(1), int64(W2), int64(H2)})
			pix := picture(W2, H2, 3)
			rig.send(proxyFrame(st.draw, 1, W2, H2, pix, W2*4, 400, 0))
			d, _ := rig.recvDraw()
			if d.coding != "h264" || d.w != W2 || d.h != H2 || optInt(d, "frame") != 0 || !isKeyframe(d.data) {
				t.Fatalf("after resize: %s %dx%d %v", d.coding, d.w, d.h, d.opts)
			}
			// Colour edges blur in 4:2:0: another picture is far worse.
			got := decodeH264(t, d.data, W2, H2)[0]
			if diff, other := meanDiff(got, pix, W2, H2, W2*4), meanDiff(got, picture(W2, H2, 40), W2, H2, W2*4); diff > 8 || diff*3 > other {
				t.Errorf("resized frame decodes %.1f away (%.1f from another picture)", diff, other)
			}
			if n := contexts(); n != 1 {
				t.Fatalf("%d contexts open", n)
			}
			lost := "lost-window"
			if st.draw == "window-draw" {
				lost = "window-destroy" // 6.x's name
			}
			rig.send(conn.Packet{lost, int64(1)})
			deadline := time.Now().Add(5 * time.Second)
			for contexts() != 0 {
				if time.Now().After(deadline) {
					t.Fatal("the lost window's context stayed open")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestReencodeProxyWithoutWorker: the encoder dies mid-stream; the
// proxy frames keep reaching the client as rgb (never as raw pixels
// labelled h264), and once it is back a new stream starts.
func TestReencodeProxyWithoutWorker(t *testing.T) {
	w := startEncoder(t)
	st := styles()[1]
	rig := newProxyRig(t, w, st)
	const W, H = 64, 64
	rig.send(conn.Packet{"new-window", int64(1), int64(0), int64(0), int64(W), int64(H), value.Dict{}, value.Dict{}})
	frame := 0
	send := func(seq int64) (draw, []byte) {
		pix := picture(W, H, int(seq))
		rig.send(proxyFrame(st.draw, 1, W, H, pix, W*4, seq, frame))
		frame++
		d, _ := rig.recvDraw()
		if s, _ := value.AsInt(d.seq); s != seq {
			t.Fatalf("sequence %v, sent %d", d.seq, seq)
		}
		return d, pix
	}
	if d, _ := send(1); d.coding != "h264" {
		t.Fatal(d.coding)
	}
	w.Kill()
	for seq := int64(2); seq < 7; seq++ {
		d, pix := send(seq)
		if d.coding != "rgb32" || optStr(d, "rgb_format") != "BGRX" || d.rowstride != W*4 || !bytes.Equal(d.data, pix) {
			t.Fatalf("frame %d without the worker: %s %v", seq, d.coding, d.opts)
		}
		if _, has := d.opt("proxy"); has {
			t.Fatal("fallback still marked proxy")
		}
	}
	w.Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for seq := int64(10); ; seq++ {
		d, _ := send(seq)
		if d.coding == "h264" {
			if optInt(d, "frame") != 0 || !isKeyframe(d.data) {
				t.Fatalf("resumed stream starts at frame %d (keyframe %v)", optInt(d, "frame"), isKeyframe(d.data))
			}
			break
		}
		if d.coding != "rgb32" {
			t.Fatal(d.coding)
		}
		if time.Now().After(deadline) {
			t.Fatal("re-encoding did not resume with the worker back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestProxyVideoServer: which server versions send proxy frames.
func TestProxyVideoServer(t *testing.T) {
	for v, want := range map[string]bool{"3.1.3": false, "4.0": true, "4.4.6": true, "5.0.9": true, "6.0": true, "6.3": true,
		"6.3.1": true, "6.4": false, "6.5.3": false, "7.0": false, "": false, "six": false, "6": false} {
		if got := ProxyVideoServer(caps.ParseHello(value.Dict{{Key: "version", Value: v}})); got != want {
			t.Errorf("%q: %v, want %v", v, got, want)
		}
	}
}

// TestProxyVideoCapsEncoded: the keys survive rencodeplus as str (what
// 4.3+ needs; 3.1.3's failure was bytes) in both hello forms.
func TestProxyVideoCapsEncoded(t *testing.T) {
	pc := ProxyVideoCaps(encproto.HelloReply{MaxWidth: 4096, MaxHeight: 2160})
	for _, form := range []caps.Form{caps.Flat, caps.Nested} {
		ch := value.Dict{{Key: "version", Value: "6.3"}, {Key: "encodings", Value: codecsCaps}}
		h := relay.ServerHello(ch, relay.ServerHelloOptions{Form: form, ProxyVideo: pc})
		b, err := conn.Encode(nil, wire.RencodePlus, conn.Packet{"hello", h})
		if err != nil {
			t.Fatal(err)
		}
		p, err := conn.Decode(wire.RencodePlus, b)
		if err != nil {
			t.Fatal(err)
		}
		d := p[1].(value.Dict)
		checkProxyHello(t, d)
		v, _ := d.Get("encoding.proxy.video.encodings")
		spec := v.(value.Dict)[0].Value.(value.Dict)[0].Value.([]any)[0].(value.Dict)
		if mw, _ := spec.Get("max_w"); mw != int64(4096) {
			t.Fatalf("max_w %v", mw)
		}
	}
}

func FuzzProxyPicture(f *testing.F) {
	seed, _ := conn.Encode(nil, wire.RencodePlus, proxyFrame("draw", 1, 4, 4, make([]byte, 80), 20, 1, 0))
	f.Add(seed)
	scaled := proxyFrame("window-draw", 1, 8, 8, make([]byte, 64), 16, 2, 3)
	scaled[10] = append(scaled[10].(value.Dict), value.Item{Key: "scaled_size", Value: []any{int64(4), int64(4)}})
	seed, _ = conn.Encode(nil, wire.RencodePlus, scaled)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, payload []byte) {
		fuzzcheck.Bounded(t, 16<<20, func() {
			parseVersion(string(payload))
			p, err := conn.Decode(wire.RencodePlus, payload)
			if err != nil {
				return
			}
			d, err := parseDraw(p)
			if err != nil {
				return
			}
			truthy(optOr(d, "proxy"))
			optPercent(d, "quality")
			pic, err := proxyPicture(d)
			if err != nil || pic.w > 64 || pic.h > 64 {
				return
			}
			dst := make([]byte, pic.w*4*pic.h)
			blit(dst, pic.w*4, 0, 0, pic.pix, pic.stride, pic.w, pic.h, pic.pf)
		})
	})
}

// TestReencodeProxyRefused: past the pool's limit, and for sizes the
// pool cannot take, proxy frames reach the client as rgb at once.
func TestReencodeProxyRefused(t *testing.T) {
	w := startEncoder(t, "--max-cpu=1")
	st := styles()[0]
	rig := newProxyRig(t, w, st)
	for wid := int64(1); wid <= 3; wid++ {
		rig.send(conn.Packet{"new-window", wid, int64(0), int64(0), int64(64), int64(64), value.Dict{}, value.Dict{}})
	}
	rig.send(proxyFrame(st.draw, 1, 64, 64, picture(64, 64, 0), 64*4, 1, 0))
	if d, _ := rig.recvDraw(); d.coding != "h264" {
		t.Fatal(d.coding)
	}
	for k := range 3 {
		pix := picture(64, 64, k)
		rig.send(proxyFrame(st.draw, 2, 64, 64, pix, 64*4, int64(10+k), k))
		if d, _ := rig.recvDraw(); d.coding != "rgb32" || !bytes.Equal(d.data, pix) || optStr(d, "rgb_format") != "BGRX" {
			t.Fatalf("second window, frame %d: %s %v", k, d.coding, d.opts)
		}
	}
	// An odd size (a server without our width mask): rgb, not a broken stream.
	pix := picture(63, 49, 1)
	rig.send(proxyFrame(st.draw, 3, 63, 49, pix, 63*4, 20, 0))
	if d, _ := rig.recvDraw(); d.coding != "rgb32" || d.w != 63 || d.h != 49 || !bytes.Equal(d.data, pix) {
		t.Fatalf("odd size: %s %dx%d", d.coding, d.w, d.h)
	}
}
