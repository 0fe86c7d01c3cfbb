// SPDX-License-Identifier: GPL-2.0-or-later

// Package x264 is the CPU video backend: packed RGB frames as xpra
// servers send them are converted to I420 by libyuv (SIMD, BT.601 limited
// range, as xpra's own csc step does) and compressed by libx264 into
// annex-B H.264 with SPS/PPS before every keyframe, tuned for latency
// (no B-frames, no lookahead, sliced threads).
package x264

/*
#cgo LDFLAGS: -lx264 -lyuv
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <x264.h>
#include <libyuv/convert.h>

typedef struct {
	x264_t *h;
	x264_param_t param;
	x264_picture_t pic;
	int pic_alloced;
	int64_t pts;
} enc_t;

static const char *presets[] = {"medium", "fast", "faster", "veryfast", "superfast", "ultrafast"};

static int enc_open(enc_t *e, int w, int h, int preset, float crf, int threads, const char *profile) {
	memset(e, 0, sizeof(*e));
	if (x264_param_default_preset(&e->param, presets[preset], "zerolatency") < 0)
		return -1;
	e->param.i_log_level = X264_LOG_NONE;
	e->param.i_width = w;
	e->param.i_height = h;
	e->param.i_csp = X264_CSP_I420;
	e->param.i_threads = threads;
	e->param.i_fps_num = 30;
	e->param.i_fps_den = 1;
	e->param.i_keyint_max = X264_KEYINT_MAX_INFINITE;
	e->param.b_annexb = 1;
	e->param.b_repeat_headers = 1;
	e->param.rc.i_rc_method = X264_RC_CRF;
	e->param.rc.f_rf_constant = crf;
	// libyuv's conversion: BT.601, limited range.
	e->param.vui.b_fullrange = 0;
	e->param.vui.i_colorprim = 6;
	e->param.vui.i_transfer = 6;
	e->param.vui.i_colmatrix = 6;
	if (x264_param_apply_profile(&e->param, profile) < 0)
		return -2;
	if (x264_picture_alloc(&e->pic, X264_CSP_I420, w, h) < 0)
		return -3;
	e->pic_alloced = 1;
	e->h = x264_encoder_open(&e->param);
	if (!e->h)
		return -4;
	return 0;
}

static int enc_reconfig(enc_t *e, float crf) {
	e->param.rc.f_rf_constant = crf;
	return x264_encoder_reconfig(e->h, &e->param);
}

// fmt: 1 BGRX/BGRA, 2 RGBX/RGBA, 3 BGR, 4 RGB (bytes in memory order).
static int enc_convert(enc_t *e, const uint8_t *src, int stride, int fmt) {
	x264_image_t *img = &e->pic.img;
	int w = e->param.i_width, h = e->param.i_height;
	switch (fmt) {
	case 1:
		return ARGBToI420(src, stride, img->plane[0], img->i_stride[0], img->plane[1], img->i_stride[1],
			img->plane[2], img->i_stride[2], w, h);
	case 2:
		return ABGRToI420(src, stride, img->plane[0], img->i_stride[0], img->plane[1], img->i_stride[1],
			img->plane[2], img->i_stride[2], w, h);
	case 3:
		return RGB24ToI420(src, stride, img->plane[0], img->i_stride[0], img->plane[1], img->i_stride[1],
			img->plane[2], img->i_stride[2], w, h);
	case 4:
		return RAWToI420(src, stride, img->plane[0], img->i_stride[0], img->plane[1], img->i_stride[1],
			img->plane[2], img->i_stride[2], w, h);
	}
	return -1;
}

// enc_encode returns the bitstream size (0: nothing yet, <0: error) and
// points *out at x264's buffer, which holds every NAL back to back.
static int enc_encode(enc_t *e, const uint8_t *src, int stride, int fmt, int keyframe, uint8_t **out, int *idr) {
	if (enc_convert(e, src, stride, fmt) != 0)
		return -100;
	e->pic.i_pts = e->pts++;
	e->pic.i_type = keyframe ? X264_TYPE_IDR : X264_TYPE_AUTO;
	x264_nal_t *nals;
	int n;
	x264_picture_t out_pic;
	int size = x264_encoder_encode(e->h, &nals, &n, &e->pic, &out_pic);
	if (size <= 0 || n <= 0) {
		*out = NULL;
		return size;
	}
	*out = nals[0].p_payload;
	*idr = out_pic.b_keyframe;
	return size;
}

static void enc_close(enc_t *e) {
	if (e->h)
		x264_encoder_close(e->h);
	if (e->pic_alloced)
		x264_picture_clean(&e->pic);
	e->h = NULL;
	e->pic_alloced = 0;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
)

// Encoder is one x264 context.
type Encoder struct {
	cfg codec.Config
	fmt C.int
	e   *C.enc_t
}

var _ codec.Encoder = (*Encoder)(nil)

// Profiles x264 may be asked for (the HTML5 client decodes baseline only).
var Profiles = []string{"baseline", "main", "high"}

// preset maps xpra's speed (0..100) to one of the six presets from
// "medium" to "ultrafast" at the thresholds xpra 3.1's own x264 encoder
// uses, so a speed means the same work here as there; slower presets
// cannot keep up with a desktop.
func preset(speed int) C.int {
	switch {
	case speed >= 100:
		return 5 // ultrafast
	case speed >= 80:
		return 4 // superfast
	case speed >= 60:
		return 3 // veryfast
	case speed >= 40:
		return 2 // faster
	case speed >= 20:
		return 1 // fast
	}
	return 0 // medium
}

// crf maps xpra's quality (0..100) to x264's constant rate factor 50..1,
// linearly, which gives the bitstream sizes xpra 3.1's own x264 encoder
// gives at the same quality on the same frames (BENCHMARKS.md): a client
// asking for a quality gets what it would have got from its server.
func crf(quality int) C.float { return C.float(50 - float64(quality)*0.49) }

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

// New opens a context; profile is "baseline", "main" or "high" ("" is
// "high").
func New(cfg codec.Config, profile string) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("x264: %w", err)
	}
	if cfg.Codec != codec.H264 {
		return nil, fmt.Errorf("x264: %v: %w", cfg.Codec, codec.ErrInvalid)
	}
	if profile == "" {
		profile = "high"
	}
	ok := false
	for _, p := range Profiles {
		ok = ok || p == profile
	}
	if !ok {
		return nil, fmt.Errorf("x264: profile %q: %w", profile, codec.ErrInvalid)
	}
	cprofile := C.CString(profile)
	defer C.free(unsafe.Pointer(cprofile))
	// C memory: x264 keeps pointers into param and pic.
	e := (*C.enc_t)(C.calloc(1, C.sizeof_enc_t))
	if e == nil {
		return nil, fmt.Errorf("x264: out of memory")
	}
	if rc := C.enc_open(e, C.int(cfg.Width), C.int(cfg.Height), preset(cfg.Speed), crf(cfg.Quality), C.int(cfg.Threads), cprofile); rc != 0 {
		C.enc_close(e)
		C.free(unsafe.Pointer(e))
		return nil, fmt.Errorf("x264: opening a %dx%d encoder failed (step %d)", cfg.Width, cfg.Height, -rc)
	}
	enc := &Encoder{cfg: cfg, fmt: formatCode(cfg.Format), e: e}
	runtime.SetFinalizer(enc, (*Encoder).Close)
	return enc, nil
}

// Backend is "x264".
func (*Encoder) Backend() string { return "x264" }

// Encode compresses one frame. The returned Data points into x264's own
// buffer: valid until the next Encode or Close.
func (enc *Encoder) Encode(pix []byte, stride int, opts codec.FrameOptions) (codec.Frame, error) {
	if enc.e == nil {
		return codec.Frame{}, fmt.Errorf("x264: encoder closed")
	}
	if err := enc.cfg.CheckStride(stride); err != nil {
		return codec.Frame{}, fmt.Errorf("x264: %w", err)
	}
	if need := enc.cfg.FrameBytes(stride); len(pix) < need {
		return codec.Frame{}, fmt.Errorf("x264: frame of %d bytes, need %d: %w", len(pix), need, codec.ErrInvalid)
	}
	if opts.Quality >= 0 && opts.Quality <= 100 && opts.Quality != enc.cfg.Quality {
		if C.enc_reconfig(enc.e, crf(opts.Quality)) < 0 {
			return codec.Frame{}, fmt.Errorf("x264: changing quality to %d failed", opts.Quality)
		}
		enc.cfg.Quality = opts.Quality
	}
	var out *C.uint8_t
	var idr C.int
	key := C.int(0)
	if opts.Keyframe {
		key = 1
	}
	n := C.enc_encode(enc.e, (*C.uint8_t)(unsafe.Pointer(&pix[0])), C.int(stride), enc.fmt, key, &out, &idr)
	runtime.KeepAlive(pix)
	if n < 0 {
		return codec.Frame{}, fmt.Errorf("x264: encoding failed (%d)", int(n))
	}
	if n == 0 || out == nil {
		// Cannot happen without lookahead or B-frames; say so if it does.
		return codec.Frame{}, fmt.Errorf("x264: encoder held the frame back")
	}
	return codec.Frame{Data: unsafe.Slice((*byte)(unsafe.Pointer(out)), int(n)), Keyframe: idr != 0}, nil
}

// Close frees the context; calling it again does nothing.
func (enc *Encoder) Close() {
	if enc.e != nil {
		C.enc_close(enc.e)
		C.free(unsafe.Pointer(enc.e))
		enc.e = nil
	}
	runtime.SetFinalizer(enc, nil)
}
