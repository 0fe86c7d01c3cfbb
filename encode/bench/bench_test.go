// SPDX-License-Identifier: GPL-2.0-or-later

// The benchmarks compare the encoder paths on the same frames with the
// same settings: libx264 called directly (encode/x264), x264 through the
// encoder worker process (encode/client → cmd/xpra-proxy-encode over the
// socket and shared memory), x264 through the same worker's xpra-protocol
// socket as xpra 6.x's remote codec calls it (encode/xpraenc, pixels
// inline: see xpra6_test.go), and xpra 3.1.3's own pipeline (csc_swscale
// then enc_x264, driven by xpra_x264.py). One op is one frame.
//
//	go test ./encode/bench -run '^$' -bench . -benchtime 90x
//
// Every path starts from the frame's pixels in memory and copies them
// into its input buffer (a Go slice, the shared-memory Frame, a Python
// bytes slice; for the xpra socket, lz4 reading them into the packet as
// 6.x's network layer does) as a relay reading them off the network
// would, so the difference between direct and worker is the IPC alone.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/desktop"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/workerbin"
	"github.com/xpra-proxy/xpra-proxy/encode/x264"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// The settings of every path: xpra's quality and speed scales (speed 70
// is x264's "veryfast" preset in xpra 3.1 and here), one x264 thread as
// xpra uses at that speed, 4:2:0, profile high, no B-frames.
const (
	quality = 80
	speed   = 70
	frames  = 30
)

type sequence struct {
	name string
	desktop.Sequence
}

var (
	seqOnce sync.Once
	seqs    []sequence
	tmpDir  string
)

func sequences(b *testing.B) []sequence {
	seqOnce.Do(func() {
		// 64x64: encoding costs little, so worker minus direct is the
		// cost of one request through the socket and shared memory.
		for _, sz := range [][2]int{{64, 64}, {1280, 720}, {1920, 1080}} {
			s := desktop.Sequence{W: sz[0], H: sz[1]}
			for n := 0; n < frames; n++ {
				s.Frames = append(s.Frames, frametest.Pack(frametest.Synthetic(sz[0], sz[1], n), codec.BGRX, sz[0]*4))
			}
			seqs = append(seqs, sequence{fmt.Sprintf("synthetic-%dx%d", sz[0], sz[1]), s})
		}
		seqs = append(seqs, sequence{"desktop-720p", desktop.Load(b, 1280, 720, frames)})
		seqs = append(seqs, sequence{"desktop-1080p", desktop.Load(b, 1920, 1080, frames)})
	})
	return seqs
}

func TestMain(m *testing.M) {
	var err error
	if tmpDir, err = os.MkdirTemp("", "xpra-proxy-encode-bench-"); err != nil {
		panic(err)
	}
	os.Chmod(tmpDir, 0o755)
	code := m.Run()
	if w != nil {
		w.Process.Kill()
		w.Wait()
	}
	os.RemoveAll(tmpDir)
	os.Exit(code)
}

// BenchmarkCompare encodes each frame of a sequence by the four paths
// in turn (rotating which goes first), so load from other processes on a
// shared machine falls on all of them alike. One op is one frame per path.
func BenchmarkCompare(b *testing.B) {
	for _, s := range sequences(b) {
		b.Run(s.name, func(b *testing.B) { compare(b, s) })
	}
}

// path is one way to encode a frame, returning the bitstream size.
type path struct {
	name  string
	enc   func(i int) (int, time.Duration)
	bytes int
	took  time.Duration
}

func compare(b *testing.B, s sequence) {
	paths := []*path{
		{name: "direct", enc: direct(b, s)},
		{name: "worker", enc: viaWorker(b, s)},
		{name: "xpra", enc: viaXpra(b, s)},
		{name: "xprasock", enc: viaXpraSocket(b, s)},
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range paths {
			p := paths[(i+k)%len(paths)]
			n, d := p.enc(i)
			p.bytes += n
			p.took += d
		}
	}
	b.StopTimer()
	for _, p := range paths {
		ms := float64(p.took.Microseconds()) / 1000 / float64(b.N)
		b.ReportMetric(ms, p.name+"-ms/frame")
		b.ReportMetric(1000/ms, p.name+"-fps")
		b.ReportMetric(float64(p.bytes)/float64(b.N), p.name+"-B/frame")
	}
	b.ReportMetric(100*(float64(paths[1].took)/float64(paths[0].took)-1), "worker-overhead-%")
	b.ReportMetric(float64((paths[1].took-paths[0].took).Microseconds())/float64(b.N), "worker-extra-µs/frame")
	b.ReportMetric(float64(paths[2].took)/float64(paths[1].took), "xpra/worker-time")
	b.ReportMetric(float64((paths[3].took-paths[1].took).Microseconds())/float64(b.N), "xprasock-extra-µs/frame")
	b.ReportMetric(lz4Time(b, s), "xprasock-lz4-ms/frame")
	b.ReportMetric(0, "ns/op") // the per-path figures above are the result
}

func direct(b *testing.B, s sequence) func(int) (int, time.Duration) {
	enc, err := x264.New(codec.Config{Codec: codec.H264, Format: codec.BGRX, Width: s.W, Height: s.H, Quality: quality, Speed: speed, Threads: 1}, "high")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(enc.Close)
	buf := make([]byte, len(s.Frames[0]))
	return func(i int) (int, time.Duration) {
		t0 := time.Now()
		copy(buf, s.Frames[i%len(s.Frames)])
		f, err := enc.Encode(buf, s.Stride(), codec.FrameOptions{Quality: -1, Speed: -1})
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		return len(f.Data), d
	}
}

var (
	w          *exec.Cmd
	wSocket    string
	wXpraSock  string
	wUID       int
	workerOnce sync.Once
	workerErr  error
)

// worker builds and starts one xpra-proxy-encode for the whole run, as
// deployed (as root: dropped to nobody), with one x264 thread per context,
// serving both its sockets.
func worker(b *testing.B) {
	workerOnce.Do(func() {
		bin, err := workerbin.Build(tmpDir)
		if err != nil {
			workerErr = err
			return
		}
		wSocket = filepath.Join(tmpDir, "run", "socket")
		wXpraSock = filepath.Join(tmpDir, "run", "xpra-encoder")
		args := []string{"--socket=" + wSocket, "--xpra-socket=" + wXpraSock, "--allow-uids=" + strconv.Itoa(os.Getuid()), "--threads=1"}
		wUID = os.Getuid()
		if wUID == 0 {
			args = append(args, "--user=nobody")
			wUID = 65534
		}
		w = exec.Command(bin, args...)
		log, _ := os.Create(filepath.Join(tmpDir, "worker.log"))
		w.Stdout, w.Stderr = log, log
		if workerErr = w.Start(); workerErr != nil {
			return
		}
		for i := 0; i < 500; i++ {
			if out, _ := os.ReadFile(log.Name()); strings.Contains(string(out), "encoder: serving") {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		out, _ := os.ReadFile(log.Name())
		workerErr = fmt.Errorf("worker did not start:\n%s", out)
	})
	if workerErr != nil {
		b.Fatal(workerErr)
	}
}

func viaWorker(b *testing.B, s sequence) func(int) (int, time.Duration) {
	worker(b)
	c := client.New(wSocket, client.Options{ServerUID: wUID, Timeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)})
	b.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	x, err := c.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: uint16(s.W), Height: uint16(s.H), Quality: quality, Speed: speed, Profile: "high"})
	if err != nil {
		b.Fatal(err)
	}
	f, err := client.NewFrame(len(s.Frames[0]))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	out := make([]byte, 0, 1<<20)
	return func(i int) (int, time.Duration) {
		t0 := time.Now()
		copy(f.Bytes(), s.Frames[i%len(s.Frames)])
		out, _, err = x.AppendCompress(out[:0], f, 0, s.Stride(), client.FrameOptions{Quality: -1, Speed: -1})
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		return len(out), d
	}
}

var framesFiles sync.Map

func viaXpra(b *testing.B, s sequence) func(int) (int, time.Duration) {
	py := testenv.PythonModules(b, "xpra.codecs.enc_x264.encoder", "xpra.codecs.csc_swscale.colorspace_converter")
	path, ok := framesFiles.Load(s.name)
	if !ok {
		p := filepath.Join(tmpDir, s.name+".bgrx")
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		for _, fr := range s.Frames {
			f.Write(fr)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		framesFiles.Store(s.name, p)
		path = p
	}
	cmd := exec.Command(py, "xpra_x264.py", path.(string), strconv.Itoa(s.W), strconv.Itoa(s.H),
		strconv.Itoa(len(s.Frames)), strconv.Itoa(quality), strconv.Itoa(speed))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("xpra_x264.py: %q %v\n%s", line, err, stderr.String())
	}
	next := 0
	return func(i int) (int, time.Duration) {
		// The script cycles through the frames itself, in the same order.
		if i != next {
			b.Fatalf("frame %d out of order", i)
		}
		next++
		io.WriteString(stdin, "1\n")
		line, err := r.ReadString('\n')
		var n int
		var ns int64
		if _, serr := fmt.Sscan(line, &n, &ns); err != nil || serr != nil {
			b.Fatalf("xpra_x264.py: %q %v\n%s", line, err, stderr.String())
		}
		return n, time.Duration(ns)
	}
}
