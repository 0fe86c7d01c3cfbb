// SPDX-License-Identifier: GPL-2.0-or-later

package x264

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
)

// Frames in every pixel layout xpra servers send, with padded strides as
// XImages have, compressed and decoded by ffmpeg: the picture must come
// back (PSNR), in the right colours, at the right size and profile.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		format    codec.PixelFormat
		w, h, pad int
		profile   string
		want      string // ffprobe's profile name
	}{
		{"BGRX 640x360 packed", codec.BGRX, 640, 360, 0, "", "High"},
		{"BGRA padded stride", codec.BGRA, 320, 240, 64, "main", "Main"},
		{"RGBX", codec.RGBX, 256, 144, 4, "baseline", "Constrained Baseline"},
		{"RGBA", codec.RGBA, 258, 146, 0, "high", "High"},
		{"BGR (rgb24)", codec.BGR, 200, 120, 8, "", "High"},
		{"RGB (rgb24)", codec.RGB, 200, 120, 1, "", "High"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := codec.Config{Codec: codec.H264, Format: tc.format, Width: tc.w, Height: tc.h, Quality: 90, Speed: 60}
			enc, err := New(cfg, tc.profile)
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			stride := tc.w*tc.format.BytesPerPixel() + tc.pad
			var stream bytes.Buffer
			var src []frametest.RGB
			for n := 0; n < 8; n++ {
				img := frametest.Synthetic(tc.w, tc.h, n)
				if n == 7 {
					img = frametest.Solid(tc.w, tc.h, 220, 30, 40)
				}
				src = append(src, img)
				pix := frametest.Pack(img, tc.format, stride)
				// The last row is only as long as its pixels.
				pix = pix[:cfg.FrameBytes(stride)]
				f, err := enc.Encode(pix, stride, codec.FrameOptions{Quality: -1, Speed: -1})
				if err != nil {
					t.Fatal(err)
				}
				if (n == 0) != f.Keyframe {
					t.Fatalf("frame %d keyframe=%v", n, f.Keyframe)
				}
				stream.Write(f.Data)
			}
			pr := frametest.Probe(t, codec.H264, stream.Bytes())
			if pr.Codec != "h264" || pr.Profile != tc.want || pr.Width != tc.w || pr.Height != tc.h || pr.PixFmt != "yuv420p" || pr.Frames != len(src) {
				t.Fatalf("ffprobe: %v", pr)
			}
			pics := frametest.Decode(t, codec.H264, stream.Bytes(), tc.w, tc.h)
			for i, p := range pics {
				// 4:2:0 costs small pictures with coloured text ~10 dB.
				if q := frametest.PSNR(src[i], p); q < 30 {
					t.Errorf("frame %d: PSNR %.1f dB", i, q)
				}
			}
			// The solid frame is red, not blue: channel order is right.
			last := pics[len(pics)-1].Pix[(tc.h/2*tc.w+tc.w/2)*3:]
			if last[0] < 200 || last[1] > 60 || last[2] > 70 {
				t.Fatalf("solid (220,30,40) decoded as %v", last[:3])
			}
			// A different picture does not match: the PSNR check can fail.
			if q := frametest.PSNR(src[0], pics[len(pics)-1]); q > 20 {
				t.Fatalf("unrelated frames at %.1f dB", q)
			}
		})
	}
}

// A keyframe on request decodes on its own (a client joining mid-stream).
func TestKeyframeRequest(t *testing.T) {
	cfg := codec.Config{Codec: codec.H264, Format: codec.BGRX, Width: 320, Height: 180, Quality: 70, Speed: 100}
	enc, err := New(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	var tail bytes.Buffer
	var src []frametest.RGB
	for n := 0; n < 6; n++ {
		img := frametest.Synthetic(320, 180, n)
		f, err := enc.Encode(frametest.Pack(img, codec.BGRX, 1280), 1280, codec.FrameOptions{Keyframe: n == 3, Quality: -1})
		if err != nil {
			t.Fatal(err)
		}
		if f.Keyframe != (n == 0 || n == 3) {
			t.Fatalf("frame %d keyframe=%v", n, f.Keyframe)
		}
		if n == 2 && bytes.Contains(f.Data, []byte{0, 0, 1, 0x67}) {
			t.Fatal("SPS on a P frame")
		}
		if n >= 3 {
			tail.Write(f.Data)
			src = append(src, img)
		}
	}
	pics := frametest.Decode(t, codec.H264, tail.Bytes(), 320, 180)
	if len(pics) != 3 {
		t.Fatalf("%d pictures", len(pics))
	}
	for i, p := range pics {
		if q := frametest.PSNR(src[i], p); q < 28 {
			t.Errorf("frame %d: PSNR %.1f", i, q)
		}
	}
}

// Lower quality gives smaller frames; the change applies mid-stream.
func TestQualityChange(t *testing.T) {
	cfg := codec.Config{Codec: codec.H264, Format: codec.BGRX, Width: 320, Height: 180, Quality: 100, Speed: 50}
	enc, err := New(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	size := func(q int, n int) int {
		f, err := enc.Encode(frametest.Pack(frametest.Synthetic(320, 180, n), codec.BGRX, 1280), 1280, codec.FrameOptions{Keyframe: true, Quality: q})
		if err != nil {
			t.Fatal(err)
		}
		return len(f.Data)
	}
	hi := size(-1, 1)
	lo := size(10, 1)
	if lo*2 > hi {
		t.Fatalf("quality 100: %d bytes, quality 10: %d bytes", hi, lo)
	}
}

func TestRefused(t *testing.T) {
	good := codec.Config{Codec: codec.H264, Format: codec.BGRX, Width: 64, Height: 64, Quality: 50, Speed: 50}
	for _, tc := range []struct {
		name    string
		mutate  func(c *codec.Config)
		profile string
	}{
		{"odd width", func(c *codec.Config) { c.Width = 63 }, ""},
		{"too large", func(c *codec.Config) { c.Height = 10000 }, ""},
		{"jpeg codec", func(c *codec.Config) { c.Codec = codec.JPEG }, ""},
		{"unknown format", func(c *codec.Config) { c.Format = 99 }, ""},
		{"bad profile", func(c *codec.Config) {}, "high444"},
		{"quality", func(c *codec.Config) { c.Quality = 101 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mutate(&c)
			if enc, err := New(c, tc.profile); !errors.Is(err, codec.ErrInvalid) {
				t.Fatalf("got %v, %v", enc, err)
			}
		})
	}
	enc, err := New(good, "")
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, tc := range []struct {
		name   string
		size   int
		stride int
	}{
		{"stride below a row", 64 * 64 * 4, 200},
		{"buffer one byte short", 63*256 + 255, 256},
		{"absurd stride", 1 << 24, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := enc.Encode(make([]byte, tc.size), tc.stride, codec.FrameOptions{}); !errors.Is(err, codec.ErrInvalid) {
				t.Fatalf("got %v", err)
			}
		})
	}
	// The context still works after refusals.
	if _, err := enc.Encode(make([]byte, 64*64*4), 256, codec.FrameOptions{Quality: -1}); err != nil {
		t.Fatal(err)
	}
}
