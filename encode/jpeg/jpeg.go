// SPDX-License-Identifier: GPL-2.0-or-later

// Package jpeg is the still-picture backend: libjpeg-turbo's TurboJPEG
// API compresses the packed RGB frame straight from its stride (no
// conversion pass of ours), with chroma subsampling chosen from quality
// as xpra does: 4:2:0 below 60, 4:2:2 below 80, 4:4:4 above.
package jpeg

/*
#cgo LDFLAGS: -lturbojpeg
#include <stdlib.h>
#include <turbojpeg.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
)

// Encoder is one TurboJPEG handle with an output buffer sized for the
// worst case, so compressing never reallocates.
type Encoder struct {
	cfg     codec.Config
	h       C.tjhandle
	buf     *C.uchar
	bufSize C.ulong
	pf      C.int
}

var _ codec.Encoder = (*Encoder)(nil)

func pixelFormat(f codec.PixelFormat) C.int {
	switch f {
	case codec.BGRX:
		return C.TJPF_BGRX
	case codec.BGRA:
		return C.TJPF_BGRA
	case codec.RGBX:
		return C.TJPF_RGBX
	case codec.RGBA:
		return C.TJPF_RGBA
	case codec.BGR:
		return C.TJPF_BGR
	case codec.RGB:
		return C.TJPF_RGB
	}
	return -1
}

func subsampling(quality int) C.int {
	switch {
	case quality < 60:
		return C.TJSAMP_420
	case quality < 80:
		return C.TJSAMP_422
	}
	return C.TJSAMP_444
}

// New opens a context.
func New(cfg codec.Config) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jpeg: %w", err)
	}
	if cfg.Codec != codec.JPEG {
		return nil, fmt.Errorf("jpeg: %v: %w", cfg.Codec, codec.ErrInvalid)
	}
	h := C.tjInitCompress()
	if h == nil {
		return nil, fmt.Errorf("jpeg: tjInitCompress: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	size := C.tjBufSize(C.int(cfg.Width), C.int(cfg.Height), C.TJSAMP_444)
	buf := C.tjAlloc(C.int(size))
	if buf == nil {
		C.tjDestroy(h)
		return nil, fmt.Errorf("jpeg: no memory for a %d-byte buffer", size)
	}
	e := &Encoder{cfg: cfg, h: h, buf: buf, bufSize: size, pf: pixelFormat(cfg.Format)}
	runtime.SetFinalizer(e, (*Encoder).Close)
	return e, nil
}

// Backend is "jpeg".
func (*Encoder) Backend() string { return "jpeg" }

// Encode compresses one frame into a JFIF file. Data points into the
// context's buffer: valid until the next Encode or Close.
func (e *Encoder) Encode(pix []byte, stride int, opts codec.FrameOptions) (codec.Frame, error) {
	if e.h == nil {
		return codec.Frame{}, fmt.Errorf("jpeg: encoder closed")
	}
	if err := e.cfg.CheckStride(stride); err != nil {
		return codec.Frame{}, fmt.Errorf("jpeg: %w", err)
	}
	if need := e.cfg.FrameBytes(stride); len(pix) < need {
		return codec.Frame{}, fmt.Errorf("jpeg: frame of %d bytes, need %d: %w", len(pix), need, codec.ErrInvalid)
	}
	if opts.Quality >= 0 && opts.Quality <= 100 {
		e.cfg.Quality = opts.Quality
	}
	if opts.Speed >= 0 && opts.Speed <= 100 {
		e.cfg.Speed = opts.Speed
	}
	q := max(e.cfg.Quality, 1)
	buf, size := e.buf, e.bufSize
	flags := C.int(C.TJFLAG_NOREALLOC)
	if e.cfg.Speed >= 50 {
		flags |= C.TJFLAG_FASTDCT
	}
	rc := C.tjCompress2(e.h, (*C.uchar)(unsafe.Pointer(&pix[0])), C.int(e.cfg.Width), C.int(stride), C.int(e.cfg.Height),
		e.pf, &buf, &size, subsampling(q), C.int(q), flags)
	runtime.KeepAlive(pix)
	if rc != 0 {
		return codec.Frame{}, fmt.Errorf("jpeg: %s", C.GoString(C.tjGetErrorStr2(e.h)))
	}
	return codec.Frame{Data: unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(size)), Keyframe: true}, nil
}

// Close frees the handle and buffer; calling it again does nothing.
func (e *Encoder) Close() {
	if e.h != nil {
		C.tjDestroy(e.h)
		C.tjFree(e.buf)
		e.h, e.buf = nil, nil
	}
	runtime.SetFinalizer(e, nil)
}
