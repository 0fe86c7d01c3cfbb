// SPDX-License-Identifier: GPL-2.0-or-later

// Package frametest makes test frames in the layouts xpra servers send
// and checks bitstreams with a real decoder (Debian's ffmpeg).
package frametest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// RGB is one frame as plain 8-bit R, G, B triples, row-major: the
// reference a decoded picture is compared with.
type RGB struct {
	W, H int
	Pix  []byte
}

// Synthetic draws frame n of a moving scene: a diagonal gradient, a bar
// sweeping across, and a checker of "text-like" blocks, with sharp edges
// and flat areas as a desktop has.
func Synthetic(w, h, n int) RGB {
	img := RGB{W: w, H: h, Pix: make([]byte, w*h*3)}
	bar := (n * 16) % w
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := (y*w + x) * 3
			r := byte((x + n*4) * 255 / (w + 1))
			g := byte(y * 255 / (h + 1))
			b := byte(96)
			switch {
			case x >= bar && x < bar+w/10:
				r, g, b = 240, 240, 32
			case (x/24+y/16)%7 == 0 && (x%24) < 18 && (y%16) < 12:
				r, g, b = 20, 20, 20
			}
			img.Pix[i], img.Pix[i+1], img.Pix[i+2] = r, g, b
		}
	}
	return img
}

// Solid is a frame of one colour.
func Solid(w, h int, r, g, b byte) RGB {
	img := RGB{W: w, H: h, Pix: make([]byte, w*h*3)}
	for i := 0; i < len(img.Pix); i += 3 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2] = r, g, b
	}
	return img
}

// Pack lays img out as format f with the given stride, the padding
// bytes past each row and the X bytes filled with junk (0xEE) so a
// backend reading them shows up in the picture.
func Pack(img RGB, f codec.PixelFormat, stride int) []byte {
	bpp := f.BytesPerPixel()
	out := bytes.Repeat([]byte{0xEE}, stride*img.H)
	for y := 0; y < img.H; y++ {
		for x := 0; x < img.W; x++ {
			s := img.Pix[(y*img.W+x)*3:]
			d := out[y*stride+x*bpp:]
			r, g, b := s[0], s[1], s[2]
			switch f {
			case codec.BGRX, codec.BGRA:
				d[0], d[1], d[2] = b, g, r
				if f == codec.BGRA {
					d[3] = 255
				}
			case codec.RGBX, codec.RGBA:
				d[0], d[1], d[2] = r, g, b
				if f == codec.RGBA {
					d[3] = 255
				}
			case codec.BGR:
				d[0], d[1], d[2] = b, g, r
			case codec.RGB:
				d[0], d[1], d[2] = r, g, b
			}
		}
	}
	return out
}

// PSNR compares two pictures of the same size over R, G and B.
func PSNR(a, b RGB) float64 {
	if a.W != b.W || a.H != b.H || len(a.Pix) != len(b.Pix) {
		return 0
	}
	var sum float64
	for i := range a.Pix {
		d := float64(a.Pix[i]) - float64(b.Pix[i])
		sum += d * d
	}
	mse := sum / float64(len(a.Pix))
	if mse == 0 {
		return 99
	}
	return 10 * math.Log10(255*255/mse)
}

// Decode runs Debian's ffmpeg on a bitstream (concatenated annex-B
// frames for h264/h265, one JFIF file for jpeg) and returns every picture.
func Decode(t testing.TB, c codec.Codec, data []byte, w, h int) []RGB {
	t.Helper()
	ffmpeg := testenv.Command(t, "ffmpeg")
	demux := map[codec.Codec]string{codec.H264: "h264", codec.HEVC: "hevc", codec.JPEG: "jpeg_pipe"}[c]
	cmd := exec.Command(ffmpeg, "-v", "error", "-f", demux, "-i", "pipe:0",
		"-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg decoding %v: %v: %s", c, err, stderr.String())
	}
	size := w * h * 3
	if len(out)%size != 0 || len(out) == 0 {
		t.Fatalf("ffmpeg gave %d bytes, not a whole number of %dx%d pictures", len(out), w, h)
	}
	var pics []RGB
	for i := 0; i < len(out); i += size {
		pics = append(pics, RGB{W: w, H: h, Pix: out[i : i+size]})
	}
	return pics
}

// Stream is what ffprobe says of a bitstream.
type Stream struct {
	Codec   string `json:"codec_name"`
	Profile string `json:"profile"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	PixFmt  string `json:"pix_fmt"`
	Frames  int
	RawNb   string `json:"nb_read_frames"`
}

// Probe runs ffprobe, counting frames.
func Probe(t testing.TB, c codec.Codec, data []byte) Stream {
	t.Helper()
	ffprobe := testenv.Command(t, "ffprobe")
	demux := map[codec.Codec]string{codec.H264: "h264", codec.HEVC: "hevc", codec.JPEG: "jpeg_pipe"}[c]
	cmd := exec.Command(ffprobe, "-v", "error", "-f", demux, "-count_frames",
		"-show_entries", "stream=codec_name,profile,width,height,pix_fmt,nb_read_frames", "-of", "json", "pipe:0")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v: %s", err, stderr.String())
	}
	var res struct{ Streams []Stream }
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	s := res.Streams[0]
	s.Frames, _ = strconv.Atoi(s.RawNb)
	return s
}

// String describes a stream for messages.
func (s Stream) String() string {
	return fmt.Sprintf("%s %s %dx%d %s, %d frames", s.Codec, s.Profile, s.Width, s.Height, s.PixFmt, s.Frames)
}
