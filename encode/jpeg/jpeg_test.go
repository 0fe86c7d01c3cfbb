// SPDX-License-Identifier: GPL-2.0-or-later

package jpeg

import (
	"errors"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		format    codec.PixelFormat
		w, h, pad int
		quality   int
		min       float64 // PSNR floor
		pixFmt    string  // ffprobe's pix_fmt: the subsampling used
	}{
		{"BGRX q90", codec.BGRX, 640, 360, 0, 90, 34, "yuvj444p"},
		{"BGRA odd size, padded", codec.BGRA, 301, 157, 12, 70, 30, "yuvj422p"},
		{"RGBX q40", codec.RGBX, 320, 200, 0, 40, 26, "yuvj420p"},
		{"RGBA", codec.RGBA, 64, 64, 0, 95, 34, "yuvj444p"},
		{"BGR", codec.BGR, 333, 111, 3, 90, 34, "yuvj444p"},
		{"RGB", codec.RGB, 120, 90, 0, 90, 34, "yuvj444p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := codec.Config{Codec: codec.JPEG, Format: tc.format, Width: tc.w, Height: tc.h, Quality: tc.quality, Speed: 20}
			enc, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			stride := tc.w*tc.format.BytesPerPixel() + tc.pad
			for n, img := range []frametest.RGB{frametest.Synthetic(tc.w, tc.h, 3), frametest.Solid(tc.w, tc.h, 30, 200, 60)} {
				pix := frametest.Pack(img, tc.format, stride)[:cfg.FrameBytes(stride)]
				f, err := enc.Encode(pix, stride, codec.FrameOptions{Quality: -1})
				if err != nil {
					t.Fatal(err)
				}
				if !f.Keyframe || len(f.Data) < 100 || f.Data[0] != 0xFF || f.Data[1] != 0xD8 {
					t.Fatalf("frame %d: %d bytes, keyframe=%v", n, len(f.Data), f.Keyframe)
				}
				if pr := frametest.Probe(t, codec.JPEG, f.Data); pr.Codec != "mjpeg" || pr.Width != tc.w || pr.Height != tc.h || pr.PixFmt != tc.pixFmt {
					t.Fatalf("ffprobe: %v", pr)
				}
				pics := frametest.Decode(t, codec.JPEG, f.Data, tc.w, tc.h)
				if len(pics) != 1 {
					t.Fatalf("%d pictures", len(pics))
				}
				if q := frametest.PSNR(img, pics[0]); q < tc.min {
					t.Fatalf("frame %d: PSNR %.1f dB", n, q)
				}
				if n == 1 {
					c := pics[0].Pix[(tc.h/2*tc.w+tc.w/2)*3:]
					if c[0] > 50 || c[1] < 180 || c[2] > 80 {
						t.Fatalf("solid (30,200,60) decoded as %v", c[:3])
					}
				}
			}
		})
	}
}

func TestQuality(t *testing.T) {
	cfg := codec.Config{Codec: codec.JPEG, Format: codec.BGRX, Width: 320, Height: 240, Quality: 95, Speed: 0}
	enc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	pix := frametest.Pack(frametest.Synthetic(320, 240, 1), codec.BGRX, 1280)
	hi, err := enc.Encode(pix, 1280, codec.FrameOptions{Quality: -1})
	if err != nil {
		t.Fatal(err)
	}
	hiLen := len(hi.Data)
	lo, err := enc.Encode(pix, 1280, codec.FrameOptions{Quality: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(lo.Data)*3 > hiLen {
		t.Fatalf("quality 95: %d bytes, quality 10: %d", hiLen, len(lo.Data))
	}
}

func TestRefused(t *testing.T) {
	if _, err := New(codec.Config{Codec: codec.H264, Format: codec.BGRX, Width: 64, Height: 64}); !errors.Is(err, codec.ErrInvalid) {
		t.Fatal(err)
	}
	enc, err := New(codec.Config{Codec: codec.JPEG, Format: codec.BGR, Width: 65, Height: 33, Quality: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if _, err := enc.Encode(make([]byte, 65*3*33-1), 65*3, codec.FrameOptions{}); !errors.Is(err, codec.ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := enc.Encode(make([]byte, 65*3*33), 64*3, codec.FrameOptions{}); !errors.Is(err, codec.ErrInvalid) {
		t.Fatal(err)
	}
}
