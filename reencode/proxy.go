// SPDX-License-Identifier: GPL-2.0-or-later

package reencode

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Re-encoding for xpra 4.x to 6.3 servers (PROXY.md §5.1-5.3).
//
// These servers honour "encoding.proxy.video" when its strings arrive
// as str, which rencodeplus (4.3+) guarantees: each advertised spec
// becomes a "proxy" video encoder in that client's pipeline, boosted so
// it wins. Such an encoder does nothing: the draw carries the raw
// pixels with proxy=True, rgb_format, rowstride, frame, ... in its
// options, labelled with the video encoding (h264). The relay encodes
// those pixels with the shared pool and sends the client an ordinary
// h264 draw in the packet's place, same sequence number, so the
// client's acks still match. Draws without proxy=True pass untouched.
//
// Which servers get this: a client that speaks rencodeplus can only
// reach 4.3+ servers (3.1.3 has no rencodeplus), so its hello asks for
// proxy video; the server's hello then confirms the version, and 6.4+
// (which dropped the proxy encoder) is relayed without the filter. A
// rencode client keeps the 3.1 path (RawFrames), which any server
// honours.

// Mode is what the server was asked to send.
type Mode int

const (
	// RawFrames: plain rgb, composed and encoded by the relay (3.1).
	RawFrames Mode = iota
	// ProxyVideo: frames marked proxy=True, encoded as they come (4.3-6.3).
	ProxyVideo
)

// proxyMaxInstances is how many proxy encoders a server may run for one
// client (its windows): the pool decides the real limit, this keeps a
// server from asking for a context per window of a busy desktop.
const proxyMaxInstances = 8

// ProxyVideoCaps are the hello keys that make a 4.x-6.3 server send
// proxy frames for what the pool serves (hr is the pool's hello). They
// are flat top-level keys in both caps forms: every version from 4.0
// to 6.3 copies "encoding.*" keys into its encoding options, while a
// nested "encoding" dict is read back with plain dict lookups in 6.x
// (encodings.py parse_proxy_video) and would be missed. Spec keys are
// VideoSpec attribute names only (6.x warns about and skips others);
// input_colorspace and output_colorspaces are required.
func ProxyVideoCaps(hr encproto.HelloReply) value.Dict {
	maxW, maxH := int64(hr.MaxWidth), int64(hr.MaxHeight)
	if maxW <= 0 || maxW > codec.MaxDimension {
		maxW = codec.MaxDimension
	}
	if maxH <= 0 || maxH > codec.MaxDimension {
		maxH = codec.MaxDimension
	}
	spec := func(in string) value.Dict {
		return value.Dict{
			{Key: "input_colorspace", Value: in},
			{Key: "output_colorspaces", Value: []any{"YUV420P"}},
			{Key: "has_lossless_mode", Value: false},
			{Key: "quality", Value: int64(60)},
			{Key: "speed", Value: int64(80)},
			{Key: "size_efficiency", Value: int64(60)},
			{Key: "setup_cost", Value: int64(20)},
			{Key: "cpu_cost", Value: int64(0)}, // the server's CPU: none
			{Key: "gpu_cost", Value: int64(0)},
			{Key: "min_w", Value: int64(16)},
			{Key: "min_h", Value: int64(16)},
			{Key: "max_w", Value: maxW},
			{Key: "max_h", Value: maxH},
			{Key: "can_scale", Value: false},
			// Even sizes: the pool's 4:2:0 needs them, and the server
			// sends the odd edge as a non-video draw.
			{Key: "width_mask", Value: int64(0xFFFE)},
			{Key: "height_mask", Value: int64(0xFFFE)},
			{Key: "score_boost", Value: int64(50)},
			{Key: "max_instances", Value: int64(proxyMaxInstances)},
		}
	}
	return value.Dict{
		{Key: "encoding.proxy.video", Value: true},
		{Key: "encoding.proxy.video.encodings", Value: value.Dict{
			{Key: "h264", Value: value.Dict{
				// Only opaque inputs: windows with alpha stay on the
				// server's own encoders.
				{Key: "BGRX", Value: []any{spec("BGRX")}},
				{Key: "RGBX", Value: []any{spec("RGBX")}},
			}},
		}},
	}
}

// ProxyVideoServer reports whether a server's hello is from a version
// that sends proxy frames: 4.0 to 6.3.
func ProxyVideoServer(sh caps.Hello) bool {
	major, minor, ok := parseVersion(sh.Version)
	if !ok {
		return false
	}
	return major == 4 || major == 5 || major == 6 && minor <= 3
}

func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return ma, mi, true
}

// proxyWin is a window's video stream to the client.
type proxyWin struct {
	ctx     *client.Context
	w, h    int           // the context's picture
	pix     *client.Frame // the picture as the pool reads it (BGRX)
	frame   int           // frames sent in the stream (0: next is a keyframe)
	retryAt time.Time
	used    time.Time
}

// proxyOnlyKeys are the draw options that describe the raw pixels for
// the proxy: an h264 draw must not carry them (the client would read
// rgb_format or rowstride as if they described its picture).
var proxyOnlyKeys = map[string]bool{
	"proxy": true, "rowstride": true, "depth": true, "rgb_format": true, "options": true,
	"dst_formats": true, "timestamp": true, "frame": true, "csc": true, "type": true,
	"lz4": true, "zlib": true, "lzo": true, "brotli": true, "bytesperpixel": true,
}

// proxyPacket handles a decoded packet of interest in proxy mode.
func (r *Reencoder) proxyPacket(name string, raws []wire.Frame, f wire.Frame, p conn.Packet) error {
	forward := func() error { return r.out.WriteFrames(append(raws, f)...) }
	switch name {
	case "draw", "window-draw":
		return r.proxyDraw(raws, f, p)
	case "lost-window", "window-destroy":
		if len(p) >= 2 {
			if wid, ok := value.AsInt(p[1]); ok {
				r.proxyForget(wid)
			}
		}
	default:
		// A new size: the server's stream restarts, ours too.
		if wid, _, _, err := windowGeometry(p); err == nil {
			r.proxyForget(wid)
		}
	}
	return forward()
}

func (r *Reencoder) proxyForget(wid int64) {
	if pw := r.pwins[wid]; pw != nil {
		r.proxyDrop(pw)
		delete(r.pwins, wid)
	}
}

// proxyDrop frees a window's context and picture.
func (r *Reencoder) proxyDrop(pw *proxyWin) {
	r.proxyCloseContext(pw)
	if pw.pix != nil {
		pw.pix.Close()
		pw.pix = nil
	}
}

func (r *Reencoder) proxyCloseContext(pw *proxyWin) {
	if pw.ctx != nil {
		if err := pw.ctx.Close(); err != nil {
			r.log.Debug("re-encoder: closing a context", "err", err)
		}
		pw.ctx = nil
		pw.frame = 0
		r.Stats.Contexts.Add(-1)
	}
}

// proxyDraw re-encodes a draw marked proxy=True; anything else goes on
// as it came.
func (r *Reencoder) proxyDraw(raws []wire.Frame, f wire.Frame, p conn.Packet) error {
	forward := func() error { return r.out.WriteFrames(append(raws, f)...) }
	d, err := parseDraw(p)
	if err != nil {
		r.log.Debug("re-encoder: draw", "err", err)
		return forward()
	}
	if v, ok := d.opt("proxy"); !ok || !truthy(v) {
		return forward()
	}
	name, _ := value.AsString(p[0])
	pic, perr := proxyPicture(d)
	d.rowstride = pic.stride
	fmtName, pf, pw, ph := pic.format, pic.pf, pic.w, pic.h
	if perr == nil && !d.transformed() {
		serverFrame, _ := value.AsInt(optOr(d, "frame"))
		if frames, ok := r.proxyEncode(name, d, pw, ph, pic.pix, pic.stride, pf, serverFrame == 0, f.Header); ok {
			r.Stats.BytesIn.Add(int64(pw * ph * pf.BytesPerPixel()))
			return r.out.WriteFrames(frames...)
		}
	}
	// Not encoded: the pixels go as rgb, which every client decodes.
	r.Stats.Rgb.Add(1)
	label := "rgb32"
	if pf.BytesPerPixel() == 3 || perr != nil && len(fmtName) == 3 {
		label = "rgb24"
	}
	opts := value.Dict{}
	if fmtName != "" {
		opts = append(opts, value.Item{Key: "rgb_format", Value: fmtName})
	}
	for _, it := range d.opts {
		k, _ := value.AsString(it.Key)
		switch {
		case k == "lz4" || k == "zlib" || k == "lzo" || k == "brotli":
			opts = append(opts, it) // the pixels' own compression, if any
		case k == "scaled_size" || proxyOnlyKeys[k]:
		default:
			opts = append(opts, it)
		}
	}
	if pw != d.w || ph != d.h {
		// A scaled picture as rgb: the client paints it at its size.
		d.w, d.h = pw, ph
	}
	q := conn.Packet{name, d.wid, int64(d.x), int64(d.y), int64(d.w), int64(d.h), label, d.data, d.seq, int64(d.rowstride), opts}
	if r.frames, err = packetFrames(r.frames[:0], f.Header.Encoding(), q); err != nil {
		r.log.Warn("re-encoder: building a draw", "err", err)
		return forward()
	}
	keepFlush(r.frames, f.Header)
	return r.out.WriteFrames(r.frames...)
}

// proxyPixels are a proxy frame's raw pixels as its options describe them.
type proxyPixels struct {
	format string // rgb_format as sent
	pf     codec.PixelFormat
	pix    []byte
	stride int
	w, h   int // the picture: the region, or scaled_size when a csc step scaled it
}

// proxyPicture reads where a proxy draw's pixels are: the layout is in
// the options (the packet's own rowstride field is 0 for video). An
// error leaves the fields it could read.
func proxyPicture(d draw) (proxyPixels, error) {
	pic := proxyPixels{stride: d.rowstride, w: d.w, h: d.h}
	pic.format, _ = value.AsString(optOr(d, "rgb_format"))
	if n, ok := value.AsInt(optOr(d, "rowstride")); ok && n > 0 && n <= maxDrawStride {
		pic.stride = int(n)
	}
	if l, ok := optOr(d, "scaled_size").([]any); ok && len(l) == 2 {
		sw, ok1 := value.AsInt(l[0])
		sh, ok2 := value.AsInt(l[1])
		if ok1 && ok2 && sw > 0 && sh > 0 && sw <= maxDrawDim && sh <= maxDrawDim {
			pic.w, pic.h = int(sw), int(sh)
		}
	}
	var err error
	if pic.pf, err = codec.ParsePixelFormat(pic.format); err != nil {
		return pic, err
	}
	sized := d
	sized.w, sized.h, sized.rowstride = pic.w, pic.h, pic.stride
	pic.pix, pic.stride, err = sized.rgbPixels(pic.pf)
	return pic, err
}

// proxyEncode encodes one proxy frame (pw x ph pixels) with the
// window's context, opened or reopened as needed; false: send rgb.
func (r *Reencoder) proxyEncode(name string, d draw, pw, ph int, pix []byte, stride int, pf codec.PixelFormat, restart bool, src wire.Header) ([]wire.Frame, bool) {
	if pw&1 != 0 || ph&1 != 0 || pw < codec.MinDimension || ph < codec.MinDimension || pw > codec.MaxDimension || ph > codec.MaxDimension {
		return nil, false
	}
	now := time.Now()
	win := r.pwins[d.wid]
	if win == nil {
		win = &proxyWin{}
		r.pwins[d.wid] = win
	}
	if win.ctx != nil && (win.w != pw || win.h != ph) {
		r.proxyCloseContext(win)
	}
	if win.pix != nil && len(win.pix.Bytes()) != pw*4*ph {
		win.pix.Close()
		win.pix = nil
	}
	if win.ctx == nil {
		if now.Before(win.retryAt) {
			return nil, false
		}
		if _, up := r.enc.Connected(); !up {
			return nil, false
		}
		ctx, err := r.enc.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: uint16(pw), Height: uint16(ph),
			Quality: uint8(r.opts.Quality), Speed: uint8(r.opts.Speed), Profile: r.opts.Profile})
		if err != nil {
			if client.IsRefused(err) {
				r.Stats.Refused.Add(1)
				win.retryAt = now.Add(r.opts.RetryRefused)
			} else {
				r.Stats.Failures.Add(1)
				win.retryAt = now.Add(500 * time.Millisecond)
			}
			r.log.Debug("re-encoder: no context", "wid", d.wid, "err", err)
			return nil, false
		}
		win.ctx, win.w, win.h, win.frame = ctx, pw, ph, 0
		r.Stats.Contexts.Add(1)
	}
	if win.pix == nil {
		var err error
		if win.pix, err = client.NewFrame(pw * 4 * ph); err != nil {
			r.log.Warn("re-encoder: frame buffer", "err", err)
			return nil, false
		}
	}
	if restart {
		// The server started a new stream (frame 0): so does the client.
		win.frame = 0
	}
	blit(win.pix.Bytes(), pw*4, 0, 0, pix, stride, pw, ph, pf)
	q, s := optPercent(d, "quality"), optPercent(d, "speed")
	data, key, err := win.ctx.AppendCompress(r.buf[:0], win.pix, 0, pw*4, client.FrameOptions{Keyframe: win.frame == 0, Quality: q, Speed: s})
	if err != nil {
		r.Stats.Failures.Add(1)
		if !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, client.ErrContextLost) {
			r.log.Warn("re-encoder: frame", "wid", d.wid, "err", err)
		}
		r.proxyCloseContext(win)
		win.retryAt = now.Add(500 * time.Millisecond)
		return nil, false
	}
	r.buf = data
	win.used = now
	typ := "P"
	if key {
		typ = "IDR"
	}
	opts := value.Dict{{Key: "csc", Value: "YUV420P"}, {Key: "frame", Value: int64(win.frame)}, {Key: "type", Value: typ}}
	for _, it := range d.opts {
		if k, _ := value.AsString(it.Key); !proxyOnlyKeys[k] {
			opts = append(opts, it) // pts, quality, speed, scaled_size, flush, paint, ...
		}
	}
	out := conn.Packet{name, d.wid, int64(d.x), int64(d.y), int64(d.w), int64(d.h), "h264", data, d.seq, int64(0), opts}
	var perr error
	if r.frames, perr = packetFrames(r.frames[:0], src.Encoding(), out); perr != nil {
		r.log.Warn("re-encoder: building a draw", "err", perr)
		r.proxyCloseContext(win)
		return nil, false
	}
	keepFlush(r.frames, src)
	win.frame++
	r.Stats.Frames.Add(1)
	r.Stats.BytesOut.Add(int64(len(data)))
	return r.frames, true
}

// keepFlush carries a 6.x sender's "nothing more queued" bit over to
// the main chunk that replaces its packet.
func keepFlush(frames []wire.Frame, src wire.Header) {
	if len(frames) > 0 {
		frames[len(frames)-1].Header.Flags |= src.Flags & wire.FlagFlush
	}
}

// optOr is a draw option, or nil.
func optOr(d draw, key string) any {
	v, _ := d.opt(key)
	return v
}

// optPercent is a quality or speed from a proxy draw's options (top
// level, else the encoder options the server passed through); -1: the
// context's own.
func optPercent(d draw, key string) int {
	v, ok := d.opt(key)
	if !ok {
		if o, isDict := optOr(d, "options").(value.Dict); isDict {
			v, ok = o.Get(key)
		}
	}
	if n, isInt := value.AsInt(v); ok && isInt && n >= 0 && n <= 100 {
		return int(n)
	}
	return -1
}

// truthy reads a boolean option as xpra writes them (bool or 0/1).
func truthy(v any) bool {
	if b, ok := value.AsBool(v); ok {
		return b
	}
	n, ok := value.AsInt(v)
	return ok && n != 0
}
