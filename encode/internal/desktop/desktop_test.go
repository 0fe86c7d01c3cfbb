// SPDX-License-Identifier: GPL-2.0-or-later

package desktop

import (
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/jpeg"
)

// A recorded desktop is a real picture that changes: frames differ, and
// the captured BGRX pixels survive a JPEG round trip through ffmpeg.
func TestRecord(t *testing.T) {
	s := Record(t, 640, 480, 3, 300*time.Millisecond)
	if len(s.Frames) != 3 || len(s.Frames[0]) != 640*480*4 {
		t.Fatalf("%d frames", len(s.Frames))
	}
	if string(s.Frames[0]) == string(s.Frames[2]) {
		t.Fatal("the desktop did not change between frames")
	}
	enc, err := jpeg.New(codec.Config{Codec: codec.JPEG, Format: codec.BGRX, Width: 640, Height: 480, Quality: 95})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	f, err := enc.Encode(s.Frames[0], s.Stride(), codec.FrameOptions{Quality: -1})
	if err != nil {
		t.Fatal(err)
	}
	pic := frametest.Decode(t, codec.JPEG, f.Data, 640, 480)[0]
	src := frametest.RGB{W: 640, H: 480, Pix: make([]byte, 640*480*3)}
	for i := 0; i < 640*480; i++ {
		b := s.Frames[0][i*4:]
		src.Pix[i*3], src.Pix[i*3+1], src.Pix[i*3+2] = b[2], b[1], b[0]
	}
	if q := frametest.PSNR(src, pic); q < 28 {
		t.Fatalf("PSNR %.1f", q)
	}
}
