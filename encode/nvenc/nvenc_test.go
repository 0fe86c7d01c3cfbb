// SPDX-License-Identifier: GPL-2.0-or-later

package nvenc

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
)

// driverPresent says whether the NVIDIA driver's libraries exist here.
func driverPresent() bool {
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"} {
		if _, err := os.Stat(dir + "/libnvidia-encode.so.1"); err == nil {
			return true
		}
	}
	return false
}

// Without the driver (every machine of this project): a clean error
// naming the missing library, every time, and no encoder.
func TestNoDriver(t *testing.T) {
	if driverPresent() {
		t.Skip("an NVIDIA driver is installed: TestEncode covers this machine")
	}
	for i := 0; i < 2; i++ {
		err := Available()
		if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "libnvidia-encode.so.1") {
			t.Fatalf("Available() = %v", err)
		}
	}
	for _, c := range []codec.Codec{codec.H264, codec.HEVC} {
		enc, err := New(codec.Config{Codec: c, Format: codec.BGRX, Width: 640, Height: 480, Quality: 50, Speed: 50}, "")
		if enc != nil || !errors.Is(err, ErrNoDriver) {
			t.Fatalf("%v: New = %v, %v", c, enc, err)
		}
	}
	// Invalid configurations are refused before the driver is asked.
	if _, err := New(codec.Config{Codec: codec.JPEG, Format: codec.BGRX, Width: 64, Height: 64}, ""); !errors.Is(err, codec.ErrInvalid) {
		t.Fatal(err)
	}
}

// Where a driver and GPU exist, frames must decode. Never runs on this
// project's machines.
func TestEncode(t *testing.T) {
	if !driverPresent() {
		t.Skip("no NVIDIA driver: NVENC cannot be exercised here")
	}
	if err := Available(); err != nil {
		t.Fatalf("driver present but unusable: %v", err)
	}
	for _, c := range []codec.Codec{codec.H264, codec.HEVC} {
		cfg := codec.Config{Codec: c, Format: codec.BGRX, Width: 640, Height: 360, Quality: 80, Speed: 50}
		enc, err := New(cfg, "")
		if err != nil {
			t.Fatal(err)
		}
		var stream bytes.Buffer
		var src []frametest.RGB
		for n := 0; n < 5; n++ {
			img := frametest.Synthetic(640, 360, n)
			src = append(src, img)
			f, err := enc.Encode(frametest.Pack(img, codec.BGRX, 2560), 2560, codec.FrameOptions{Keyframe: n == 0, Quality: -1})
			if err != nil {
				t.Fatal(err)
			}
			stream.Write(f.Data)
		}
		enc.Close()
		for i, p := range frametest.Decode(t, c, stream.Bytes(), 640, 360) {
			if q := frametest.PSNR(src[i], p); q < 30 {
				t.Errorf("%v frame %d: PSNR %.1f", c, i, q)
			}
		}
	}
}
