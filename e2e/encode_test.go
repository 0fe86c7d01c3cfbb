// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/control"
	"github.com/xpra-proxy/xpra-proxy/internal/encodelab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
)

// animScript is the X program the sessions run: colour bars that slide,
// a gradient whose blue changes and a white square that moves, about 25
// times a second, in a window of W x H titled "encode-test". While the
// file CTL/freeze exists it stops on its current picture.
const animScript = `import os, sys
import gi
gi.require_version("Gtk", "3.0")
from gi.repository import Gtk, GLib

ctl, W, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BARS = [(1, 1, 1), (1, 1, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1), (1, 0, 0), (0, 0, 1), (0, 0, 0)]
k = 0

def draw(widget, cr):
    bw = W / len(BARS)
    for i, c in enumerate(BARS):
        cr.set_source_rgb(*c)
        for shift in (0, W):
            cr.rectangle((i * bw + k * 4) % W - shift, 0, bw + 1, H // 2)
            cr.fill()
    for y in range(H // 2, H, 8):
        for x in range(0, W, 8):
            cr.set_source_rgb(x / W, (y - H // 2) / (H // 2), ((k * 8) % 256) / 255)
            cr.rectangle(x, y, 8, 8)
            cr.fill()
    cr.set_source_rgb(1, 1, 1)
    cr.rectangle((k * 7) % (W - 40), H // 2 + (k * 3) % (H // 2 - 40), 40, 40)
    cr.fill()

def tick():
    global k
    if not os.path.exists(os.path.join(ctl, "freeze")):
        k += 1
        area.queue_draw()
    return True

win = Gtk.Window(title="encode-test")
win.set_default_size(W, H)
win.set_resizable(False)
area = Gtk.DrawingArea()
area.set_size_request(W, H)
area.connect("draw", draw)
win.add(area)
win.connect("destroy", Gtk.main_quit)
win.show_all()
GLib.timeout_add(40, tick)
Gtk.main()
`

// animSession starts a real 3.1.3 server running animScript at w x h;
// freeze stops the animation, thaw lets it go on.
type animSession struct {
	*xpralab.Server
	ctl string
}

func startAnimSessions(t *testing.T, n, w, h int) []*animSession {
	t.Helper()
	dir := xpralab.Dir(t)
	script := filepath.Join(dir, "anim.py")
	if err := os.WriteFile(script, []byte(animScript), 0o644); err != nil {
		t.Fatal(err)
	}
	var opts []xpralab.Options
	var ctls []string
	for i := range n {
		ctl := filepath.Join(dir, fmt.Sprintf("ctl-%d", i))
		if err := os.Mkdir(ctl, 0o755); err != nil {
			t.Fatal(err)
		}
		ctls = append(ctls, ctl)
		opts = append(opts, xpralab.Options{App: fmt.Sprintf("/usr/bin/python3 %s %s %d %d", script, ctl, w, h),
			Args: []string{fmt.Sprintf("--session-name=encode-%d", i)}})
	}
	var out []*animSession
	for i, s := range xpralab.StartAll(t, opts...) {
		out = append(out, &animSession{Server: s, ctl: ctls[i]})
	}
	return out
}

func (a *animSession) freeze(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(a.ctl, "freeze"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// xclient is a real `xpra attach` on an X display of its own (Xvfb via
// xvfb-run, with a known number and auth file so the test can look at
// what the client shows).
type xclient struct {
	display string
	auth    string
	out     *proxylab.Buffer
	stop    func()
}

func attachX(t *testing.T, url string, extra ...string) *xclient {
	t.Helper()
	testenv.Command(t, "xvfb-run")
	n := xpralab.FreeDisplay()
	c := &xclient{display: fmt.Sprintf(":%d", n), auth: filepath.Join(t.TempDir(), "Xauthority"), out: &proxylab.Buffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	args := append([]string{"-n", strconv.Itoa(n), "-f", c.auth, "-s", "-screen 0 1280x1024x24", "xpra", "attach", url,
		"--mdns=no", "--pulseaudio=no", "--notifications=no", "--opengl=no", "--speaker=off", "--microphone=off",
		"--webcam=no", "--printing=no", "--file-transfer=no", "--tray=no", "--system-tray=no", "--clipboard=no"}, extra...)
	cmd := exec.CommandContext(ctx, "xvfb-run", args...)
	cmd.Env = []string{"PATH=" + cleanPath, "HOME=/root", "LANG=C.UTF-8", "XDG_RUNTIME_DIR=/run/user/0"}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	c.stop = sync.OnceFunc(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); cancel(); cmd.Wait() })
	t.Cleanup(c.stop)
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(c.out.String(), "Attached to") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(c.out.String(), "Attached to") {
		t.Fatalf("xpra attach %s:\n%s", url, c.out)
	}
	return c
}

func (c *xclient) disconnected() bool {
	s := c.out.String()
	return strings.Contains(s, "Disconnect") || strings.Contains(s, "connection lost") || strings.Contains(s, "server shutdown")
}

// decodeErrors are the client's complaints about pictures it could not
// paint.
func (c *xclient) decodeErrors() []string {
	var errs []string
	sc := bufio.NewScanner(strings.NewReader(c.out.String()))
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "decode failed") || strings.Contains(l, "paint error") || strings.Contains(l, "Error painting") ||
			strings.Contains(l, "csc mode is missing") || strings.Contains(l, "invalid encoding") {
			errs = append(errs, l)
		}
	}
	return errs
}

// screenImage is an RGB picture.
type screenImage struct {
	w, h int
	pix  []byte
}

var geometryRE = regexp.MustCompile(`"encode-test[^"]*":.*\s(\d+)x(\d+)\+(-?\d+)\+(-?\d+)`)

// window returns what the client shows of the session's window: the
// client's whole screen (xwd, decoded by ffmpeg) cropped to the window
// xwininfo finds.
func (c *xclient) window(t *testing.T) screenImage {
	t.Helper()
	env := append(os.Environ(), "XAUTHORITY="+c.auth)
	tree, err := commandEnv(env, "xwininfo", "-display", c.display, "-root", "-tree").Output()
	if err != nil {
		t.Fatalf("xwininfo: %v", err)
	}
	m := geometryRE.FindSubmatch(tree)
	if m == nil {
		t.Fatalf("no encode-test window on the client's display:\n%s", tree)
	}
	w, _ := strconv.Atoi(string(m[1]))
	h, _ := strconv.Atoi(string(m[2]))
	x, _ := strconv.Atoi(string(m[3]))
	y, _ := strconv.Atoi(string(m[4]))
	xwd := filepath.Join(t.TempDir(), "screen.xwd")
	dump, err := commandEnv(env, "xwd", "-display", c.display, "-root", "-silent").Output()
	if err != nil {
		t.Fatalf("xwd: %v", err)
	}
	if err := os.WriteFile(xwd, dump, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := exec.Command(testenv.Command(t, "ffmpeg"), "-v", "error", "-i", xwd, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1").Output()
	if err != nil || len(raw) != 1280*1024*3 {
		t.Fatalf("ffmpeg on the screenshot: %v (%d bytes)", err, len(raw))
	}
	img := screenImage{w: w, h: h, pix: make([]byte, w*h*3)}
	for row := range h {
		copy(img.pix[row*w*3:(row+1)*w*3], raw[((y+row)*1280+x)*3:])
	}
	return img
}

func commandEnv(env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	return cmd
}

// settled is the client's window once two captures a second apart are
// the same (the still window fully painted), at most d from now.
func (c *xclient) settled(t *testing.T, d time.Duration) screenImage {
	t.Helper()
	deadline := time.Now().Add(d)
	for !c.hasWindow() {
		if time.Now().After(deadline) {
			t.Fatalf("no encode-test window on the client's display after %v", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	prev := c.window(t)
	for {
		time.Sleep(time.Second)
		cur := c.window(t)
		// Mapped but not painted yet is one flat colour.
		if mean, _ := picDiff(t, prev, cur); mean == 0 && !cur.flat() {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("the window kept changing for %v", d)
		}
		prev = cur
	}
}

// flat: every pixel has the first one's colour.
func (img screenImage) flat() bool {
	for i := 3; i+3 <= len(img.pix); i += 3 {
		if img.pix[i] != img.pix[0] || img.pix[i+1] != img.pix[1] || img.pix[i+2] != img.pix[2] {
			return false
		}
	}
	return true
}

// hasWindow: the session's window is mapped on the client's display.
func (c *xclient) hasWindow() bool {
	tree, err := commandEnv(append(os.Environ(), "XAUTHORITY="+c.auth), "xwininfo", "-display", c.display, "-root", "-tree").Output()
	return err == nil && geometryRE.Match(tree)
}

// picDiff is the mean absolute difference per colour byte, and the worst
// 8x8 block's mean (a local defect such as a misplaced rectangle).
func picDiff(t *testing.T, a, b screenImage) (mean, worstBlock float64) {
	t.Helper()
	if a.w != b.w || a.h != b.h {
		t.Fatalf("pictures of %dx%d and %dx%d", a.w, a.h, b.w, b.h)
	}
	var sum int
	for by := 0; by+8 <= a.h; by += 8 {
		for bx := 0; bx+8 <= a.w; bx += 8 {
			var bs int
			for y := by; y < by+8; y++ {
				for i := (y*a.w + bx) * 3; i < (y*a.w+bx+8)*3; i++ {
					d := int(a.pix[i]) - int(b.pix[i])
					bs += max(d, -d)
				}
			}
			sum += bs
			worstBlock = max(worstBlock, float64(bs)/(8*8*3))
		}
	}
	return float64(sum) / float64((a.w/8)*(a.h/8)*8*8*3), worstBlock
}

func savePNG(t *testing.T, img screenImage, name string) {
	dir := os.Getenv("XPRA_PROXY_ARTIFACTS")
	if dir == "" {
		return
	}
	os.MkdirAll(dir, 0o755)
	cmd := exec.Command("ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", fmt.Sprintf("%dx%d", img.w, img.h),
		"-i", "pipe:0", filepath.Join(dir, name+".png"))
	cmd.Stdin = strings.NewReader(string(img.pix))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("saving %s: %v %s", name, err, out)
	}
}

// relayStats reads a relay's proxy.encode.* counters from its control
// socket, as root.
type relayStats struct {
	frames, rgb, refreshes, refused, failures, contexts int64
}

func encodeStats(t *testing.T, controlPath string) (relayStats, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := control.Query(ctx, controlPath, "info")
	if err != nil {
		return relayStats{}, false
	}
	c := caps.New(d)
	if !c.Has("proxy.encode.frames") {
		return relayStats{}, false
	}
	return relayStats{frames: c.Int("proxy.encode.frames", 0), rgb: c.Int("proxy.encode.rgb", 0),
		refreshes: c.Int("proxy.encode.refreshes", 0), refused: c.Int("proxy.encode.refused", 0),
		failures: c.Int("proxy.encode.failures", 0), contexts: c.Int("proxy.encode.contexts", 0)}, true
}

// relayFor waits for the relay worker serving display (other than the
// ones whose control sockets are in not) and returns its control socket.
func relayFor(t *testing.T, p *proxylab.Proxy, display string, not ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range listConns(t, p) {
			if c.Control != "" && strings.HasSuffix(c.Target, "-"+strings.TrimPrefix(display, ":")) && !slices.Contains(not, c.Control) {
				return c.Control
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("no relay for %s in xpra-proxy list", display)
	return ""
}

// waitStats polls a relay's counters until ok says they are right.
func waitStats(t *testing.T, path string, within time.Duration, what string, ok func(relayStats) bool) relayStats {
	t.Helper()
	deadline := time.Now().Add(within)
	var s relayStats
	for {
		var got bool
		if s, got = encodeStats(t, path); got && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: counters %+v (read: %v)", what, s, got)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func encodeTestTools(t *testing.T) {
	t.Helper()
	xpralab.Require(t)
	for _, c := range []string{"xvfb-run", "xwd", "xwininfo", "ffmpeg"} {
		testenv.Command(t, c)
	}
	// The system's python (xpra's own), not one earlier in a developer's PATH.
	if exec.Command("/usr/bin/python3", "-c", `import gi; gi.require_version("Gtk", "3.0"); from gi.repository import Gtk`).Run() != nil {
		testenv.Missing(t, "python3 GTK 3 bindings (python3-gi, gir1.2-gtk-3.0: xpra's own client needs them)")
	}
}

// TestEncode: a real 3.1.3 server asked by our proxy for raw frames, the
// shared encoder worker (x264 here) compressing them, and a real 3.1.3
// client under Xvfb that decodes the H.264 and shows the same picture as
// a client connected to the server directly.
func TestEncode(t *testing.T) {
	encodeTestTools(t)
	const W, H = 640, 480
	srv := startAnimSessions(t, 1, W, H)[0]
	enc := encodelab.Start(t)
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--encoder-socket="+enc.Socket)
	url := p.URL(srv.User.Username+":secret", srv.Display)

	// 1. Through the proxy, with the client's lossless refresh off: what
	// it shows at the end is the pool's last H.264 frame.
	lossy := attachX(t, url, "--auto-refresh-delay=0")
	control := relayFor(t, p, srv.Display)
	waitStats(t, control, 60*time.Second, "H.264 frames while the window animates", func(s relayStats) bool { return s.frames >= 50 })
	srv.freeze(t)
	time.Sleep(2 * time.Second)
	st, _ := encodeStats(t, control)
	// Full-window updates: nearly every draw goes as H.264.
	if st.refreshes != 0 || st.contexts < 1 || st.rgb*10 > st.frames {
		t.Fatalf("with the client's refresh off: %+v", st)
	}
	t.Logf("through the pool: %+v", st)
	viaPool := lossy.window(t)
	if errs := lossy.decodeErrors(); len(errs) > 0 || lossy.disconnected() {
		t.Fatalf("client errors through the pool: %q\n%s", errs, lossy.out)
	}
	lossy.stop()

	// 2. Directly, rgb only: lossless from the first paint, so the truth
	// does not depend on when the server's auto-refresh comes (on a busy
	// machine it came after a fixed 4 s wait).
	direct := attachX(t, srv.TCP(""), "--encodings=rgb")
	want := direct.settled(t, 30*time.Second)
	direct.stop()

	// 3. Through the proxy with the client's defaults: after the last
	// video frame comes the lossless refresh.
	refreshed := attachX(t, url)
	control = relayFor(t, p, srv.Display, control)
	waitStats(t, control, 30*time.Second, "video frame then refresh of the still window", func(s relayStats) bool {
		return s.frames >= 1 && s.refreshes >= 1
	})
	// The refresh counted by the relay is painted soon after; wait for
	// the picture to match, or for the deadline (the check below fails).
	var lossless screenImage
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		lossless = refreshed.window(t)
		if mean, worst := picDiff(t, lossless, want); (mean <= 0.01 && worst <= 1) || time.Now().After(deadline) {
			break
		}
	}
	if errs := refreshed.decodeErrors(); len(errs) > 0 {
		t.Fatalf("client errors: %q", errs)
	}

	savePNG(t, viaPool, "encode-via-pool")
	savePNG(t, want, "encode-direct")
	savePNG(t, lossless, "encode-via-pool-refreshed")
	// H.264 at the pool's default quality: close everywhere; a colour
	// swap, a shifted or stale region would be far off.
	if mean, worst := picDiff(t, viaPool, want); mean > 3 || worst > 40 {
		t.Errorf("H.264 picture vs direct: mean difference %.2f, worst 8x8 block %.1f", mean, worst)
	} else {
		t.Logf("H.264 picture vs direct: mean difference %.2f, worst 8x8 block %.1f", mean, worst)
	}
	if mean, worst := picDiff(t, lossless, want); mean > 0.01 || worst > 1 {
		t.Errorf("refreshed picture vs direct: mean difference %.3f, worst 8x8 block %.2f", mean, worst)
	}
}

// TestEncodeShared: three sessions share one pool that takes two
// contexts: the third window goes as rgb; killing the encoder worker
// leaves every client connected and drawing (as rgb), and re-encoding
// comes back with the worker.
func TestEncodeShared(t *testing.T) {
	encodeTestTools(t)
	sessions := startAnimSessions(t, 3, 320, 240)
	enc := encodelab.Start(t, "--max-cpu=2")
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--encoder-socket="+enc.Socket)
	var clients []*xclient
	var controls []string
	for _, s := range sessions {
		clients = append(clients, attachX(t, p.URL(s.User.Username+":secret", s.Display)))
		controls = append(controls, relayFor(t, p, s.Display))
	}
	read := func() []relayStats {
		var out []relayStats
		for _, c := range controls {
			s, ok := encodeStats(t, c)
			if !ok {
				t.Fatalf("relay %s gone", c)
			}
			out = append(out, s)
		}
		return out
	}
	// progress waits until every session drew more (H.264 or rgb) and
	// returns which ones got H.264 frames meanwhile.
	progress := func(what string) []bool {
		t.Helper()
		before := read()
		deadline := time.Now().Add(30 * time.Second)
		for {
			time.Sleep(2 * time.Second)
			after := read()
			video := make([]bool, len(after))
			all := true
			for i := range after {
				video[i] = after[i].frames > before[i].frames
				all = all && after[i].frames+after[i].rgb > before[i].frames+before[i].rgb
			}
			if all {
				return video
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not every session drew: %+v then %+v", what, before, after)
			}
		}
	}
	checkClients := func(what string) {
		t.Helper()
		for i, c := range clients {
			if c.disconnected() || len(c.decodeErrors()) > 0 {
				t.Fatalf("%s: client %d: disconnected %v, errors %q\n%s", what, i, c.disconnected(), c.decodeErrors(), c.out)
			}
		}
	}

	// Admission: two contexts for three windows.
	count := func(v []bool) (n int) {
		for _, b := range v {
			if b {
				n++
			}
		}
		return n
	}
	video := progress("with the pool full")
	st := read()
	var contexts, refused int64
	for _, s := range st {
		contexts += s.contexts
		refused += s.refused
	}
	if contexts != 2 || refused == 0 || count(video) != 2 {
		t.Fatalf("with a pool of 2: %d contexts, %d refusals, H.264 to %d sessions: %+v", contexts, refused, count(video), st)
	}
	checkClients("with the pool full")
	t.Logf("pool of 2, three sessions: %+v", st)

	// The worker dies mid-stream: everyone keeps drawing, as rgb.
	enc.Kill()
	time.Sleep(time.Second)
	if video := progress("without the encoder worker"); count(video) != 0 {
		t.Fatalf("H.264 frames without a worker: %v", video)
	}
	checkClients("without the encoder worker")
	t.Logf("worker killed: %+v", read())

	// It comes back: the relays reconnect and two sessions get H.264 again.
	enc.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if count(progress("with the worker back")) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("re-encoding did not resume for two sessions: %+v", read())
		}
	}
	checkClients("with the worker back")
	t.Logf("worker back: %+v", read())
}
