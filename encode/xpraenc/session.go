// SPDX-License-Identifier: GPL-2.0-or-later

package xpraenc

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/server"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// Packet types of the encoder protocol.
const (
	pHello           = "hello"
	pEncodings       = "encodings"
	pStartupComplete = "startup-complete"
	pContextRequest  = "context-request"
	pContextResponse = "context-response"
	pContextCompress = "context-compress"
	pContextData     = "context-data"
	pContextClose    = "context-close"
	pEncode          = "encode"
	pEncodeResponse  = "encode-response"
)

// protocolVersion is the xpra version whose encoder protocol this is;
// the caller only logs it (adapter.py _process_hello).
const protocolVersion = "6.4"

// protoError ends a connection with a disconnect packet.
type protoError struct{ reason, msg string }

func (e *protoError) Error() string { return e.reason + ": " + e.msg }

func protoErr(format string, a ...any) *protoError {
	return &protoError{reason: packet.ReasonProtocolError, msg: fmt.Sprintf(format, a...)}
}

// session is one caller's state: its contexts by the caller's seq.
type session struct {
	s    *Server
	uid  uint32
	log  *slog.Logger
	send func(conn.Packet) error

	ctxs map[int64]*xctx
	// asked is set once a context-request came; maxSeq is the highest seq
	// asked for. A compress for a seq at or below it that has no context
	// (refused, or closed since) is answered as 6.x does; above it, the
	// caller never asked and is not a 6.x caller.
	asked  bool
	maxSeq int64
	// encoding of one-shot encode requests, from the hello.
	encoding string
	helloOK  bool
}

// xctx is one open context.
type xctx struct {
	cfg     codec.Config
	oc      *server.Context
	profile string
	frames  int
	start   time.Time
}

func newSession(s *Server, uid uint32, log *slog.Logger, send func(conn.Packet) error) *session {
	return &session{s: s, uid: uid, log: log, send: send, ctxs: map[int64]*xctx{}}
}

func (ss *session) closeAll() {
	for seq, x := range ss.ctxs {
		x.oc.Close()
		delete(ss.ctxs, seq)
	}
}

// hello checks the caller's hello and remembers what matters.
func (ss *session) hello(p conn.Packet) (caps.Hello, error) {
	if len(p) < 2 || p[0] != pHello {
		return caps.Hello{}, protoErr("expected a hello packet first, got %s", describe(p))
	}
	d, ok := p[1].(value.Dict)
	if !ok {
		return caps.Hello{}, protoErr("hello capabilities are a %s, not a dict", value.TypeName(p[1]))
	}
	h := caps.ParseHello(d)
	if h.Request != "" {
		return h, protoErr("request %q is not served by an encoder", h.Request)
	}
	// 6.x: a dict with "setting" (or ""), older: a plain string.
	if v, ok := d.Get("encoding"); ok {
		switch v := v.(type) {
		case value.Dict:
			ec := caps.New(v)
			ss.encoding = ec.Str("setting", ec.Str("", ""))
		default:
			ss.encoding, _ = value.AsString(v)
		}
	}
	ss.helloOK = true
	ss.log.Debug("xpra encoder: hello", "client_type", h.Str("client_type", ""), "version", h.Version, "encoding", ss.encoding)
	return h, nil
}

// greeting is what a 6.x encoder server sends after accepting a
// client: its hello, the encodings with the video specs, and
// startup-complete (the caller waits for it before sending).
func (ss *session) greeting() []conn.Packet {
	var id [16]byte
	rand.Read(id[:])
	// No "mmap" key: the caller then drops its mmap areas and sends
	// pixels inline (mmap.py parse_server_capabilities).
	hello := value.Dict{
		{Key: "version", Value: protocolVersion},
		{Key: "uuid", Value: hex.EncodeToString(id[:])},
		{Key: "server_type", Value: "encoder"},
		{Key: "session-type", Value: "encoder"},
		{Key: "encoders", Value: []any{"rencodeplus"}},
		{Key: "compressors", Value: []any{"lz4", "none"}},
		{Key: "lz4", Value: value.Dict{{Key: "", Value: true}}},
		{Key: "chunks", Value: true},
		{Key: "max-size", Value: []any{int64(ss.s.cfg.MaxWidth), int64(ss.s.cfg.MaxHeight)}},
	}
	video, names := videoSpecs(ss.s.pool.NoGPU() == "", ss.s.cfg)
	// core: what one-shot encode requests may ask for in their hello.
	info := value.Dict{{Key: "core", Value: append(append([]any(nil), names...), "jpeg")}, {Key: "video", Value: names}}
	return []conn.Packet{
		{pHello, hello},
		{pEncodings, value.Dict{{Key: "encodings", Value: info}, {Key: "video", Value: video}}},
		{pStartupComplete},
	}
}

// dispatch handles one packet after the hello.
func (ss *session) dispatch(p conn.Packet) error {
	name, _ := p[0].(string)
	switch name {
	case pContextRequest:
		return ss.contextRequest(p)
	case pContextCompress:
		return ss.contextCompress(p)
	case pContextClose:
		return ss.contextClose(p)
	case pEncode:
		return ss.encode(p)
	case packet.Disconnect:
		reason, details := packet.DisconnectReason(p)
		ss.log.Debug("xpra encoder: caller disconnected", "reason", reason, "details", details)
		return errDisconnected
	case pHello:
		return protoErr("a second hello")
	}
	return protoErr("unexpected %s packet", describe(p))
}

var errDisconnected = fmt.Errorf("caller sent disconnect: %w", errClean)

var errClean = fmt.Errorf("clean end")

// describe names a packet's type for messages, whatever it holds.
func describe(p conn.Packet) string {
	if len(p) == 0 {
		return "empty"
	}
	if s, ok := p[0].(string); ok {
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return fmt.Sprintf("%q", s)
	}
	return value.TypeName(p[0])
}

// args reads a packet's arguments, strictly typed: a 6.x caller sends
// exactly these types. The first mistake (too few arguments, a wrong
// type) is kept in err and later reads give zero values, so a handler
// reads all its arguments and checks once.
type args struct {
	p   conn.Packet
	err error
}

// newArgs reads p, which must have at least n arguments.
func newArgs(p conn.Packet, n int) *args {
	a := &args{p: p}
	if len(p) < n+1 {
		a.err = protoErr("%s has %d arguments, not %d", p[0], len(p)-1, n)
	}
	return a
}

// arg is argument i, of type T (want names it for the message).
func arg[T any](a *args, i int, what, want string) T {
	var v T
	if a.err != nil {
		return v
	}
	v, ok := a.p[i].(T)
	if !ok {
		a.err = protoErr("%s: %s is a %s, not %s", a.p[0], what, value.TypeName(a.p[i]), want)
	}
	return v
}

func (a *args) int(i int, what string) int64 { return arg[int64](a, i, what, "an integer") }

func (a *args) str(i int, what string) string { return arg[string](a, i, what, "a string") }

func (a *args) dict(i int, what string) value.Dict { return arg[value.Dict](a, i, what, "a dict") }

func (a *args) bytes(i int, what string) []byte { return arg[[]byte](a, i, what, "bytes") }

// optInt reads an optional integer option; absent or not an integer
// gives def (options are the caller's free-form encoding options).
func optInt(d value.Dict, key string, def int) int {
	v, ok := d.Get(key)
	if !ok {
		return def
	}
	n, ok := value.AsInt(v)
	if !ok || n < -1 || n > 100 {
		return def
	}
	return int(n)
}

func optBool(d value.Dict, key string) bool {
	v, ok := d.Get(key)
	if !ok {
		return false
	}
	b, _ := value.AsBool(v)
	return b
}

func (ss *session) checkDims(what string, w, h int64) error {
	if w < 1 || h < 1 || w > int64(ss.s.cfg.MaxWidth) || h > int64(ss.s.cfg.MaxHeight) {
		return protoErr("%s of %dx%d: outside 1x1..%dx%d", what, w, h, ss.s.cfg.MaxWidth, ss.s.cfg.MaxHeight)
	}
	return nil
}

// profile picks the H.264 profile the caller's options ask for (6.x
// codecs/constants.py get_profile: "h264.<csc>.profile", then
// "h264.profile"), among those x264 serves; "" is high.
func profile(opts value.Dict) string {
	for _, k := range []string{"h264.YUV420P.profile", "h264.profile"} {
		v, ok := opts.Get(k)
		if !ok {
			continue
		}
		switch s, _ := value.AsString(v); s {
		case "baseline", "constrained-baseline":
			return "baseline"
		case "main":
			return "main"
		case "high":
			return "high"
		}
	}
	return ""
}

func (ss *session) contextRequest(p conn.Packet) error {
	a := newArgs(p, 7)
	seq, codecType, encoding := a.int(1, "seq"), a.str(2, "codec_type"), a.str(3, "encoding")
	w, h, srcFormat, opts := a.int(4, "width"), a.int(5, "height"), a.str(6, "src_format"), a.dict(7, "options")
	if a.err != nil {
		return a.err
	}
	if seq < 0 {
		return protoErr("context-request: seq %d", seq)
	}
	if err := ss.checkDims("context", w, h); err != nil {
		return err
	}
	if _, dup := ss.ctxs[seq]; dup {
		return protoErr("context-request: context %d is already open", seq)
	}
	if !ss.asked || seq > ss.maxSeq {
		ss.asked, ss.maxSeq = true, seq
	}
	refuse := func(format string, a ...any) error {
		msg := fmt.Sprintf(format, a...)
		ss.log.Debug("xpra encoder: context refused", "seq", seq, "why", msg)
		return ss.send(conn.Packet{pContextResponse, seq, false, msg, value.Dict{}})
	}
	if len(ss.ctxs) >= ss.s.cfg.MaxContextsPerConn {
		return refuse("%d contexts on this connection, the limit", len(ss.ctxs))
	}
	c, err := codec.ParseCodec(encoding)
	if err != nil || !c.Video() {
		return refuse("encoding %q is not served", encoding)
	}
	cpuOnly := false
	switch codecType {
	case "x264":
		cpuOnly = true
	case "nvenc":
	default:
		return refuse("codec type %q is not served", codecType)
	}
	format, err := codec.ParsePixelFormat(srcFormat)
	if err != nil {
		return refuse("%v", err)
	}
	q, sp := optInt(opts, "quality", 50), optInt(opts, "speed", 50)
	cfg := codec.Config{Codec: c, Format: format, Width: int(w), Height: int(h),
		Quality: max(q, 0), Speed: max(sp, 0), Threads: ss.s.cfg.Threads}
	if err := cfg.Validate(); err != nil {
		return refuse("%v", err)
	}
	prof := ""
	if c == codec.H264 {
		prof = profile(opts)
	}
	oc, rerr := server.OpenContext(ss.s.pool, ss.uid, cfg, prof, cpuOnly, ss.log)
	if rerr != nil {
		if rerr.Code == encproto.Refused {
			ss.s.cfg.Counters.OpenRefused()
		}
		return refuse("%s", rerr.Message)
	}
	if prof == "" {
		prof = "high"
	}
	ss.ctxs[seq] = &xctx{cfg: cfg, oc: oc, profile: prof}
	ss.log.Debug("xpra encoder: context", "seq", seq, "codec", c, "format", format, "size", fmt.Sprintf("%dx%d", w, h),
		"backend", oc.Backend, "fallback", oc.Lease.Fallback)
	info := value.Dict{
		{Key: "type", Value: oc.Backend.String()},
		{Key: "encoding", Value: encoding},
		{Key: "width", Value: w},
		{Key: "height", Value: h},
		{Key: "src_format", Value: srcFormat},
		{Key: "csc_format", Value: "YUV420P"},
		{Key: "profile", Value: prof},
		{Key: "gpu", Value: int64(oc.GPU)},
	}
	if oc.Lease.Fallback != "" {
		info = append(info, value.Item{Key: "fallback", Value: oc.Lease.Fallback})
	}
	return ss.send(conn.Packet{pContextResponse, seq, true, "", info})
}

func (ss *session) contextClose(p conn.Packet) error {
	a := newArgs(p, 1)
	seq := a.int(1, "seq")
	if a.err != nil {
		return a.err
	}
	if x, ok := ss.ctxs[seq]; ok {
		x.oc.Close()
		delete(ss.ctxs, seq)
		ss.log.Debug("xpra encoder: context closed", "seq", seq, "frames", x.frames)
	}
	return nil
}

// image is a packed frame as metadata describes it, checked.
type image struct {
	w, h, stride int
	format       codec.PixelFormat
	pix          []byte
}

// checkImage validates pixel metadata and the buffer against it; lz4
// pixels are decompressed to at most the size the metadata allows.
func (ss *session) checkImage(what string, w, h, stride int64, pf string, pix []byte, lz4 bool) (image, error) {
	if err := ss.checkDims(what, w, h); err != nil {
		return image{}, err
	}
	f, err := codec.ParsePixelFormat(pf)
	if err != nil {
		return image{}, protoErr("%s: %v", what, err)
	}
	row := w * int64(f.BytesPerPixel())
	if stride < row || stride > row+4096 {
		return image{}, protoErr("%s: rowstride %d for %d-byte rows", what, stride, row)
	}
	need, most := stride*(h-1)+row, stride*h
	if lz4 {
		// xpra's lz4 layout: 4-byte size, then one block.
		pix, err = compress.Decompress(compress.LevelByte(compress.LZ4, 1), pix, int(most))
		if err != nil {
			return image{}, protoErr("%s: lz4 pixels: %v", what, err)
		}
	}
	if int64(len(pix)) < need || int64(len(pix)) > most {
		return image{}, protoErr("%s: pixel buffer of %d bytes, the metadata (%dx%d %s, rowstride %d) needs %d to %d", what, len(pix), w, h, pf, stride, need, most)
	}
	return image{w: int(w), h: int(h), stride: int(stride), format: f, pix: pix}, nil
}

// sameLayout: X and A formats are the same bytes (6.x's x264 takes a
// BGRA image for a BGRX context).
func sameLayout(a, b codec.PixelFormat) bool {
	norm := func(f codec.PixelFormat) codec.PixelFormat {
		switch f {
		case codec.BGRA:
			return codec.BGRX
		case codec.RGBA:
			return codec.RGBX
		}
		return f
	}
	return norm(a) == norm(b)
}

func (ss *session) contextCompress(p conn.Packet) error {
	a := newArgs(p, 5)
	seq, meta := a.int(1, "seq"), a.dict(2, "metadata")
	if a.err != nil {
		return a.err
	}
	if _, planar := p[3].([]any); planar {
		return protoErr("context-compress: planar pixels are not accepted (the specs take packed RGB only)")
	}
	pix, opts, sendOpts := a.bytes(3, "pixels"), a.dict(4, "options"), a.dict(5, "send_opts")
	if a.err != nil {
		return a.err
	}
	if v, ok := sendOpts.Get("chunks"); ok {
		if l, _ := v.([]any); len(l) > 0 {
			return protoErr("context-compress: mmap chunks, but this encoder offered no mmap")
		}
	}
	x, ok := ss.ctxs[seq]
	if !ok {
		if ss.asked && seq >= 0 && seq <= ss.maxSeq {
			return ss.send(conn.Packet{pContextData, seq, []byte{}, value.Dict{{Key: "error", Value: "context not found"}}, value.Dict{}})
		}
		return protoErr("context-compress for context %d, which was never requested", seq)
	}
	var m struct {
		w, h, stride, planes, bpp int64
		pf                        string
	}
	for _, f := range []struct {
		key      string
		dst      *int64
		required bool
	}{{"width", &m.w, true}, {"height", &m.h, true}, {"rowstride", &m.stride, true}, {"planes", &m.planes, false}, {"bytesperpixel", &m.bpp, false}} {
		v, ok := meta.Get(f.key)
		if !ok {
			if f.required {
				return protoErr("context-compress: metadata without %s", f.key)
			}
			continue
		}
		n, isInt := v.(int64)
		if !isInt {
			return protoErr("context-compress: metadata %s is a %s, not an integer", f.key, value.TypeName(v))
		}
		*f.dst = n
	}
	v, ok := meta.Get("pixel_format")
	if m.pf, _ = v.(string); !ok || m.pf == "" {
		return protoErr("context-compress: metadata without a pixel_format string")
	}
	if m.planes != 0 {
		return protoErr("context-compress: %d planes; only packed pixels are accepted", m.planes)
	}
	img, err := ss.checkImage("context-compress", m.w, m.h, m.stride, m.pf, pix, optBool(sendOpts, "lz4"))
	if err != nil {
		return err
	}
	if m.bpp != 0 && m.bpp != int64(img.format.BytesPerPixel()) {
		return protoErr("context-compress: bytesperpixel %d for %s", m.bpp, m.pf)
	}
	if !sameLayout(img.format, x.cfg.Format) {
		return protoErr("context-compress: %s pixels for a %v context", m.pf, x.cfg.Format)
	}
	if img.w < x.cfg.Width || img.h < x.cfg.Height {
		return protoErr("context-compress: a %dx%d image for a %dx%d context", img.w, img.h, x.cfg.Width, x.cfg.Height)
	}
	if x.frames == 0 {
		x.start = time.Now()
	}
	// A larger image (the caller rounds the context down to even sizes)
	// is encoded from its top-left corner, as 6.x's x264 does.
	end := ss.s.cfg.Counters.Begin()
	f, err := x.oc.Enc.Encode(img.pix, img.stride, codec.FrameOptions{Quality: optInt(opts, "quality", -1), Speed: -1})
	end()
	ss.s.cfg.Counters.Frame(x.oc.Backend, frameResult(err))
	if err != nil {
		ss.log.Warn("xpra encoder: frame failed", "seq", seq, "err", err)
		return ss.send(conn.Packet{pContextData, seq, []byte{}, value.Dict{{Key: "error", Value: err.Error()}}, value.Dict{}})
	}
	co := value.Dict{
		{Key: "frame", Value: int64(x.frames)},
		{Key: "pts", Value: time.Since(x.start).Milliseconds()},
		{Key: "csc", Value: "YUV420P"},
		{Key: "full-range", Value: false},
	}
	if f.Keyframe {
		co = append(co, value.Item{Key: "type", Value: "IDR"})
	}
	if x.frames == 0 {
		co = append(co, value.Item{Key: "profile", Value: x.profile})
	}
	x.frames++
	// f.Data is the backend's buffer: written before the next Encode.
	return ss.send(conn.Packet{pContextData, seq, f.Data, co, value.Dict{}})
}

// encode is the one-shot request of `xpra encode`: one picture in the
// hello's encoding, through a context opened and closed for it.
func (ss *session) encode(p conn.Packet) error {
	a := newArgs(p, 8)
	inputCoding, pf, raw := a.str(1, "input_coding"), a.str(2, "pixel_format"), a.bytes(3, "raw_data")
	w, h, stride, opts := a.int(4, "width"), a.int(5, "height"), a.int(6, "rowstride"), a.dict(7, "options")
	if a.err != nil {
		return a.err
	}
	metadata := p[8] // echoed back as it came
	if inputCoding == "mmap" {
		return protoErr("encode: mmap input, but this encoder offered no mmap")
	}
	img, err := ss.checkImage("encode", w, h, stride, pf, raw, optBool(opts, "lz4"))
	if err != nil {
		return err
	}
	failed := func(err error) error {
		return &protoError{reason: packet.ReasonServerError, msg: "failed to encode: " + err.Error()}
	}
	encoding := ss.encoding
	if encoding == "" || encoding == "auto" {
		encoding = "jpeg" // 6.x would pick png, which the pool does not make
	}
	c, err := codec.ParseCodec(encoding)
	if err != nil {
		return failed(err)
	}
	cfg := codec.Config{Codec: c, Format: img.format, Width: img.w, Height: img.h,
		Quality: max(optInt(opts, "quality", 80), 0), Speed: max(optInt(opts, "speed", 50), 0), Threads: ss.s.cfg.Threads}
	if err := cfg.Validate(); err != nil {
		return failed(err)
	}
	oc, rerr := server.OpenContext(ss.s.pool, ss.uid, cfg, "", false, ss.log)
	if rerr != nil {
		if rerr.Code == encproto.Refused {
			ss.s.cfg.Counters.OpenRefused()
		}
		return failed(fmt.Errorf("%s", rerr.Message))
	}
	defer oc.Close()
	end := ss.s.cfg.Counters.Begin()
	f, err := oc.Enc.Encode(img.pix, img.stride, codec.FrameOptions{Keyframe: true, Quality: -1, Speed: -1})
	end()
	ss.s.cfg.Counters.Frame(oc.Backend, frameResult(err))
	if err != nil {
		return failed(err)
	}
	co := value.Dict{{Key: "quality", Value: int64(cfg.Quality)}}
	if c.Video() {
		co = append(co, value.Item{Key: "frame", Value: int64(0)}, value.Item{Key: "csc", Value: "YUV420P"},
			value.Item{Key: "type", Value: "IDR"})
	}
	// Sent before oc.Close frees f.Data.
	return ss.send(conn.Packet{pEncodeResponse, c.String(), f.Data, co, w, h, int64(0), int64(24), metadata})
}

// frameResult is how an Encode's error counts (server.Counters).
func frameResult(err error) int {
	if err != nil {
		return encproto.FrameFailed
	}
	return encproto.FrameOK
}
