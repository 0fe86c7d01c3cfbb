// SPDX-License-Identifier: GPL-2.0-or-later

// Package desktop records a real X desktop for the encoder's tests and
// benchmarks: Xvfb running real clients (xterms scrolling text and
// running top, xclock, xeyes, xlogo), captured with xwd as the BGRX
// frames an X11 xpra server reads from its screen.
package desktop

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// Sequence is a run of BGRX frames, rows packed (stride = W*4).
type Sequence struct {
	W, H   int
	Frames [][]byte
}

// Stride of every frame.
func (s Sequence) Stride() int { return s.W * 4 }

// Load returns n frames of a w x h desktop, recorded once and cached
// (gzip) in the temporary directory, so repeated benchmark runs measure
// the same frames.
func Load(t testing.TB, w, h, n int) Sequence {
	t.Helper()
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("xpra-proxy-desktop-v1-%dx%d-%d.bgrx.gz", w, h, n))
	if s, err := read(cache, w, h, n); err == nil {
		return s
	}
	s := Record(t, w, h, n, 150*time.Millisecond)
	if err := write(cache, s); err != nil {
		t.Logf("desktop: not cached: %v", err)
	}
	return s
}

func read(path string, w, h, n int) (Sequence, error) {
	f, err := os.Open(path)
	if err != nil {
		return Sequence{}, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return Sequence{}, err
	}
	s := Sequence{W: w, H: h}
	for i := 0; i < n; i++ {
		b := make([]byte, w*h*4)
		if _, err := io.ReadFull(zr, b); err != nil {
			return Sequence{}, err
		}
		s.Frames = append(s.Frames, b)
	}
	return s, nil
}

func write(path string, s Sequence) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	for _, b := range s.Frames {
		zw.Write(b)
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Record starts Xvfb and the clients and captures n frames, every apart.
func Record(t testing.TB, w, h, n int, every time.Duration) Sequence {
	t.Helper()
	xvfb := testenv.Command(t, "Xvfb")
	xwd := testenv.Command(t, "xwd")
	for _, p := range []string{"xterm", "xclock", "xeyes", "xlogo"} {
		testenv.Command(t, p)
	}
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := exec.Command(xvfb, "-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", w, h), "-nolisten", "tcp", "-noreset")
	x.ExtraFiles = []*os.File{wr}
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
		x.Process.Kill()
		x.Wait()
	}()
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if err != nil {
		t.Fatalf("Xvfb gave no display: %v", err)
	}
	display := ":" + strings.TrimSpace(line)
	env := append(os.Environ(), "DISPLAY="+display)
	for _, args := range [][]string{
		// Text scrolling at a reading pace, a full static page, top.
		{"xterm", "-geometry", "110x45+10+10", "-e", "bash", "-c",
			"while :; do ls -l --color=always /usr/share/doc /usr/lib | while IFS= read -r l; do printf '%s\\n' \"$l\"; sleep 0.01; done; done"},
		{"xterm", "-geometry", "100x60+700+300", "-e", "bash", "-c", "cat /usr/share/common-licenses/GPL-3; sleep 3600"},
		{"xterm", "-geometry", "90x30+1300+600", "-e", "top", "-d", "0.3"},
		{"xclock", "-update", "1", "-geometry", "260x260+1000+20"},
		{"xeyes", "-geometry", "200x140+1300+40"},
		{"xlogo", "-geometry", "180x180+1550+200"},
	} {
		p := exec.Command(args[0], args[1:]...)
		p.Env = env
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	time.Sleep(time.Second) // windows mapped and drawing
	s := Sequence{W: w, H: h}
	for i := 0; i < n; i++ {
		out, err := exec.Command(xwd, "-root", "-silent", "-display", display).Output()
		if err != nil {
			t.Fatalf("xwd: %v", err)
		}
		pix, err := ParseXWD(out, w, h)
		if err != nil {
			t.Fatal(err)
		}
		s.Frames = append(s.Frames, pix)
		time.Sleep(every)
	}
	return s
}

// ParseXWD reads a 32-bit ZPixmap dump as xwd writes it and returns
// packed BGRX rows.
func ParseXWD(b []byte, w, h int) ([]byte, error) {
	if len(b) < 100 {
		return nil, fmt.Errorf("xwd: %d bytes", len(b))
	}
	var hd [25]uint32
	binary.Read(bytes.NewReader(b[:100]), binary.BigEndian, &hd)
	headerSize, version, format := hd[0], hd[1], hd[2]
	width, height, byteOrder, bpp, bpl, ncolors := hd[4], hd[5], hd[7], hd[11], hd[12], hd[19]
	if version != 7 || format != 2 || bpp != 32 || byteOrder != 0 {
		return nil, fmt.Errorf("xwd: version %d format %d bpp %d byte order %d: want a 32-bit LSB-first ZPixmap", version, format, bpp, byteOrder)
	}
	if int(width) != w || int(height) != h {
		return nil, fmt.Errorf("xwd: %dx%d, want %dx%d", width, height, w, h)
	}
	off := int(headerSize) + int(ncolors)*12
	if len(b) < off+int(bpl)*h {
		return nil, fmt.Errorf("xwd: truncated")
	}
	out := make([]byte, w*h*4)
	for y := 0; y < h; y++ {
		copy(out[y*w*4:(y+1)*w*4], b[off+y*int(bpl):])
	}
	return out, nil
}
