// SPDX-License-Identifier: GPL-2.0-or-later

package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/workerbin"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

var quiet = slog.New(slog.DiscardHandler)

// worker is a real xpra-proxy-encode process.
type worker struct {
	t      *testing.T
	bin    string
	socket string
	args   []string
	cmd    *exec.Cmd
	uid    int // the uid it serves as
	pid    int // the process serving (a child of cmd when started as root)
	log    *os.File
}

var (
	buildOnce sync.Once
	builtBin  string
	builtDir  string
	buildErr  error
)

// TestMain removes the worker binary built by the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// buildWorker compiles cmd/xpra-proxy-encode (once per test binary) into
// a directory every user can read: as root the worker drops to nobody
// and re-executes itself. Each caller gets its own socket directory.
func buildWorker(t *testing.T) (bin, dir string) {
	t.Helper()
	buildOnce.Do(func() {
		if builtDir, buildErr = os.MkdirTemp("", "xpra-proxy-encode-test-"); buildErr != nil {
			return
		}
		builtBin, buildErr = workerbin.Build(builtDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir, err := os.MkdirTemp(builtDir, "run-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return builtBin, dir
}

func startWorker(t *testing.T, bin, dir string, extra ...string) *worker {
	t.Helper()
	w := &worker{t: t, bin: bin, socket: filepath.Join(dir, "run", "socket"), uid: os.Getuid()}
	me := strconv.Itoa(os.Getuid())
	w.args = append([]string{"--socket=" + w.socket, "--allow-uids=" + me}, extra...)
	if os.Getuid() == 0 {
		// As it is deployed: started as root, serving as its own user.
		w.args = append(w.args, "--user=nobody")
		w.uid = 65534
	}
	w.start()
	t.Cleanup(w.stop)
	return w
}

func (w *worker) start() {
	w.t.Helper()
	var err error
	w.log, err = os.CreateTemp("", "encoder-log-")
	if err != nil {
		w.t.Fatal(err)
	}
	w.cmd = exec.Command(w.bin, w.args...)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(w.log.Name())
		if strings.Contains(string(b), "encoder: serving") {
			w.pid = servingPID(w.t, w.cmd.Process.Pid)
			return
		}
		if time.Now().After(deadline) || strings.Contains(string(b), "level=ERROR") {
			w.t.Fatalf("worker did not start:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// servingPID is the process that serves: started as root, the encoder
// runs the worker as its user in a child and only waits for it.
func servingPID(t *testing.T, pid int) int {
	t.Helper()
	// Each thread lists the children it forked; Go forks from any thread.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		kids = append(kids, strings.Fields(string(b))...)
	}
	switch {
	case os.Getuid() != 0 && len(kids) == 0:
		return pid
	case len(kids) != 1:
		t.Fatalf("encoder %d has children %v, want the worker alone", pid, kids)
	}
	child, _ := strconv.Atoi(kids[0])
	return child
}

// waitStopped waits until /proc says every thread of pid is stopped.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		stopped := len(tasks) > 0
		for _, task := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			// The state follows the command name's closing parenthesis.
			if i := strings.LastIndexByte(string(b), ')'); i < 0 || len(b) < i+3 || b[i+2] != 'T' {
				stopped = false
			}
		}
		if stopped {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not stop", pid)
}

func (w *worker) kill() {
	w.cmd.Process.Kill()
	w.cmd.Wait()
}

func (w *worker) stop() {
	if w.cmd.ProcessState == nil {
		w.kill()
	}
	if w.t.Failed() {
		b, _ := os.ReadFile(w.log.Name())
		w.t.Logf("worker log:\n%s", b)
	}
	os.Remove(w.log.Name())
}

func connect(t *testing.T, w *worker) *client.Client {
	t.Helper()
	c := client.New(w.socket, client.Options{ServerUID: w.uid, Log: quiet, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// session is one simulated relay: its own client, a window, a colour.
type session struct {
	c     *client.Client
	ctx   *client.Context
	frame *client.Frame
	col   [3]byte
	w, h  int
}

func (s *session) open(t *testing.T) error {
	var err error
	s.ctx, err = s.c.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: uint16(s.w), Height: uint16(s.h), Quality: 80, Speed: 90})
	return err
}

func (s *session) picture(n int) frametest.RGB {
	img := frametest.Synthetic(s.w, s.h, n)
	// A block of the session's own colour: a bitstream that crossed
	// sessions would show another's.
	for y := 0; y < s.h/2; y++ {
		for x := 0; x < s.w/2; x++ {
			copy(img.Pix[(y*s.w+x)*3:], s.col[:])
		}
	}
	return img
}

func (s *session) encode(n int, dst []byte) ([]byte, error) {
	copy(s.frame.Bytes(), frametest.Pack(s.picture(n), codec.BGRX, s.w*4))
	out, _, err := s.ctx.AppendCompress(dst, s.frame, 0, s.w*4, client.FrameOptions{Keyframe: n == 0, Quality: -1, Speed: -1})
	return out, err
}

func (s *session) check(t *testing.T, stream []byte, first, n int) {
	t.Helper()
	pics := frametest.Decode(t, codec.H264, stream, s.w, s.h)
	if len(pics) != n {
		t.Fatalf("session %v: %d pictures, sent %d", s.col, len(pics), n)
	}
	for i, p := range pics {
		if q := frametest.PSNR(s.picture(first+i), p); q < 30 {
			t.Fatalf("session %v frame %d: PSNR %.1f", s.col, first+i, q)
		}
	}
}

// A real worker process serving several clients at once: more contexts
// than its limits (admission and CPU fallback shown), frames from every
// client encoded concurrently and each decoded as its own; then the
// worker is killed mid-stream (clients get ErrUnavailable at once, not
// after a timeout), restarted, and the clients reconnect and go on.
func TestWorkerProcess(t *testing.T) {
	bin, dir := buildWorker(t)
	w := startWorker(t, bin, dir, "--max-cpu=3", "--max-per-user=5")
	if w.uid != os.Getuid() {
		// Started as root: check what it runs as.
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.pid))
		for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "Gid:\t65534\t65534\t65534\t65534", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"} {
			if !strings.Contains(string(status), want) {
				t.Fatalf("worker status lacks %q:\n%s", want, status)
			}
		}
	}

	cols := [][3]byte{{250, 20, 20}, {20, 250, 20}, {20, 20, 250}, {250, 250, 20}}
	var sessions []*session
	for _, col := range cols {
		s := &session{c: connect(t, w), col: col, w: 320, h: 192}
		var err error
		if s.frame, err = client.NewFrame(s.w * 4 * s.h); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.frame.Close)
		sessions = append(sessions, s)
	}
	hello, _ := sessions[0].c.Connected()
	// Admission: three x264 contexts in the pool, the fourth refused.
	for i, s := range sessions {
		err := s.open(t)
		switch {
		case i < 3 && err != nil:
			t.Fatalf("session %d: %v", i, err)
		case i < 3 && (s.ctx.Info.Backend != encproto.X264 || s.ctx.Info.Fallback == ""):
			t.Fatalf("session %d: %+v", i, s.ctx.Info)
		case i < 3 && hello.Note != "" && s.ctx.Info.Fallback != hello.Note:
			t.Fatalf("fallback %q, worker said %q", s.ctx.Info.Fallback, hello.Note)
		case i == 3 && (!client.IsRefused(err) || !strings.Contains(err.Error(), "pool full")):
			t.Fatalf("fourth video context: %v", err)
		}
	}
	// JPEG still served (not a video slot), up to the per-user limit of 5.
	var jpegs []*client.Context
	for i := 0; i < 3; i++ {
		x, err := sessions[3].c.Open(encproto.Open{Codec: codec.JPEG, Format: codec.BGRX, Width: 64, Height: 64, Quality: 50})
		if i < 2 && err != nil || i == 2 && !client.IsRefused(err) {
			t.Fatalf("jpeg %d: %v", i, err)
		}
		if err == nil {
			jpegs = append(jpegs, x)
		}
	}
	jpegs[0].Close()
	sessions = sessions[:3]

	// All three stream at once.
	const frames = 6
	streams := make([][]byte, len(sessions))
	var wg sync.WaitGroup
	errs := make(chan error, len(sessions))
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < frames; n++ {
				var err error
				if streams[i], err = s.encode(n, streams[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, s := range sessions {
		s.check(t, streams[i], 0, frames)
	}

	// Kill it mid-stream: every client's next call fails with
	// ErrUnavailable because the socket closed, long before the 2 s
	// request timeout would have said so.
	stop := make(chan struct{})
	results := make(chan error, len(sessions))
	for _, s := range sessions {
		go func() {
			for n := frames; ; n++ {
				if _, err := s.encode(n, nil); err != nil {
					results <- err
					return
				}
				select {
				case <-stop:
					results <- nil
					return
				default:
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	w.kill()
	for range sessions {
		err := <-results
		if !errors.Is(err, client.ErrUnavailable) || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("after the worker died: %v", err)
		}
	}
	close(stop)
	// While it is down: immediate ErrUnavailable, no waiting.
	for _, s := range sessions {
		if _, err := s.encode(99, nil); !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("while down: %v", err)
		}
		if _, err := s.c.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: 64, Height: 64}); !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("open while down: %v", err)
		}
	}

	// Back: the clients reconnect by themselves; old contexts are lost,
	// new ones work (the pool starts empty, so all three fit again).
	w.start()
	for i, s := range sessions {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.c.WaitConnected(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.encode(0, nil); !errors.Is(err, client.ErrContextLost) {
			t.Fatalf("session %d old context after restart: %v", i, err)
		}
		if err := s.open(t); err != nil {
			t.Fatalf("session %d reopening: %v", i, err)
		}
		var stream []byte
		for n := 0; n < 3; n++ {
			if stream, err = s.encode(n, stream); err != nil {
				t.Fatal(err)
			}
		}
		s.check(t, stream, 0, 3)
	}
}

// A hung worker (stopped, not dead) costs one request timeout, then the
// client reports ErrUnavailable at once until it is back.
func TestWorkerHung(t *testing.T) {
	bin, dir := buildWorker(t)
	w := startWorker(t, bin, dir)
	c := client.New(w.socket, client.Options{ServerUID: w.uid, Log: quiet, Timeout: 300 * time.Millisecond, MinBackoff: 20 * time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	x, err := c.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: 64, Height: 64, Quality: 50, Speed: 50})
	if err != nil {
		t.Fatal(err)
	}
	frame, err := client.NewFrame(64 * 64 * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer frame.Close()
	if _, _, err := x.AppendCompress(nil, frame, 0, 256, client.FrameOptions{Quality: -1}); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(w.pid, stopSignal)
	defer syscall.Kill(w.pid, contSignal)
	waitStopped(t, w.pid) // kill returns before every thread has stopped
	if _, _, err := x.AppendCompress(nil, frame, 0, 256, client.FrameOptions{Quality: -1}); !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("hung worker: %v", err)
	}
	if _, _, err := x.AppendCompress(nil, frame, 0, 256, client.FrameOptions{Quality: -1}); !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, client.ErrContextLost) {
		t.Fatalf("after the timeout: %v", err)
	}
	syscall.Kill(w.pid, contSignal)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := c.WaitConnected(ctx2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(encproto.Open{Codec: codec.H264, Format: codec.BGRX, Width: 64, Height: 64, Quality: 50, Speed: 50}); err != nil {
		t.Fatal(err)
	}
}

// A client insisting on another uid for the worker refuses to talk to it.
func TestServerUIDChecked(t *testing.T) {
	bin, dir := buildWorker(t)
	w := startWorker(t, bin, dir)
	c := client.New(w.socket, client.Options{ServerUID: w.uid + 1, Log: quiet})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := c.WaitConnected(ctx)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), fmt.Sprintf("served by uid %d", w.uid)) {
		t.Fatal(err)
	}
}

// Another user's process reaching the socket is dropped before a byte
// is read or answered; the same bytes from an allowed uid get a reply.
func TestOtherUserRefused(t *testing.T) {
	testenv.Root(t)
	setpriv := testenv.Command(t, "setpriv")
	bin, dir := buildWorker(t)
	w := startWorker(t, bin, dir) // allows uid 0 only
	probe := `import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(5)
try:
    s.sendall(b"XE\x01\x00\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00")
    print(len(s.recv(100)))
except (BrokenPipeError, ConnectionResetError):
    print(0)`
	for _, tc := range []struct {
		as   []string
		want string
	}{
		{nil, ""}, // root: answered
		{[]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}, "0\n"},
		{[]string{setpriv, "--reuid=1000", "--regid=1000", "--clear-groups"}, "0\n"},
	} {
		args := append(append([]string{}, tc.as...), testenv.SystemPython, "-c", probe, w.socket)
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.as, err, out)
		}
		if tc.want == "" && (string(out) == "0\n" || len(out) == 0) || tc.want != "" && string(out) != tc.want {
			t.Fatalf("as %v: read %q", tc.as, out)
		}
	}
	logged, _ := os.ReadFile(w.log.Name())
	if !strings.Contains(string(logged), "uid not allowed") || !strings.Contains(string(logged), "uid=65534") {
		t.Fatalf("refusals not logged:\n%s", logged)
	}
}
