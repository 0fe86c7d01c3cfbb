// SPDX-License-Identifier: GPL-2.0-or-later

// Package codec holds what every encoder backend of the encoder worker
// shares: the codecs, the raw pixel formats xpra servers send, the
// settings of one encoding context and the Encoder interface the worker
// drives. It has no cgo: the backends (x264, jpeg, nvenc) do.
package codec

import (
	"errors"
	"fmt"
)

// Codec is an output format.
type Codec uint8

// The codecs the pool serves. H264 comes from NVENC or x264, HEVC only
// from NVENC, JPEG from libjpeg-turbo.
const (
	H264 Codec = 1
	HEVC Codec = 2
	JPEG Codec = 3
)

func (c Codec) String() string {
	switch c {
	case H264:
		return "h264"
	case HEVC:
		return "h265"
	case JPEG:
		return "jpeg"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Video reports whether frames depend on earlier ones (a context keeps
// state between frames).
func (c Codec) Video() bool { return c == H264 || c == HEVC }

// ParseCodec takes xpra's encoding names.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "h264":
		return H264, nil
	case "h265", "hevc":
		return HEVC, nil
	case "jpeg":
		return JPEG, nil
	}
	return 0, fmt.Errorf("codec: unknown encoding %q", s)
}

// PixelFormat is the byte order of one packed pixel, named as xpra names
// it (the `rgb_format` draw option): bytes in memory order. X11 servers
// send BGRX (depth 24) or BGRA (depth 32) with the XImage's rowstride,
// which may be wider than width*4; `rgb24` frames are BGR or RGB.
type PixelFormat uint8

// The packed formats the backends accept. r210 and BGR565 (30- and
// 16-bit displays) are not served: such frames go to the client as the
// server sent them.
const (
	BGRX PixelFormat = 1
	BGRA PixelFormat = 2
	RGBX PixelFormat = 3
	RGBA PixelFormat = 4
	BGR  PixelFormat = 5
	RGB  PixelFormat = 6
)

var formatNames = map[PixelFormat]string{
	BGRX: "BGRX", BGRA: "BGRA", RGBX: "RGBX", RGBA: "RGBA", BGR: "BGR", RGB: "RGB",
}

func (f PixelFormat) String() string {
	if s, ok := formatNames[f]; ok {
		return s
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// ParsePixelFormat takes xpra's rgb_format names.
func ParsePixelFormat(s string) (PixelFormat, error) {
	for f, n := range formatNames {
		if n == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("codec: unsupported pixel format %q", s)
}

// BytesPerPixel is 4 for the 32-bit formats, 3 for the 24-bit ones, 0
// for an unknown format.
func (f PixelFormat) BytesPerPixel() int {
	switch f {
	case BGRX, BGRA, RGBX, RGBA:
		return 4
	case BGR, RGB:
		return 3
	}
	return 0
}

// Limits on one context, whatever the backend. NVENC and x264 both stop
// well below; the worker may configure smaller ones.
const (
	MaxDimension = 8192
	MinDimension = 2 // x264 needs at least one 2x2 chroma block
)

// Config is one encoding context.
type Config struct {
	Codec         Codec
	Format        PixelFormat
	Width, Height int
	// Quality and Speed are xpra's 0..100 scales: quality picks the
	// quantizer, speed the encoder preset.
	Quality, Speed int
	// Threads for CPU encoders; 0 lets the backend choose.
	Threads int
}

// ErrInvalid marks a configuration or frame a backend refuses.
var ErrInvalid = errors.New("invalid")

// Validate checks what every backend needs.
func (c Config) Validate() error {
	if c.Codec != H264 && c.Codec != HEVC && c.Codec != JPEG {
		return fmt.Errorf("codec: %v: %w", c.Codec, ErrInvalid)
	}
	if c.Format.BytesPerPixel() == 0 {
		return fmt.Errorf("codec: pixel %v: %w", c.Format, ErrInvalid)
	}
	if c.Width < MinDimension || c.Height < MinDimension || c.Width > MaxDimension || c.Height > MaxDimension {
		return fmt.Errorf("codec: %dx%d outside %d..%d: %w", c.Width, c.Height, MinDimension, MaxDimension, ErrInvalid)
	}
	// 4:2:0 video has no odd sizes; xpra's video specs advertise
	// width_mask/height_mask 0xFFFE so servers send even ones.
	if c.Codec.Video() && (c.Width%2 != 0 || c.Height%2 != 0) {
		return fmt.Errorf("codec: %v needs even dimensions, not %dx%d: %w", c.Codec, c.Width, c.Height, ErrInvalid)
	}
	if c.Quality < 0 || c.Quality > 100 || c.Speed < 0 || c.Speed > 100 {
		return fmt.Errorf("codec: quality %d / speed %d outside 0..100: %w", c.Quality, c.Speed, ErrInvalid)
	}
	if c.Threads < 0 || c.Threads > 64 {
		return fmt.Errorf("codec: %d threads: %w", c.Threads, ErrInvalid)
	}
	return nil
}

// FrameBytes is the smallest buffer holding a frame with this stride:
// every row but the last is stride bytes, the last needs only its pixels.
func (c Config) FrameBytes(stride int) int {
	return stride*(c.Height-1) + c.Width*c.Format.BytesPerPixel()
}

// CheckStride refuses a stride too small for a row or absurdly large.
func (c Config) CheckStride(stride int) error {
	row := c.Width * c.Format.BytesPerPixel()
	if stride < row || stride > row+4096 {
		return fmt.Errorf("codec: stride %d for %d-byte rows: %w", stride, row, ErrInvalid)
	}
	return nil
}

// FrameOptions are per-frame requests.
type FrameOptions struct {
	// Keyframe asks for an IDR frame (a new client, a lost frame).
	Keyframe bool
	// Quality changes the context's quantizer from this frame on; -1
	// keeps it. Speed (the preset) is fixed when a video context opens:
	// x264 and NVENC cannot change it mid-stream; JPEG takes it per frame.
	Quality, Speed int
}

// Frame is one compressed picture.
type Frame struct {
	// Data is the bitstream: annex-B NAL units for H.264/HEVC (with
	// SPS/PPS before every keyframe), a JFIF file for JPEG. It is only
	// valid until the next Encode or Close on the same Encoder.
	Data []byte
	// Keyframe is set for IDR frames and every JPEG.
	Keyframe bool
}

// Encoder is one context of one backend. It is not safe for concurrent
// use; the worker serializes the frames of a context.
type Encoder interface {
	// Encode compresses one frame of Config.Height rows, each stride
	// bytes apart, starting at pix[0]; len(pix) >= FrameBytes(stride).
	Encode(pix []byte, stride int, opts FrameOptions) (Frame, error)
	// Backend names the implementation ("x264", "nvenc", "jpeg").
	Backend() string
	Close()
}
