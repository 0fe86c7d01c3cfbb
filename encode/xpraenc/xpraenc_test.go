// SPDX-License-Identifier: GPL-2.0-or-later

package xpraenc

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// crop is the top-left w×h of img.
func crop(img frametest.RGB, w, h int) frametest.RGB {
	out := frametest.RGB{W: w, H: h, Pix: make([]byte, 0, w*h*3)}
	for y := 0; y < h; y++ {
		out.Pix = append(out.Pix, img.Pix[y*img.W*3:(y*img.W+w)*3]...)
	}
	return out
}

// videoSpecKeys are 6.x VideoSpec's fields (codecs/constants.py): the
// caller's make_spec warns on anything else.
var videoSpecKeys = map[string]bool{
	"codec_type": true, "quality": true, "speed": true, "size_efficiency": true, "setup_cost": true,
	"cpu_cost": true, "gpu_cost": true, "min_w": true, "min_h": true, "max_w": true, "max_h": true,
	"can_scale": true, "score_boost": true, "width_mask": true, "height_mask": true, "max_instances": true,
	"encoding": true, "input_colorspace": true, "output_colorspaces": true, "has_lossless_mode": true,
}

// What a 6.x server's remote codec does with the encoder: hello, specs,
// a context, changing frames sent inline (lz4 raw chunks, or lz4 pixels
// when its lz4 option is on), and H.264 back that ffmpeg decodes to the
// same pictures.
func TestCallerSession(t *testing.T) {
	f := start(t, Config{Config: server.Config{MaxWidth: 1920, MaxHeight: 1080}}, pool.Config{})
	for _, tc := range []struct {
		name          string
		format        codec.PixelFormat
		ctxW, ctxH    int
		imgW, imgH    int
		pad           int
		lz4Pixels     bool
		profile       string
		wantProfile   string
		frames, seq   int
		quality, psnr float64
	}{
		{name: "BGRX 640x360", format: codec.BGRX, ctxW: 640, ctxH: 360, imgW: 640, imgH: 360, frames: 6, seq: 7, wantProfile: "high"},
		{name: "BGRA padded stride, lz4 pixels", format: codec.BGRA, ctxW: 320, ctxH: 240, imgW: 320, imgH: 240, pad: 64, lz4Pixels: true, frames: 4, seq: 8, wantProfile: "high"},
		{name: "odd image on an even context", format: codec.BGRX, ctxW: 320, ctxH: 180, imgW: 321, imgH: 181, pad: 12, frames: 3, seq: 9, wantProfile: "high"},
		{name: "RGB rgb24 baseline", format: codec.RGB, ctxW: 200, ctxH: 120, imgW: 200, imgH: 120, pad: 8, frames: 3, seq: 10, profile: "constrained-baseline", wantProfile: "baseline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, f.path)
			hc, video := c.handshake("")
			if hc.Has("mmap") {
				t.Errorf("hello offers mmap: %v", hc.Dict())
			}
			if hc.Str("version", "") == "" {
				t.Errorf("hello without a version")
			}
			byFormat, _ := video.Get("h264")
			specs, _ := byFormat.(value.Dict).Get(tc.format.String())
			list, _ := specs.([]any)
			if len(list) != 1 {
				t.Fatalf("h264/%v specs: %v", tc.format, specs)
			}
			spec := caps.New(list[0].(value.Dict))
			for _, it := range spec.Dict() {
				if k, _ := value.AsString(it.Key); !videoSpecKeys[k] {
					t.Errorf("spec key %q is not a VideoSpec field", k)
				}
			}
			if ct := spec.Str("codec_type", ""); ct != "x264" && ct != "nvenc" || spec.Str("encoding", "") != "h264" ||
				spec.Str("input_colorspace", "") != tc.format.String() || spec.Int("max_w", 0) != 1920 || spec.Int("max_h", 0) != 1080 {
				t.Fatalf("spec %v", spec.Dict())
			}
			opts := value.Dict{{Key: "quality", Value: int64(85)}, {Key: "speed", Value: int64(70)}}
			if tc.profile != "" {
				opts = append(opts, value.Item{Key: "h264.profile", Value: tc.profile})
			}
			seq := int64(tc.seq)
			c.send("context-request", seq, spec.Str("codec_type", ""), "h264", int64(tc.ctxW), int64(tc.ctxH), tc.format.String(), opts)
			r := c.expect("context-response")
			if r[1] != seq || r[2] != true {
				t.Fatalf("context-response %v", brief(r))
			}
			stride := tc.imgW*tc.format.BytesPerPixel() + tc.pad
			var stream bytes.Buffer
			var src []frametest.RGB
			for n := 0; n < tc.frames; n++ {
				img := frametest.Synthetic(tc.imgW, tc.imgH, n)
				src = append(src, crop(img, tc.ctxW, tc.ctxH))
				meta, pix := frame(img, tc.format, stride)
				sendOpts := value.Dict{}
				if tc.lz4Pixels {
					z, _, err := compress.Compress(compress.LZ4, 1, pix)
					if err != nil {
						t.Fatal(err)
					}
					pix, sendOpts = z, value.Dict{{Key: "lz4", Value: true}}
				}
				c.send("context-compress", seq, meta, pix, value.Dict{{Key: "quality", Value: int64(85)}}, sendOpts)
				d := c.expect("context-data")
				data, _ := d[2].([]byte)
				co, ok := d[3].(value.Dict)
				if d[1] != seq || len(data) == 0 || !ok || len(d) != 5 {
					t.Fatalf("frame %d: context-data %v", n, brief(d))
				}
				o := caps.New(co)
				if o.Int("frame", -1) != int64(n) || o.Str("csc", "") != "YUV420P" || (o.Str("type", "") == "IDR") != (n == 0) {
					t.Fatalf("frame %d: client options %v", n, co)
				}
				if n == 0 && o.Str("profile", "") != tc.wantProfile {
					t.Fatalf("first frame profile %q, want %q", o.Str("profile", ""), tc.wantProfile)
				}
				stream.Write(data)
			}
			pics := frametest.Decode(t, codec.H264, stream.Bytes(), tc.ctxW, tc.ctxH)
			if len(pics) != tc.frames {
				t.Fatalf("decoded %d pictures, sent %d", len(pics), tc.frames)
			}
			for i, p := range pics {
				if q := frametest.PSNR(src[i], p); q < 30 {
					t.Errorf("frame %d: PSNR %.1f dB", i, q)
				}
			}
			// A different picture does not match: the check can fail.
			if q := frametest.PSNR(src[0], pics[len(pics)-1]); q > 25 && tc.frames > 2 {
				t.Errorf("first and last frames alike: PSNR %.1f dB", q)
			}
			c.send("context-close", seq, "encoder closed")
			// As 6.x's server: a frame for a closed context gets an error
			// reply, and the connection stays up.
			meta, pix := frame(frametest.Synthetic(tc.imgW, tc.imgH, 0), tc.format, stride)
			c.send("context-compress", seq, meta, pix, value.Dict{}, value.Dict{})
			d := c.expect("context-data")
			if e := caps.New(d[3].(value.Dict)).Str("error", ""); e == "" {
				t.Fatalf("closed context: %v", brief(d))
			}
			c.send("context-request", seq+100, "x264", "h264", int64(64), int64(64), "BGRX", value.Dict{})
			if r := c.expect("context-response"); r[2] != true {
				t.Fatalf("after close: %v", brief(r))
			}
		})
	}
}

// Refusals are context-responses, not disconnects: the caller falls
// back to its own encoders.
func TestContextRefused(t *testing.T) {
	f := start(t, Config{Config: server.Config{MaxContextsPerConn: 1}}, pool.Config{})
	c := dial(t, f.path)
	c.handshake("")
	for i, tc := range []struct {
		codecType, encoding, format string
		w, h                        int64
		ok                          bool
	}{
		{"x264", "h264", "BGRX", 64, 64, true},
		{"x264", "h264", "BGRX", 64, 64, false}, // second context on a connection of one
		{"x264", "vp9", "BGRX", 64, 64, false},
		{"x265", "h264", "BGRX", 64, 64, false},
		{"x264", "h264", "r210", 64, 64, false},
		{"x264", "h264", "BGRX", 63, 64, false}, // odd width
	} {
		c.send("context-request", int64(i), tc.codecType, tc.encoding, tc.w, tc.h, tc.format, value.Dict{})
		r := c.expect("context-response")
		if r[1] != int64(i) || r[2] != tc.ok || (!tc.ok && r[3] == "") {
			t.Errorf("case %d %+v: %v", i, tc, brief(r))
		}
		if i == 0 {
			c.send("context-close", int64(99), "never opened") // ignored, as 6.x does
		}
	}
}

// One-shot encode requests (`xpra encode`): the hello's encoding.
func TestOneShotEncode(t *testing.T) {
	f := start(t, Config{}, pool.Config{})
	for _, tc := range []struct {
		hello  string
		coding string
		c      codec.Codec
		format codec.PixelFormat
	}{
		{"h264", "h264", codec.H264, codec.BGRX},
		{"jpeg", "jpeg", codec.JPEG, codec.RGBX},
		{"", "jpeg", codec.JPEG, codec.BGRA},
	} {
		t.Run(tc.hello, func(t *testing.T) {
			c := dial(t, f.path)
			c.handshake(tc.hello)
			const w, h = 320, 200
			img := frametest.Synthetic(w, h, 3)
			stride := w*4 + 32
			meta := value.Dict{{Key: "ticket", Value: int64(42)}}
			c.send("encode", "rgb32", tc.format.String(), frametest.Pack(img, tc.format, stride), int64(w), int64(h), int64(stride),
				value.Dict{{Key: "quality", Value: int64(90)}}, meta)
			r := c.expect("encode-response")
			data, _ := r[2].([]byte)
			if len(r) != 9 || r[1] != tc.coding || len(data) == 0 || r[4] != int64(w) || r[5] != int64(h) || !value.Equal(r[8], meta, false) {
				t.Fatalf("encode-response %v", brief(r))
			}
			pics := frametest.Decode(t, tc.c, data, w, h)
			if len(pics) != 1 {
				t.Fatalf("%d pictures", len(pics))
			}
			if q := frametest.PSNR(img, pics[0]); q < 30 {
				t.Errorf("PSNR %.1f dB", q)
			}
		})
	}
	// Counted with the encproto socket's frames (server.Counters).
	st := f.srv.cfg.Counters.Stats(0, 0)
	if video := st.Frames[encproto.X264][encproto.FrameOK] + st.Frames[encproto.NVENC][encproto.FrameOK]; video != 1 ||
		st.Frames[encproto.JPEG][encproto.FrameOK] != 2 || st.InFlight != 0 {
		t.Errorf("counted %v, in flight %d; want 1 video and 2 JPEG frames", st.Frames, st.InFlight)
	}
}

// Each hostile input ends its own connection with a disconnect saying
// why; a well-behaved caller on the same server keeps encoding.
func TestHostileInput(t *testing.T) {
	f := start(t, Config{Config: server.Config{MaxWidth: 1024, MaxHeight: 768, BodyTimeout: 300 * time.Millisecond}}, pool.Config{})
	good := dial(t, f.path)
	good.handshake("")
	good.send("context-request", int64(1), "x264", "h264", int64(160), int64(96), "BGRX", value.Dict{})
	if r := good.expect("context-response"); r[2] != true {
		t.Fatal(brief(r))
	}
	goodFrame := func(n int) {
		t.Helper()
		meta, pix := frame(frametest.Synthetic(160, 96, n), codec.BGRX, 160*4)
		good.send("context-compress", int64(1), meta, pix, value.Dict{}, value.Dict{})
		d := good.expect("context-data")
		if data, _ := d[2].([]byte); len(data) == 0 {
			t.Fatalf("good caller: %v", brief(d))
		}
	}
	goodFrame(0)

	meta, pix := frame(frametest.Synthetic(160, 96, 1), codec.BGRX, 160*4)
	with := func(d value.Dict, key string, v any) value.Dict {
		out := append(value.Dict(nil), d...)
		out.Set(key, v)
		return out
	}
	bomb := []byte{0, 0, 0, 0x10, 0x1f, 0} // lz4: claims 256 MiB
	for _, tc := range []struct {
		name   string
		hello  bool // hello and a 160x96 BGRX context (seq 1) first
		send   func(c *caller)
		reason string
		detail string
	}{
		{"text instead of a packet", false, func(c *caller) { c.uc.Write([]byte("GET / HTTP/1.1\r\n\r\n")) }, packet.ReasonProtocolError, ""},
		{"garbage after a header", false, func(c *caller) {
			c.uc.Write(append(wire.AppendHeader(nil, wire.Header{Flags: wire.RencodePlus.Flag(), Size: 6}), "\xff\xfe\x00\x01\x02\x03"...))
		}, packet.ReasonProtocolError, "decoding"},
		{"huge chunk header", false, func(c *caller) {
			c.uc.Write(wire.AppendHeader(nil, wire.Header{Flags: wire.RencodePlus.Flag(), Size: 200 << 20}))
		}, packet.ReasonProtocolError, ""},
		{"packet before hello", false, func(c *caller) {
			c.send("context-request", int64(1), "x264", "h264", int64(64), int64(64), "BGRX", value.Dict{})
		}, packet.ReasonProtocolError, "hello"},
		{"hello is not a dict", false, func(c *caller) { c.send("hello", []any{"x"}) }, packet.ReasonProtocolError, "not a dict"},
		{"width is a string", true, func(c *caller) {
			c.send("context-request", int64(2), "x264", "h264", "640", int64(64), "BGRX", value.Dict{})
		}, packet.ReasonProtocolError, "width"},
		{"the first of two wrong arguments is named", true, func(c *caller) {
			c.send("context-request", int64(2), "x264", "h264", "640", "64", "BGRX", value.Dict{})
		}, packet.ReasonProtocolError, "width is a"},
		{"seq is bytes", true, func(c *caller) { c.send("context-close", []byte("1"), "x") }, packet.ReasonProtocolError, "seq"},
		{"too few arguments", true, func(c *caller) { c.send("context-compress", int64(1)) }, packet.ReasonProtocolError, "arguments"},
		{"oversize context", true, func(c *caller) {
			c.send("context-request", int64(2), "x264", "h264", int64(10000), int64(10000), "BGRX", value.Dict{})
		}, packet.ReasonProtocolError, "outside"},
		{"negative size", true, func(c *caller) {
			c.send("context-request", int64(2), "x264", "h264", int64(-2), int64(64), "BGRX", value.Dict{})
		}, packet.ReasonProtocolError, "outside"},
		{"context opened twice", true, func(c *caller) {
			c.send("context-request", int64(1), "x264", "h264", int64(64), int64(64), "BGRX", value.Dict{})
		}, packet.ReasonProtocolError, "already open"},
		{"pixels shorter than metadata", true, func(c *caller) {
			c.send("context-compress", int64(1), meta, pix[:len(pix)-100], value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "pixel buffer"},
		{"pixels longer than metadata", true, func(c *caller) {
			c.send("context-compress", int64(1), meta, append(append([]byte(nil), pix...), make([]byte, 160*4)...), value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "pixel buffer"},
		{"metadata wider than the maximum", true, func(c *caller) {
			c.send("context-compress", int64(1), with(meta, "width", int64(5000)), pix, value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "outside"},
		{"metadata smaller than the context", true, func(c *caller) {
			c.send("context-compress", int64(1), with(with(meta, "width", int64(80)), "rowstride", int64(320)), pix[:320*95+320], value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "context"},
		{"rowstride too small", true, func(c *caller) {
			c.send("context-compress", int64(1), with(meta, "rowstride", int64(100)), pix, value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "rowstride"},
		{"pixel format of another layout", true, func(c *caller) {
			c.send("context-compress", int64(1), with(meta, "pixel_format", "RGBX"), pix, value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "context"},
		{"planar pixels", true, func(c *caller) {
			c.send("context-compress", int64(1), meta, []any{pix, pix, pix}, value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "planar"},
		{"compress on a seq never requested", true, func(c *caller) {
			c.send("context-compress", int64(999), meta, pix, value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "never requested"},
		{"mmap chunks", true, func(c *caller) {
			c.send("context-compress", int64(1), meta, []byte{}, value.Dict{}, value.Dict{{Key: "chunks", Value: []any{[]any{int64(0), int64(61440)}}}})
		}, packet.ReasonProtocolError, "mmap"},
		{"lz4 bomb", true, func(c *caller) {
			c.send("context-compress", int64(1), meta, bomb, value.Dict{}, value.Dict{{Key: "lz4", Value: true}})
		}, packet.ReasonProtocolError, "lz4"},
		{"mmap one-shot", true, func(c *caller) {
			c.send("encode", "mmap", "BGRX", []byte{}, int64(16), int64(16), int64(64), value.Dict{}, value.Dict{})
		}, packet.ReasonProtocolError, "mmap"},
		{"stalled packet", true, func(c *caller) {
			c.uc.Write(append(wire.AppendHeader(nil, wire.Header{Flags: wire.RencodePlus.Flag(), Size: 1000}), "\xc5"...))
		}, packet.ReasonProtocolError, "not complete within"},
		{"stalled after a raw chunk", true, func(c *caller) {
			c.uc.Write(append(wire.AppendHeader(nil, wire.Header{Index: 3, Size: 4}), "abcd"...))
		}, packet.ReasonProtocolError, "not complete within"},
		{"four raw chunks", true, func(c *caller) {
			var b []byte
			for i := byte(1); i <= 4; i++ {
				b = append(wire.AppendHeader(b, wire.Header{Index: i, Size: 1}), 'x')
			}
			c.uc.Write(b)
		}, packet.ReasonProtocolError, "raw chunks"},
		{"unknown packet", true, func(c *caller) { c.send("ping", int64(1)) }, packet.ReasonProtocolError, "unexpected"},
		{"second hello", true, func(c *caller) { c.send("hello", hello6("")) }, packet.ReasonProtocolError, "second hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, f.path)
			if tc.hello {
				c.handshake("")
				c.send("context-request", int64(1), "x264", "h264", int64(160), int64(96), "BGRX", value.Dict{})
				if r := c.expect("context-response"); r[2] != true {
					t.Fatal(brief(r))
				}
			}
			tc.send(c)
			d := c.expectDisconnect(tc.reason)
			if !strings.Contains(d, tc.detail) {
				t.Errorf("disconnect %q does not say %q", d, tc.detail)
			}
			t.Logf("disconnect: %s", d)
			goodFrame(2)
		})
	}
	// Every hostile connection's context went back to the pool.
	deadline := time.Now().Add(5 * time.Second)
	for f.pool.Status().CPU != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := f.pool.Status(); st.CPU != 1 {
		t.Fatalf("pool holds %d CPU contexts, want the good caller's 1", st.CPU)
	}
}

// A uid the allow list refuses is told so and dropped before its hello
// is read.
func TestUIDNotAllowed(t *testing.T) {
	f := start(t, Config{Config: server.Config{AllowUID: func(uint32) bool { return false }}}, pool.Config{})
	c := dial(t, f.path)
	c.expectDisconnect(packet.ReasonPermissionError)
}

// Contexts are admitted for the peer's uid as the kernel reports it:
// per-user limits count each uid apart, and both uids draw from the one
// pool (MaxCPU), as the encproto socket's clients do.
func TestSharedAdmissionAcrossUIDs(t *testing.T) {
	testenv.Root(t)
	f := start(t, Config{}, pool.Config{MaxPerUser: 1, MaxCPU: 2})
	dir := filepath.Dir(f.path)
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(f.path, 0o666); err != nil {
		t.Fatal(err)
	}
	// The test binary, where another uid can run it.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "caller.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	request := func(c *caller, seq int64) (bool, string) {
		c.send("context-request", seq, "x264", "h264", int64(64), int64(64), "BGRX", value.Dict{})
		r := c.expect("context-response")
		msg, _ := r[3].(string)
		return r[2] == true, msg
	}
	// In another process, as uid: a context held until stdin closes.
	other := func(uid uint32) (bool, string) {
		cmd := exec.Command(bin, "-test.run=^TestHelperCaller$")
		cmd.Env = []string{"XPRAENC_HELPER=1", "XPRAENC_SOCKET=" + f.path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); cmd.Wait() })
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
				ok, msg, _ := strings.Cut(line, " ")
				go io.Copy(io.Discard, stdout)
				return ok == "ok", msg
			}
		}
		t.Fatalf("helper as uid %d gave no result", uid)
		return false, ""
	}
	me := dial(t, f.path)
	me.handshake("")
	if ok, msg := request(me, 1); !ok {
		t.Fatalf("first context: %s", msg)
	}
	if ok, msg := request(me, 2); ok || !strings.Contains(msg, "limit per user") {
		t.Fatalf("second context of uid 0: ok=%v %q", ok, msg)
	}
	if ok, msg := other(65534); !ok {
		t.Fatalf("uid 65534, its own quota: %s", msg)
	}
	if ok, msg := other(65533); ok || !strings.Contains(msg, "pool full") {
		t.Fatalf("uid 65533 past MaxCPU: ok=%v %q", ok, msg)
	}
}

// TestHelperCaller is the other uid's caller of
// TestSharedAdmissionAcrossUIDs.
func TestHelperCaller(t *testing.T) {
	if os.Getenv("XPRAENC_HELPER") != "1" {
		t.Skip("helper process only")
	}
	c := dial(t, mustEnv(t, "XPRAENC_SOCKET"))
	c.handshake("")
	c.send("context-request", int64(1), "x264", "h264", int64(64), int64(64), "BGRX", value.Dict{})
	r := c.expect("context-response")
	msg, _ := r[3].(string)
	res := "refused"
	if r[2] == true {
		res = "ok"
	}
	fmt.Printf("RESULT %s %s\n", res, msg)
	io.Copy(io.Discard, os.Stdin) // hold the context until the test is done
}

// The specs follow the pool: nvenc and h265 with a usable GPU.
func TestVideoSpecs(t *testing.T) {
	cfg := Config{}
	cfg.defaults()
	for _, tc := range []struct {
		gpu       bool
		codecType string
		encodings []any
	}{
		{false, "x264", []any{"h264"}},
		{true, "nvenc", []any{"h264", "h265"}},
	} {
		video, names := videoSpecs(tc.gpu, cfg)
		if !value.Equal(names, tc.encodings, false) || len(video) != len(tc.encodings) {
			t.Fatalf("gpu=%v: %v", tc.gpu, names)
		}
		for _, enc := range video {
			for _, byFormat := range enc.Value.(value.Dict) {
				spec := caps.New(byFormat.Value.([]any)[0].(value.Dict))
				f, _ := value.AsString(byFormat.Key)
				if spec.Str("codec_type", "") != tc.codecType || spec.Str("input_colorspace", "") != f {
					t.Errorf("gpu=%v %v/%s: %v", tc.gpu, enc.Key, f, spec.Dict())
				}
				if _, err := codec.ParsePixelFormat(f); err != nil {
					t.Errorf("spec for %s, which the backends do not take", f)
				}
			}
		}
	}
}
