// SPDX-License-Identifier: GPL-2.0-or-later

// Package nvenc is the GPU backend: H.264 and HEVC on NVIDIA's hardware
// encoder, one CUDA context and NVENC session per encoding context, on
// the GPU the pool chose (matched by NVML's UUID). It builds without a
// GPU or driver: nv-codec-headers' loader opens libcuda.so.1 and
// libnvidia-encode.so.1 at run time, and Available says why it cannot
// when they are missing.
//
// Frames are copied once into NVENC's input buffer (the pixels live in
// the client's shared memory, which the driver cannot take as is);
// 24-bit input is widened to 32-bit on that copy.
//
// Not tested on hardware: no machine of this project has a GPU. The
// tests prove the "no driver" path only.
package nvenc

/*
#cgo LDFLAGS: -ldl -lyuv -lpthread
#include <stdlib.h>
#include "nvenc.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
)

// ErrNoDriver marks the driver's libraries missing or unusable.
var ErrNoDriver = errors.New("nvenc: driver unavailable")

type driverError struct{ msg string }

func (e *driverError) Error() string        { return e.msg }
func (e *driverError) Is(target error) bool { return target == ErrNoDriver }

const errLen = 256

// Available loads the driver's libraries (once) and returns nil if NVENC
// can be used, else an error matching ErrNoDriver that says why.
func Available() error {
	buf := (*C.char)(C.calloc(errLen, 1))
	defer C.free(unsafe.Pointer(buf))
	if C.nv_load(buf, errLen) != 0 {
		return &driverError{C.GoString(buf)}
	}
	return nil
}

// Encoder is one NVENC session.
type Encoder struct {
	cfg codec.Config
	e   *C.nv_enc
	err *C.char
}

var _ codec.Encoder = (*Encoder)(nil)

// qp maps xpra's quality (0..100) to a constant quantizer 45..12.
func qp(quality int) C.int { return C.int(45 - quality*33/100) }

func formatCode(f codec.PixelFormat) C.int {
	switch f {
	case codec.BGRX, codec.BGRA:
		return 1
	case codec.RGBX, codec.RGBA:
		return 2
	case codec.BGR:
		return 3
	case codec.RGB:
		return 4
	}
	return 0
}

// New opens a session on the GPU with this NVML UUID ("" for the first).
func New(cfg codec.Config, gpuUUID string) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nvenc: %w", err)
	}
	var c C.int
	switch cfg.Codec {
	case codec.H264:
		c = 1
	case codec.HEVC:
		c = 2
	default:
		return nil, fmt.Errorf("nvenc: %v: %w", cfg.Codec, codec.ErrInvalid)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	errBuf := (*C.char)(C.calloc(errLen, 1))
	uuid := C.CString(gpuUUID)
	defer C.free(unsafe.Pointer(uuid))
	e := C.nv_open(uuid, c, C.int(cfg.Width), C.int(cfg.Height), formatCode(cfg.Format), C.int(cfg.Speed), qp(cfg.Quality), errBuf, errLen)
	if e == nil {
		msg := C.GoString(errBuf)
		C.free(unsafe.Pointer(errBuf))
		return nil, fmt.Errorf("nvenc: %s", msg)
	}
	enc := &Encoder{cfg: cfg, e: e, err: errBuf}
	runtime.SetFinalizer(enc, (*Encoder).Close)
	return enc, nil
}

// Backend is "nvenc".
func (*Encoder) Backend() string { return "nvenc" }

// Encode compresses one frame; Data is valid until the next Encode or
// Close.
func (enc *Encoder) Encode(pix []byte, stride int, opts codec.FrameOptions) (codec.Frame, error) {
	if enc.e == nil {
		return codec.Frame{}, fmt.Errorf("nvenc: encoder closed")
	}
	if err := enc.cfg.CheckStride(stride); err != nil {
		return codec.Frame{}, fmt.Errorf("nvenc: %w", err)
	}
	if need := enc.cfg.FrameBytes(stride); len(pix) < need {
		return codec.Frame{}, fmt.Errorf("nvenc: frame of %d bytes, need %d: %w", len(pix), need, codec.ErrInvalid)
	}
	q := C.int(-1)
	if opts.Quality >= 0 && opts.Quality <= 100 {
		q = qp(opts.Quality)
	}
	key := C.int(0)
	if opts.Keyframe {
		key = 1
	}
	var out *C.uint8_t
	var idr C.int
	n := C.nv_encode(enc.e, (*C.uint8_t)(unsafe.Pointer(&pix[0])), C.int(stride), key, q, &out, &idr, enc.err, errLen)
	runtime.KeepAlive(pix)
	if n < 0 {
		return codec.Frame{}, fmt.Errorf("nvenc: %s", C.GoString(enc.err))
	}
	return codec.Frame{Data: unsafe.Slice((*byte)(unsafe.Pointer(out)), int(n)), Keyframe: idr != 0}, nil
}

// Close ends the session; calling it again does nothing.
func (enc *Encoder) Close() {
	if enc.e != nil {
		C.nv_close(enc.e)
		C.free(unsafe.Pointer(enc.err))
		enc.e, enc.err = nil, nil
	}
	runtime.SetFinalizer(enc, nil)
}
