// SPDX-License-Identifier: GPL-2.0-or-later

// Package reencode re-encodes a session's frames with the shared encoder
// (xpra-proxy-encode) on their way to the client: raw rgb from xpra 3.1
// servers (reencode.go, draw.go) and proxy frames from 4.3-6.3 servers
// (proxy.go). It sits between the server's connection and the relay's
// server leg.
package reencode

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/internal/bufpool"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/packet"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Re-encoding for xpra 3.1 servers.
//
// A 3.1 server cannot be asked for frames marked for the proxy: on
// Python 3 it stores the hello's encoding.* keys as bytes and looks
// "proxy.video.encodings" up as str, finds nothing and drops the
// proxy codec ("failed to parse proxy video", PROXY.md §5.3 has the
// other reasons). So the relay asks the server for plain rgb instead
// (RawFramesHello) and does what a server's video source does with it:
// each window's pixels are kept in a backing buffer (shared memory the
// encoder maps) that every rgb draw updates, and a large enough draw
// goes to the client as one H.264 frame of the whole window, encoded
// by the shared pool. Small draws, windows with alpha and every draw
// the pool cannot take go to the client as rgb, lz4-compressed when it
// decodes that: as the server would have sent them. A window's last
// video frame is followed by a lossless rgb refresh after the client's
// auto-refresh delay, as a server does after lossy frames.
//
// The Reencoder sits between the server connection and the relay's
// server leg: it reads the server's packets and writes them (changed or
// not) into one end of a socketpair whose other end is the leg, and
// copies the leg's bytes to the server untouched.

// Options shape a Reencoder.
type Options struct {
	// Mode is what the server was asked for: raw rgb (3.1) or proxy
	// frames (4.3-6.3, proxy.go).
	Mode Mode
	// ProxyCaps are the hello keys that ask for proxy frames (ProxyVideo mode).
	ProxyCaps value.Dict
	// Quality and Speed (0..100) of the H.264 contexts.
	Quality, Speed int
	// Profile is the client's H.264 profile for 4:2:0 ("": the encoder's).
	Profile string
	// RefreshDelay: a window's last video frame is replaced by a lossless
	// one after this long without a new frame (0: never).
	RefreshDelay time.Duration
	// LZ4: the client decodes lz4-compressed rgb.
	LZ4 bool
	// MinPixels: smaller draws go as rgb (default 64x64).
	MinPixels int
	// IdleClose frees a window's context after this long without a frame
	// (default 10 s), so idle windows do not hold the pool's places.
	IdleClose time.Duration
	// RetryRefused is how long a window whose context the pool refused
	// goes as rgb before asking again (default 3 s).
	RetryRefused time.Duration
}

// Stats are the Reencoder's counters (Connection.Info shows them).
type Stats struct {
	Frames    atomic.Int64 // H.264 frames sent to the client
	Rgb       atomic.Int64 // rgb draws of re-encodable windows sent as rgb
	Refreshes atomic.Int64 // lossless refreshes after video frames
	Refused   atomic.Int64 // contexts the pool refused
	Failures  atomic.Int64 // contexts lost or frames the pool failed
	Contexts  atomic.Int64 // contexts open now
	BytesIn   atomic.Int64 // pixel bytes of the re-encoded draws
	BytesOut  atomic.Int64 // H.264 bytes sent for them
}

// Info is the counters for the control socket, under proxy.encode.
func (s *Stats) Info() value.Dict {
	return value.Dict{
		{Key: "encode.frames", Value: s.Frames.Load()}, {Key: "encode.rgb", Value: s.Rgb.Load()},
		{Key: "encode.refreshes", Value: s.Refreshes.Load()}, {Key: "encode.refused", Value: s.Refused.Load()},
		{Key: "encode.failures", Value: s.Failures.Load()}, {Key: "encode.contexts", Value: s.Contexts.Load()},
		{Key: "encode.bytes-in", Value: s.BytesIn.Load()}, {Key: "encode.bytes-out", Value: s.BytesOut.Load()},
	}
}

// Reencoder is the filter on one server connection.
type Reencoder struct {
	Stats Stats

	enc  *client.Client
	opts Options
	log  *slog.Logger

	server net.Conn   // the real server
	sc     *conn.Conn // reads it (its hello done)
	pair   net.Conn   // our end of the socketpair
	out    *conn.Conn // writes to the relay through pair
	relay  net.Conn   // the relay's end
	rc     *conn.Conn

	// mu orders everything written to the relay and guards wins: the
	// server loop holds it per packet, a refresh while it writes.
	mu      sync.Mutex
	wins    map[int64]*window
	pwins   map[int64]*proxyWin // ProxyVideo mode's windows
	buf     []byte              // bitstream buffer, reused
	pixbuf  []byte              // the pixels of the draw being read, reused
	wantPix bool                // the reader is reading a draw's pixels
	pixUsed bool                // pixbuf holds a chunk of the packet being read
	scratch []byte              // a window before a scroll
	frames  []wire.Frame
	closed  bool

	stopOnce sync.Once
	done     chan struct{}
	wg       sync.WaitGroup
}

// window is what the Reencoder keeps per window.
type window struct {
	w, h    int
	alpha   bool          // its draws carry alpha: never re-encoded
	valid   bool          // backing holds the whole window as the client shows it
	backing *client.Frame // BGRX, w*4 bytes a row
	ctx     *client.Context
	cw, ch  int // the context's size (even)
	frame   int // frames sent in the context's stream
	retryAt time.Time
	used    time.Time
	seq     any           // the last draw's sequence, for a refresh
	enc     wire.Encoding // and its packet encoder
	gen     int           // bumped by every video frame: a refresh checks it
	refresh *time.Timer
}

// New starts filtering the server connection snc (read through
// sc, whose hello is done; sh is the server's hello). The relay's server
// leg must use Relay() instead of snc. Close (or the end of either side)
// stops it.
func New(enc *client.Client, snc net.Conn, sc *conn.Conn, sh caps.Hello, opts Options, log *slog.Logger) (*Reencoder, error) {
	if opts.Quality <= 0 || opts.Quality > 100 {
		opts.Quality = 70
	}
	if opts.Speed <= 0 || opts.Speed > 100 {
		opts.Speed = 80
	}
	if opts.MinPixels <= 0 {
		opts.MinPixels = 64 * 64
	}
	if opts.IdleClose <= 0 {
		opts.IdleClose = 10 * time.Second
	}
	if opts.RetryRefused <= 0 {
		opts.RetryRefused = 3 * time.Second
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("re-encoder socketpair: %w", err)
	}
	mine, err := fileConn(fds[0], "reencode")
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	theirs, err := fileConn(fds[1], "relay")
	if err != nil {
		mine.Close()
		return nil, err
	}
	r := &Reencoder{enc: enc, opts: opts, log: log, server: snc, sc: sc, pair: mine, out: conn.New(mine),
		relay: theirs, rc: conn.New(theirs), wins: map[int64]*window{}, pwins: map[int64]*proxyWin{}, done: make(chan struct{})}
	// The leg writes to the server through us: as it would have written
	// to the server itself.
	if err := r.rc.ApplyPeerHello(sh, 0); err != nil {
		r.Close()
		return nil, err
	}
	r.wg.Add(3)
	go func() { defer r.wg.Done(); r.serverLoop() }()
	go func() { defer r.wg.Done(); r.clientLoop() }()
	go func() { defer r.wg.Done(); r.janitor() }()
	return r, nil
}

func fileConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("re-encoder %s end: %w", name, err)
	}
	return c, nil
}

// Relay is the connection the relay's server leg uses in place of the
// server's.
func (r *Reencoder) Relay() (net.Conn, *conn.Conn) { return r.relay, r.rc }

// ForServer puts a Reencoder between the server's connection and the
// relay's server leg when there is an encoder (enc, opts from Connect)
// and the server sends what it re-encodes: raw rgb asked of it, or proxy
// frames, which only 4.3-6.3 servers send. Otherwise, or when the
// Reencoder cannot start, the leg uses the server's connection as it is
// (nil Reencoder). The caller closes a Reencoder it gets.
func ForServer(enc *client.Client, snc net.Conn, sc *conn.Conn, sh caps.Hello, opts Options, log *slog.Logger) (net.Conn, *conn.Conn, *Reencoder) {
	if enc == nil || (opts.Mode != RawFrames && !ProxyVideoServer(sh)) {
		return snc, sc, nil
	}
	re, err := New(enc, snc, sc, sh, opts, log)
	if err != nil {
		log.Warn("re-encoding off", "err", err) // the server's raw frames pass as they are
		return snc, sc, nil
	}
	nc, c := re.Relay()
	return nc, c, re
}

// Close stops both directions, frees the contexts and waits.
func (r *Reencoder) Close() {
	r.stop()
	r.relay.Close()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for wid, ws := range r.wins {
		r.drop(ws)
		delete(r.wins, wid)
	}
	for wid, pw := range r.pwins {
		r.proxyDrop(pw)
		delete(r.pwins, wid)
	}
}

// stop closes the server connection and our end of the pair: each loop
// then ends on its next read or write.
func (r *Reencoder) stop() {
	r.stopOnce.Do(func() {
		close(r.done)
		r.server.Close()
		r.pair.Close()
	})
}

// clientLoop copies what the relay writes for the server.
func (r *Reencoder) clientLoop() {
	defer r.stop()
	if _, err := io.Copy(r.server, r.pair); err != nil && !errors.Is(err, net.ErrClosed) {
		r.log.Debug("re-encoder: to the server", "err", err)
	}
}

// serverLoop reads the server's packets and writes them to the relay.
func (r *Reencoder) serverLoop() {
	defer r.stop()
	rd := r.sc.Reader()
	// The server is the user's own, and its frames are big: sized from
	// the header, the pixels into one buffer reused for every draw (a
	// 1080p frame is 8 MiB, 25 times a second).
	rd.SetEagerAlloc(pixelsEager, r.alloc)
	var raws []wire.Frame
	for {
		h, n, err := rd.ReadHeader()
		var f wire.Frame
		if err == nil {
			r.wantPix = h.Index == drawPixelsIndex && h.Level == 0 && !r.pixUsed
			f, err = rd.ReadPayload(h, n)
			r.wantPix = false
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.log.Debug("re-encoder: from the server", "err", err)
			}
			return
		}
		if f.Header.Index > 0 {
			if len(raws) == wire.MaxPendingRaw {
				r.log.Warn("re-encoder: server sent too many raw chunks")
				return
			}
			raws = append(raws, f)
			continue
		}
		r.mu.Lock()
		err = r.packet(raws, f)
		r.mu.Unlock()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Debug("re-encoder: to the relay", "err", err)
			}
			return
		}
		for _, x := range raws {
			r.release(x.Payload)
		}
		r.release(f.Payload)
		raws = raws[:0]
		r.pixUsed = false
	}
}

// drawPixelsIndex is where a draw's pixels are: a raw chunk for element 7.
const drawPixelsIndex = 7

// pixelsEager: frames up to this size are read into a buffer sized from
// their header (a 4K BGRX frame is 32 MiB).
const pixelsEager = 64 << 20

// alloc gives the reader the pixel buffer for a draw's pixels, a pooled
// buffer for anything else.
func (r *Reencoder) alloc(n int) []byte {
	if !r.wantPix {
		return bufpool.Get(n)
	}
	if cap(r.pixbuf) < n {
		r.pixbuf = make([]byte, n)
	}
	r.pixUsed = true
	return r.pixbuf[:n]
}

// release recycles a frame's buffer unless it is the pixel buffer.
func (r *Reencoder) release(b []byte) {
	if len(b) > 0 && len(r.pixbuf) > 0 && &b[0] == &r.pixbuf[:1][0] {
		return
	}
	bufpool.Put(b)
}

// packet handles one packet (its raw chunks, then its main chunk): the
// few types that matter are looked at, everything goes on in order.
func (r *Reencoder) packet(raws []wire.Frame, f wire.Frame) error {
	forward := func() error { return r.out.WriteFrames(append(raws, f)...) }
	payload, err := conn.Plain(f, wire.AbsMaxSize)
	if err != nil {
		return forward() // the relay reports what is wrong with it
	}
	name, _, err := conn.PeekType(f.Header.Encoding(), payload)
	if err != nil {
		return forward()
	}
	switch name {
	case "draw", "new-window", "new-override-redirect", "window-resized", "window-move-resize", "lost-window":
	case "window-draw", "window-create", "window-destroy": // 6.x names
		if r.opts.Mode != ProxyVideo {
			return forward()
		}
	default:
		return forward()
	}
	p, err := conn.DecodeFrames(raws, f, wire.AbsMaxSize, packet.Aliases{})
	if err != nil {
		return forward()
	}
	if r.opts.Mode == ProxyVideo {
		return r.proxyPacket(name, raws, f, p)
	}
	switch name {
	case "draw":
		return r.draw(raws, f, p)
	case "lost-window":
		if len(p) >= 2 {
			if wid, ok := value.AsInt(p[1]); ok {
				r.forget(wid)
			}
		}
	default:
		if wid, w, h, err := windowGeometry(p); err == nil {
			r.resize(wid, w, h)
		}
	}
	return forward()
}

// resize records a window's (new) size; its backing and context start
// again with the next full draw.
func (r *Reencoder) resize(wid int64, w, h int) {
	ws := r.wins[wid]
	if ws == nil {
		r.wins[wid] = &window{w: w, h: h}
		return
	}
	if ws.w != w || ws.h != h {
		r.drop(ws)
		*ws = window{w: w, h: h, alpha: ws.alpha}
	}
}

func (r *Reencoder) forget(wid int64) {
	if ws := r.wins[wid]; ws != nil {
		r.drop(ws)
		delete(r.wins, wid)
	}
}

// drop frees a window's context, backing and timer.
func (r *Reencoder) drop(ws *window) {
	r.closeContext(ws)
	if ws.backing != nil {
		ws.backing.Close()
		ws.backing = nil
	}
	if ws.refresh != nil {
		ws.refresh.Stop()
		ws.refresh = nil
	}
	ws.valid = false
	ws.gen++
}

func (r *Reencoder) closeContext(ws *window) {
	if ws.ctx != nil {
		if err := ws.ctx.Close(); err != nil {
			r.log.Debug("re-encoder: closing a context", "err", err)
		}
		ws.ctx = nil
		r.Stats.Contexts.Add(-1)
	}
}

// draw sends a draw on: as H.264 of the whole window when it can, else
// as it came (rgb compressed for the client when it decodes lz4).
func (r *Reencoder) draw(raws []wire.Frame, f wire.Frame, p conn.Packet) error {
	forward := func() error { return r.out.WriteFrames(append(raws, f)...) }
	if len(p) > 7 {
		if coding, _ := value.AsString(p[6]); coding == "scroll" {
			r.scroll(p)
			return forward()
		}
	}
	d, err := parseDraw(p)
	if err != nil {
		r.log.Debug("re-encoder: draw", "err", err)
		return forward()
	}
	ws := r.wins[d.wid]
	if ws == nil {
		return forward()
	}
	if d.coding != "rgb24" && d.coding != "rgb32" || d.transformed() {
		// Painted by something we did not see: the backing is stale.
		ws.valid = false
		return forward()
	}
	pf, err := d.rgbFormat()
	if err != nil {
		ws.valid = false
		return forward()
	}
	if pf == codec.BGRA || pf == codec.RGBA {
		ws.alpha = true
	}
	pix, stride, err := d.rgbPixels(pf)
	if ws.alpha || err != nil || d.x+d.w > ws.w || d.y+d.h > ws.h || ws.w < 16 || ws.h < 16 ||
		ws.w > codec.MaxDimension || ws.h > codec.MaxDimension {
		ws.valid = false
		return forward()
	}
	if ws.backing == nil {
		if ws.backing, err = client.NewFrame(ws.w * 4 * ws.h); err != nil {
			r.log.Warn("re-encoder: window buffer", "err", err)
			return forward()
		}
	}
	blit(ws.backing.Bytes(), ws.w*4, d.x, d.y, pix, stride, d.w, d.h, pf)
	if d.x == 0 && d.y == 0 && d.w == ws.w && d.h == ws.h {
		ws.valid = true
	}
	ws.seq, ws.enc = d.seq, f.Header.Encoding()
	if ws.valid && d.w*d.h >= r.opts.MinPixels {
		flush, _ := d.opt("flush")
		if frames, ok := r.encode(ws, d.wid, d.seq, flush, f.Header.Encoding()); ok {
			r.Stats.BytesIn.Add(int64(d.w * d.h * pf.BytesPerPixel()))
			return r.out.WriteFrames(frames...)
		}
	}
	r.Stats.Rgb.Add(1)
	return r.sendRgb(raws, f, d, p)
}

// scroll applies a scroll draw to the window's backing, as the client
// applies it to what it shows.
func (r *Reencoder) scroll(p conn.Packet) {
	wid, _ := value.AsInt(p[1])
	ws := r.wins[wid]
	if ws == nil || ws.backing == nil {
		return
	}
	moves, err := parseScrolls(p[7])
	if err != nil {
		r.log.Debug("re-encoder: scroll", "err", err)
		ws.valid = false
		return
	}
	if len(r.scratch) < len(ws.backing.Bytes()) {
		r.scratch = make([]byte, len(ws.backing.Bytes()))
	}
	applyScrolls(ws.backing.Bytes(), r.scratch, ws.w, ws.h, moves)
}

// sendRgb forwards an rgb draw, lz4-compressing its pixels when the
// client decodes that (the server was asked not to compress them).
func (r *Reencoder) sendRgb(raws []wire.Frame, f wire.Frame, d draw, p conn.Packet) error {
	if !r.opts.LZ4 || len(d.data) < 4096 {
		return r.out.WriteFrames(append(raws, f)...)
	}
	z, _, err := compress.Compress(compress.LZ4, 1, d.data)
	if err != nil || len(z) >= len(d.data) {
		return r.out.WriteFrames(append(raws, f)...)
	}
	opts := append(append(value.Dict(nil), d.opts...), value.Item{Key: "lz4", Value: int64(1)})
	q := append(conn.Packet(nil), p...)
	q[7] = z
	if len(q) > 10 {
		q[10] = opts
	} else {
		q = append(q, opts)
	}
	r.frames, err = packetFrames(r.frames[:0], f.Header.Encoding(), q)
	if err != nil {
		return r.out.WriteFrames(append(raws, f)...)
	}
	return r.out.WriteFrames(r.frames...)
}

// encode compresses the window's backing with its context (opened if
// needed) and returns the frames to send; false: send rgb instead.
func (r *Reencoder) encode(ws *window, wid int64, seq, flush any, e wire.Encoding) ([]wire.Frame, bool) {
	now := time.Now()
	cw, ch := ws.w&^1, ws.h&^1
	if ws.ctx != nil && (ws.cw != cw || ws.ch != ch) {
		r.closeContext(ws)
	}
	if ws.ctx == nil {
		if now.Before(ws.retryAt) {
			return nil, false
		}
		if _, up := r.enc.Connected(); !up {
			return nil, false
		}
		ctx, err := r.enc.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: uint16(cw), Height: uint16(ch),
			Quality: uint8(r.opts.Quality), Speed: uint8(r.opts.Speed), Profile: r.opts.Profile})
		if err != nil {
			if client.IsRefused(err) {
				r.Stats.Refused.Add(1)
				ws.retryAt = now.Add(r.opts.RetryRefused)
				r.log.Debug("re-encoder: pool refused a context", "wid", wid, "err", err)
			} else {
				r.Stats.Failures.Add(1)
				ws.retryAt = now.Add(500 * time.Millisecond)
				r.log.Debug("re-encoder: no context", "wid", wid, "err", err)
			}
			return nil, false
		}
		ws.ctx, ws.cw, ws.ch, ws.frame = ctx, cw, ch, 0
		r.Stats.Contexts.Add(1)
	}
	data, _, err := ws.ctx.AppendCompress(r.buf[:0], ws.backing, 0, ws.w*4, client.FrameOptions{Keyframe: ws.frame == 0, Quality: -1, Speed: -1})
	if err != nil {
		// Whatever broke, the next video frame starts a new stream.
		r.Stats.Failures.Add(1)
		if !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, client.ErrContextLost) {
			r.log.Warn("re-encoder: frame", "wid", wid, "err", err)
		}
		r.closeContext(ws)
		ws.retryAt = now.Add(500 * time.Millisecond)
		return nil, false
	}
	r.buf = data
	ws.used = now
	var perr error
	r.frames, perr = packetFrames(r.frames[:0], e, h264Draw(wid, cw, ch, data, seq, ws.frame, flush))
	// An odd width or height: the last column and row go as rgb.
	if perr == nil && cw < ws.w {
		r.frames, perr = r.rgbFrames(r.frames, e, wid, ws, cw, 0, 1, ws.h, seq)
	}
	if perr == nil && ch < ws.h {
		r.frames, perr = r.rgbFrames(r.frames, e, wid, ws, 0, ch, cw, 1, seq)
	}
	if perr != nil {
		r.log.Warn("re-encoder: building a draw", "err", perr)
		r.closeContext(ws)
		return nil, false
	}
	ws.frame++
	r.Stats.Frames.Add(1)
	r.Stats.BytesOut.Add(int64(len(data)))
	r.scheduleRefresh(ws, wid)
	return r.frames, true
}

// rgbFrames appends an rgb draw of a region of the backing.
func (r *Reencoder) rgbFrames(dst []wire.Frame, e wire.Encoding, wid int64, ws *window, x, y, w, h int, seq any) ([]wire.Frame, error) {
	pix := make([]byte, w*4*h)
	src := ws.backing.Bytes()
	for row := range h {
		copy(pix[row*w*4:(row+1)*w*4], src[(y+row)*ws.w*4+x*4:])
	}
	opts := value.Dict{{Key: "rgb_format", Value: "BGRX"}}
	data := pix
	if r.opts.LZ4 && len(pix) >= 4096 {
		if z, _, err := compress.Compress(compress.LZ4, 1, pix); err == nil && len(z) < len(pix) {
			data = z
			opts = append(opts, value.Item{Key: "lz4", Value: int64(1)})
		}
	}
	return packetFrames(dst, e, rgbDraw(wid, x, y, w, h, data, w*4, seq, opts))
}

// scheduleRefresh arms the lossless refresh that follows a window's
// last video frame.
func (r *Reencoder) scheduleRefresh(ws *window, wid int64) {
	ws.gen++
	if r.opts.RefreshDelay <= 0 {
		return
	}
	gen := ws.gen
	if ws.refresh != nil {
		ws.refresh.Stop()
	}
	ws.refresh = time.AfterFunc(r.opts.RefreshDelay, func() { r.refreshWindow(wid, gen) })
}

// refreshWindow sends the whole window as rgb if no video frame came
// since gen.
func (r *Reencoder) refreshWindow(wid int64, gen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.wins[wid]
	if r.closed || ws == nil || ws.gen != gen || !ws.valid || ws.backing == nil {
		return
	}
	frames, err := r.rgbFrames(nil, ws.enc, wid, ws, 0, 0, ws.w, ws.h, ws.seq)
	if err != nil {
		r.log.Warn("re-encoder: refresh", "err", err)
		return
	}
	r.Stats.Refreshes.Add(1)
	if err := r.out.WriteFrames(frames...); err != nil {
		r.log.Debug("re-encoder: refresh", "err", err) // the connection is going: the loops see it too
	}
}

// janitor frees the contexts of windows that stopped changing.
func (r *Reencoder) janitor() {
	t := time.NewTicker(r.opts.IdleClose / 2)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			r.mu.Lock()
			for _, ws := range r.wins {
				if ws.ctx != nil && now.Sub(ws.used) > r.opts.IdleClose {
					r.closeContext(ws)
				}
			}
			for _, pw := range r.pwins {
				if pw.ctx != nil && now.Sub(pw.used) > r.opts.IdleClose {
					r.proxyCloseContext(pw)
				}
			}
			r.mu.Unlock()
		}
	}
}

// Connect connects to the shared encoder at socket (served by uid
// serverUID) when socket is set, the client decodes H.264 (its caps c),
// the pool serves H.264 now and the client is either a 3.1 one (flat
// caps, rencode: the server is asked for raw rgb) or one that speaks
// rencodeplus (so its server is 4.3 or later: it is asked for proxy
// frames). Otherwise (nil) the connection relays as it would without the
// pool. The caller closes the client.
func Connect(socket string, serverUID int, form caps.Form, clientEncoding wire.Encoding, c caps.Caps, log *slog.Logger) (*client.Client, Options) {
	var o Options
	proxy := clientEncoding == wire.RencodePlus
	if socket == "" || form != caps.Flat && !proxy {
		return nil, o
	}
	if !slices.Contains(c.Strings("encodings"), "h264") && !slices.Contains(c.Strings("encodings.core"), "h264") {
		return nil, o
	}
	enc := client.New(socket, client.Options{ServerUID: serverUID, Timeout: time.Second, Log: log})
	hello, up := enc.Connected()
	if !up || !slices.Contains(hello.Codecs, codec.H264) {
		// Down at the start: this connection does without it (the server
		// is asked for what the client decodes, as usual).
		enc.Close()
		log.Info("encoder not available: relaying without re-encoding", "socket", socket)
		return nil, o
	}
	if proxy {
		o.Mode, o.ProxyCaps = ProxyVideo, ProxyVideoCaps(hello)
	}
	o.Quality, o.Speed = 70, 80
	if q := c.Int("quality", 0); q > 0 && q <= 100 {
		o.Quality = int(q)
	}
	if sp := c.Int("speed", 0); sp > 0 && sp <= 100 {
		o.Speed = int(sp)
	}
	if p := c.Str("encoding.h264.YUV420P.profile", ""); p == "baseline" || p == "main" || p == "high" {
		o.Profile = p
	}
	o.RefreshDelay = time.Duration(c.Int("auto_refresh_delay", 150)) * time.Millisecond
	o.LZ4 = c.Bool("encoding.rgb_lz4", c.Bool("lz4", false))
	return enc, o
}
