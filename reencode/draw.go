// SPDX-License-Identifier: GPL-2.0-or-later

package reencode

import (
	"errors"
	"fmt"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/protocol/conn"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// Bounds on what a draw may claim, well above any real window (the
// encoder's own limit is 8192) and small enough that products of them
// cannot overflow.
const (
	maxDrawDim    = 1 << 14
	maxDrawCoord  = 1 << 16
	maxDrawStride = 1 << 17
)

// draw is a server's `draw` packet:
//
//	["draw", wid, x, y, w, h, coding, data, sequence, rowstride, options]
type draw struct {
	wid        int64
	x, y, w, h int
	coding     string
	data       []byte
	seq        any // echoed back by the client's damage-sequence: kept as it came
	rowstride  int
	opts       value.Dict
}

var errNotDraw = errors.New("not a draw packet")

// parseDraw checks a decoded draw packet's fields. It checks shapes and
// ranges only; whether the pixels fill the region is rgbPixels's job.
func parseDraw(p conn.Packet) (draw, error) {
	var d draw
	if len(p) < 10 {
		return d, fmt.Errorf("%w: %d fields", errNotDraw, len(p))
	}
	if name, _ := value.AsString(p[0]); name != "draw" && name != "window-draw" { // 6.x's new name
		return d, errNotDraw
	}
	ints := [5]int64{}
	for i := range ints {
		n, ok := value.AsInt(p[1+i])
		if !ok {
			return d, fmt.Errorf("draw field %d is %s, not an integer", 1+i, value.TypeName(p[1+i]))
		}
		ints[i] = n
	}
	d.wid = ints[0]
	if ints[1] < 0 || ints[1] > maxDrawCoord || ints[2] < 0 || ints[2] > maxDrawCoord ||
		ints[3] <= 0 || ints[3] > maxDrawDim || ints[4] <= 0 || ints[4] > maxDrawDim {
		return d, fmt.Errorf("draw region %v out of range", ints[1:])
	}
	d.x, d.y, d.w, d.h = int(ints[1]), int(ints[2]), int(ints[3]), int(ints[4])
	var ok bool
	if d.coding, ok = value.AsString(p[6]); !ok {
		return d, fmt.Errorf("draw coding is %s", value.TypeName(p[6]))
	}
	if d.data, ok = value.AsBytes(p[7]); !ok {
		return d, fmt.Errorf("draw data is %s", value.TypeName(p[7]))
	}
	d.seq = p[8]
	stride, ok := value.AsInt(p[9])
	if !ok || stride < 0 || stride > maxDrawStride {
		return d, fmt.Errorf("draw rowstride %v", p[9])
	}
	d.rowstride = int(stride)
	if len(p) > 10 {
		if d.opts, ok = p[10].(value.Dict); !ok && p[10] != nil {
			return d, fmt.Errorf("draw options are %s", value.TypeName(p[10]))
		}
	}
	return d, nil
}

func (d draw) opt(key string) (any, bool) { return d.opts.Get(key) }

// rgbFormat is the pixel layout of an rgb24/rgb32 draw: its rgb_format
// option, else what a 3.1 client assumes for the coding (RGB, RGBX).
func (d draw) rgbFormat() (codec.PixelFormat, error) {
	name := map[string]string{"rgb24": "RGB", "rgb32": "RGBX"}[d.coding]
	if v, ok := d.opt("rgb_format"); ok {
		if name, ok = value.AsString(v); !ok {
			return 0, fmt.Errorf("rgb_format is %s", value.TypeName(v))
		}
	}
	// The coding names the window's depth, not the pixel size: a 3.1
	// server sends depth-24 windows as "rgb24" of BGRX pixels.
	return codec.ParsePixelFormat(name)
}

// transformed reports options that change what the data means: the
// pixels are compressed, or a delta against (or stored for) other draws.
// Those draws pass untouched.
func (d draw) transformed() bool {
	for _, k := range []string{"zlib", "lz4", "lzo", "brotli"} {
		if v, ok := d.opt(k); ok {
			if n, isInt := value.AsInt(v); !isInt || n > 0 {
				return true
			}
		}
	}
	// delta: the sequence this draw is xored against (-1: none); store:
	// the client keeps these pixels for a later delta.
	if v, ok := d.opt("delta"); ok {
		if n, isInt := value.AsInt(v); !isInt || n >= 0 {
			return true
		}
	}
	_, store := d.opt("store")
	return store
}

// rgbPixels returns the draw's pixels and their stride, checked to fill
// the region.
func (d draw) rgbPixels(f codec.PixelFormat) ([]byte, int, error) {
	bpp := f.BytesPerPixel()
	stride := d.rowstride
	if stride == 0 {
		stride = d.w * bpp
	}
	if stride < d.w*bpp {
		return nil, 0, fmt.Errorf("rowstride %d below %d pixels of %v", stride, d.w, f)
	}
	if need := stride*(d.h-1) + d.w*bpp; len(d.data) < need {
		return nil, 0, fmt.Errorf("%d bytes of pixels for %dx%d at stride %d (need %d)", len(d.data), d.w, d.h, stride, need)
	}
	return d.data, stride, nil
}

// blit copies a region of packed pixels in format f into a BGRX image
// (dst, rows dstStride apart) at (dx, dy). The caller checked the bounds.
func blit(dst []byte, dstStride, dx, dy int, src []byte, srcStride, w, h int, f codec.PixelFormat) {
	for row := range h {
		d := dst[(dy+row)*dstStride+dx*4 : (dy+row)*dstStride+(dx+w)*4]
		s := src[row*srcStride:]
		switch f {
		case codec.BGRX, codec.BGRA:
			copy(d, s[:w*4])
		case codec.RGBX, codec.RGBA:
			for i := 0; i < w*4; i += 4 {
				d[i], d[i+1], d[i+2], d[i+3] = s[i+2], s[i+1], s[i], 0xFF
			}
		case codec.BGR:
			for i, j := 0, 0; i < w*4; i, j = i+4, j+3 {
				d[i], d[i+1], d[i+2], d[i+3] = s[j], s[j+1], s[j+2], 0xFF
			}
		case codec.RGB:
			for i, j := 0, 0; i < w*4; i, j = i+4, j+3 {
				d[i], d[i+1], d[i+2], d[i+3] = s[j+2], s[j+1], s[j], 0xFF
			}
		}
	}
}

// h264Draw is the draw a 3.1 client decodes as H.264: the whole encoded
// picture at the window's origin, its colour subsampling in "csc" (the
// client refuses a frame without it) and "frame" numbering the stream
// (0 starts a new one: the client drops its decoder).
func h264Draw(wid int64, w, h int, data []byte, seq any, frame int, flush any) conn.Packet {
	opts := value.Dict{{Key: "csc", Value: "YUV420P"}, {Key: "frame", Value: int64(frame)}}
	if flush != nil {
		opts = append(opts, value.Item{Key: "flush", Value: flush})
	}
	return conn.Packet{"draw", wid, int64(0), int64(0), int64(w), int64(h), "h264", data, seq, int64(0), opts}
}

// rgbDraw is an rgb32 draw of BGRX pixels, lz4-compressed when the
// client said it decodes that (the options name the compressor: the
// client's paint thread undoes it).
func rgbDraw(wid int64, x, y, w, h int, pix []byte, stride int, seq any, opts value.Dict) conn.Packet {
	return conn.Packet{"draw", wid, int64(x), int64(y), int64(w), int64(h), "rgb32", pix, seq, int64(stride), opts}
}

// inlineMax: binary items up to this size stay in the main chunk (xpra
// inlines small pixel data too); larger ones travel as raw chunks.
const inlineMax = 4 << 10

// packetFrames encodes p with e as a main chunk preceded by a raw chunk
// for each large binary item, as a server would send it: the frames go
// to the client unchanged by the relay.
func packetFrames(dst []wire.Frame, e wire.Encoding, p conn.Packet) ([]wire.Frame, error) {
	main := p
	copied := false
	for i := 1; i < len(p) && i <= wire.MaxIndexV3; i++ {
		b, ok := p[i].([]byte)
		if !ok || len(b) <= inlineMax {
			continue
		}
		if len(dst) >= wire.MaxPendingRaw {
			break
		}
		if !copied {
			main = append(conn.Packet(nil), p...)
			copied = true
		}
		main[i] = []byte{}
		dst = append(dst, wire.Frame{Header: wire.Header{Index: byte(i), Size: uint32(len(b))}, Payload: b})
	}
	payload, err := conn.Encode(nil, e, main)
	if err != nil {
		return dst, fmt.Errorf("encoding %v packet: %w", p[0], err)
	}
	return append(dst, wire.Frame{Header: wire.Header{Flags: e.Flag(), Size: uint32(len(payload))}, Payload: payload}), nil
}

// windowGeometry reads the size from new-window / new-override-redirect
// (wid, x, y, w, h, ...), window-move-resize (wid, x, y, w, h, ...) and
// window-resized (wid, w, h).
func windowGeometry(p conn.Packet) (wid int64, w, h int, err error) {
	name, _ := value.AsString(p[0])
	at := 4 // index of w
	if name == "window-resized" {
		at = 2
	}
	if len(p) < at+2 {
		return 0, 0, 0, fmt.Errorf("%s with %d fields", name, len(p))
	}
	var n [3]int64
	for i, idx := range []int{1, at, at + 1} {
		v, ok := value.AsInt(p[idx])
		if !ok {
			return 0, 0, 0, fmt.Errorf("%s field %d is %s", name, idx, value.TypeName(p[idx]))
		}
		n[i] = v
	}
	if n[1] <= 0 || n[1] > maxDrawDim || n[2] <= 0 || n[2] > maxDrawDim {
		return 0, 0, 0, fmt.Errorf("%s size %dx%d out of range", name, n[1], n[2])
	}
	return n[0], int(n[1]), int(n[2]), nil
}

// scroll is one move of a "scroll" draw: the rectangle at (x, y) moves
// by (dx, dy), all of them reading the window as it was before.
type scroll struct{ x, y, w, h, dx, dy int }

// parseScrolls reads a scroll draw's list of (x, y, w, h, xdelta, ydelta).
func parseScrolls(data any) ([]scroll, error) {
	list, ok := data.([]any)
	if !ok {
		return nil, fmt.Errorf("scroll data is %s", value.TypeName(data))
	}
	if len(list) > 4096 {
		return nil, fmt.Errorf("%d scrolls", len(list))
	}
	out := make([]scroll, 0, len(list))
	for _, item := range list {
		t, ok := item.([]any)
		if !ok || len(t) != 6 {
			return nil, fmt.Errorf("scroll entry %s", value.TypeName(item))
		}
		var n [6]int64
		for i := range n {
			v, ok := value.AsInt(t[i])
			if !ok || v < -maxDrawCoord || v > maxDrawCoord {
				return nil, fmt.Errorf("scroll entry field %d: %v", i, t[i])
			}
			n[i] = v
		}
		out = append(out, scroll{int(n[0]), int(n[1]), int(n[2]), int(n[3]), int(n[4]), int(n[5])})
	}
	return out, nil
}

// applyScrolls moves rectangles of a BGRX image (w x h, rows w*4 apart)
// as the client paints a scroll draw: every move reads old, a copy of
// the image before any of them. Parts outside the image are clipped.
func applyScrolls(img, old []byte, w, h int, moves []scroll) {
	copy(old, img)
	for _, m := range moves {
		// Clip the source to the image, then the destination.
		x0, y0, x1, y1 := max(m.x, 0), max(m.y, 0), min(m.x+m.w, w), min(m.y+m.h, h)
		x0, y0 = max(x0, -m.dx), max(y0, -m.dy)
		x1, y1 = min(x1, w-m.dx), min(y1, h-m.dy)
		if x0 >= x1 || y0 >= y1 {
			continue
		}
		for y := y0; y < y1; y++ {
			src := old[y*w*4+x0*4 : y*w*4+x1*4]
			d := (y+m.dy)*w*4 + (x0+m.dx)*4
			copy(img[d:d+len(src)], src)
		}
	}
}
