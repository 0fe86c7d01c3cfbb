// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/chromelab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// The session shows xlogo: a static window (nothing in it changes, unlike
// xclock or a cursor), black on white, so two screenshots of it can be
// compared pixel by pixel and a blank or half-drawn one is easy to tell.
const html5App = "xlogo -geometry 300x300"

// pageState is what the poll expression reports about the HTML5 client.
type pageState struct {
	Path     string      `json:"path"`
	Ready    string      `json:"ready"`
	Reason   string      `json:"reason"` // connect.html's "You were disconnected..."
	Text     string      `json:"text"`
	Progress string      `json:"progress"`
	Windows  []winCanvas `json:"windows"`
}

// winCanvas is one session window's canvas: where it is on the page (CSS
// pixels, which are device pixels here) and how its own pixels look.
type winCanvas struct {
	Title      string // from the window's title bar
	X, Y, W, H int
	Pixels     int // pixels read back from the canvas
	Dark       int // luminance < 64
	Light      int // luminance > 192
	Opaque     int // alpha > 0
}

// drawn: the window shows xlogo, a black X on white, not a blank (all
// transparent or one colour) or barely started canvas.
func (w winCanvas) drawn() bool {
	return w.Pixels > 0 && w.Opaque == w.Pixels && w.Dark*50 >= w.Pixels && w.Light*3 >= w.Pixels
}

// pollExpr reports the page's state: which page (the client goes to
// connect.html, with the reason on it, when it is disconnected), the
// progress label and every window canvas with pixel counts.
const pollExpr = `(() => {
  const reason = document.getElementById("disconnect-reason");
  const s = {path: location.pathname, ready: document.readyState, reason: reason ? reason.innerText : "", text: document.body ? document.body.innerText.slice(0, 400) : "",
             progress: (document.getElementById("progress-label") || {}).textContent || "", windows: []};
  for (const c of document.querySelectorAll("#screen canvas")) {
    const r = c.getBoundingClientRect();
    const title = c.parentElement && c.parentElement.querySelector(".windowtitle");
    const w = {Title: title ? title.textContent : "", X: Math.round(r.x), Y: Math.round(r.y), W: Math.round(r.width), H: Math.round(r.height),
               Pixels: 0, Dark: 0, Light: 0, Opaque: 0};
    if (c.width > 0 && c.height > 0) {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4) {
        const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
        w.Pixels++;
        if (d[i + 3] > 0) w.Opaque++;
        if (l < 64) w.Dark++;
        if (l > 192) w.Light++;
      }
    }
    s.windows.push(w);
  }
  return s;
})()`

// shot is a screenshot of the HTML5 client showing the session's window.
type shot struct {
	name   string
	png    []byte
	img    image.Image
	window winCanvas
	log    string
}

// errDisconnected: the HTML5 client went back to its connect page, which
// it does when the connection fails or ends.
type errDisconnected struct{ text string }

func (e *errDisconnected) Error() string {
	return fmt.Sprintf("the HTML5 client gave up and went back to its connect page, saying %q", e.text)
}

// waitDrawn polls the page until the HTML5 client has connected and drawn
// the session's window and the window has stopped changing.
func waitDrawn(ctx context.Context, t *testing.T, b *chromelab.Browser) (pageState, error) {
	var st, prev pageState
	var onConnect time.Time
	stable := 0
	for {
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("the session's window was not drawn in time (%w); last state %+v", ctx.Err(), st)
		case <-time.After(300 * time.Millisecond):
		}
		prev = st
		st = pageState{}
		if err := b.Eval(ctx, pollExpr, &st); err != nil {
			// A navigation (to connect.html on a disconnect) can race the
			// evaluation; the next poll sees the new page.
			t.Logf("poll: %v", err)
			continue
		}
		if strings.HasSuffix(st.Path, "connect.html") {
			// The page shows why from a jQuery ready handler, which may
			// run after the load completes: give it a moment.
			if onConnect.IsZero() {
				onConnect = time.Now()
			}
			if st.Reason != "" || (st.Ready == "complete" && time.Since(onConnect) > 5*time.Second) {
				return st, &errDisconnected{st.Reason}
			}
			continue
		}
		if len(st.Windows) != 1 || !st.Windows[0].drawn() {
			stable = 0
			continue
		}
		// Three equal polls in a row: the first frames are in, nothing
		// is still being refreshed or moved.
		if len(prev.Windows) == 1 && prev.Windows[0] == st.Windows[0] {
			stable++
		} else {
			stable = 0
		}
		if stable >= 2 {
			return st, nil
		}
	}
}

// showSession opens pageURL in a new headless Chromium, waits until the
// session's window is drawn, and takes the screenshot. On failure, what
// the page showed is saved in art as NAME-failed.png.
func showSession(t *testing.T, art, name, pageURL string, tlsPage bool) *shot {
	t.Helper()
	b := chromelab.Start(t, chromelab.Options{Width: 1000, Height: 700, IgnoreCertErrors: tlsPage})
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fail := func(format string, args ...any) {
		t.Helper()
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		if data, err := b.Screenshot(sctx); err == nil {
			save(t, art, name+"-failed.png", data)
		} else {
			t.Logf("no screenshot of the failure: %v", err)
		}
		t.Fatalf("%s: %s\npage log:\n%s", name, fmt.Sprintf(format, args...), b.Log())
	}
	if err := b.Navigate(ctx, pageURL); err != nil {
		fail("%v", err)
	}
	st, err := waitDrawn(ctx, t, b)
	if err != nil {
		fail("%v", err)
	}
	if w := st.Windows[0]; w.Title != "xlogo" {
		fail("the window's title is %q, not xlogo's", w.Title)
	}
	data, err := b.Screenshot(ctx)
	if err != nil {
		fail("%v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		fail("screenshot: %v", err)
	}
	return &shot{name: name, png: data, img: img, window: st.Windows[0], log: b.Log()}
}

// diff compares two screenshots pixel by pixel: a pixel differs when a
// colour channel differs by more than 48 (of 255), which ignores the
// rounding of lossy picture encodings but not a wrong or missing pixel.
type diff struct {
	Pixels, Differ             int // over the whole page
	WindowPixels, WindowDiffer int // over the window's rectangle
	image                      *image.RGBA
}

func compare(a, b *shot) diff {
	ab, bb := a.img.Bounds(), b.img.Bounds()
	bounds := ab.Intersect(bb)
	win := image.Rect(a.window.X, a.window.Y, a.window.X+a.window.W, a.window.Y+a.window.H)
	d := diff{image: image.NewRGBA(bounds)}
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			p, q := color.RGBAModel.Convert(a.img.At(x, y)).(color.RGBA), color.RGBAModel.Convert(b.img.At(x, y)).(color.RGBA)
			differs := absDiff(p.R, q.R) > 48 || absDiff(p.G, q.G) > 48 || absDiff(p.B, q.B) > 48
			inWin := image.Pt(x, y).In(win)
			d.Pixels++
			if inWin {
				d.WindowPixels++
			}
			if differs {
				d.Differ++
				if inWin {
					d.WindowDiffer++
				}
				d.image.Set(x, y, color.RGBA{255, 0, 0, 255})
			} else {
				// The page, faded, so the red stands out where it is.
				d.image.Set(x, y, color.RGBA{p.R/4 + 191, p.G/4 + 191, p.B/4 + 191, 255})
			}
		}
	}
	// Sizes that differ count as different pixels too.
	d.Pixels += ab.Dx()*ab.Dy() + bb.Dx()*bb.Dy() - 2*bounds.Dx()*bounds.Dy()
	d.Differ += ab.Dx()*ab.Dy() + bb.Dx()*bb.Dy() - 2*bounds.Dx()*bounds.Dy()
	return d
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// windowInk counts the dark and light pixels of the window's rectangle in
// the screenshot itself: what the page showed, not only what the canvas
// held.
func windowInk(s *shot) (pixels, dark, light int) {
	r := image.Rect(s.window.X, s.window.Y, s.window.X+s.window.W, s.window.Y+s.window.H).Intersect(s.img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.RGBAModel.Convert(s.img.At(x, y)).(color.RGBA)
			l := 0.299*float64(c.R) + 0.587*float64(c.G) + 0.114*float64(c.B)
			pixels++
			if l < 64 {
				dark++
			}
			if l > 192 {
				light++
			}
		}
	}
	return pixels, dark, light
}

// artifactDir is where CI picks up the screenshots: $XPRA_PROXY_ARTIFACTS,
// else .ci/artifacts in the repository.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("XPRA_PROXY_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root := wd
		for root != "/" {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			root = filepath.Dir(root)
		}
		dir = filepath.Join(root, ".ci", "artifacts")
	}
	dir = filepath.Join(dir, "html5")
	// This run's files only: a stale failure picture would mislead.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func save(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// clientQuery makes the HTML5 client connect at once to host:port as
// user with password, to display (its URL parameters, read by
// index.html; the display goes in its hello).
func clientQuery(port int, user, password, display string) string {
	q := url.Values{}
	// The test user may have other tests' sessions too.
	q.Set("display", display)
	q.Set("server", "127.0.0.1")
	q.Set("port", fmt.Sprint(port))
	q.Set("username", user)
	q.Set("password", password)
	q.Set("sound", "false")
	// A connection failure must show, not be retried behind our back.
	q.Set("reconnect", "false")
	return q.Encode()
}

// TestHTML5: Debian's HTML5 client, served by our proxy on its one TCP
// port, in headless Chromium, reaches a real xpra 3.1.3 session through
// the proxy over WebSocket and WSS and shows the session's window as the
// same client connected straight to the xpra server does. The
// screenshots and their comparison are saved as CI artifacts.
func TestHTML5(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xlogo")
	testenv.Command(t, "chromium")
	if _, err := os.Stat("/usr/share/xpra/www/index.html"); err != nil {
		testenv.Missing(t, "xpra's HTML5 client in /usr/share/xpra/www (Debian package xpra)")
	}
	// The xpra server serves the HTML5 client itself on its websocket
	// port: that is the direct connection to compare with.
	srv := xpralab.Start(t, xpralab.Options{App: html5App, WS: true, Args: []string{"--html=on", "--session-name=html5"}})
	user := srv.User.Username
	cert, key := testCert(t, t.TempDir())
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--ssl-cert="+cert, "--ssl-key="+key)
	art := artifactDir(t)
	var summary strings.Builder
	defer func() { save(t, art, "summary.txt", []byte(summary.String())) }()

	// One client at a time, each in a browser of its own: the session
	// goes to the newest (the client's "steal" default), and each must
	// draw the window afresh.
	direct := showSession(t, art, "direct", fmt.Sprintf("http://127.0.0.1:%d/index.html?%s", srv.WSPort, clientQuery(srv.WSPort, user, "secret", srv.Display)), false)
	save(t, art, "direct.png", direct.png)
	save(t, art, "direct.log", []byte(direct.log))
	pixels, dark, light := windowInk(direct)
	dw, _ := json.Marshal(direct.window)
	fmt.Fprintf(&summary, "direct: window %s; in the screenshot %d pixels, %d dark, %d light\n", dw, pixels, dark, light)
	if dark*50 < pixels || light*3 < pixels {
		t.Fatalf("direct: the screenshot does not show xlogo's window at %+v: %d pixels, %d dark, %d light", direct.window, pixels, dark, light)
	}
	// The comparison below must see a window that is not there: the same
	// page with the window's rectangle painted over differs.
	blanked := image.NewRGBA(direct.img.Bounds())
	draw.Draw(blanked, blanked.Bounds(), direct.img, image.Point{}, draw.Src)
	w := direct.window
	draw.Draw(blanked, image.Rect(w.X, w.Y, w.X+w.W, w.Y+w.H), image.NewUniform(color.RGBA{0, 0x1c, 0x3a, 255}), image.Point{}, draw.Src)
	if d := compare(direct, &shot{img: blanked, window: w}); d.WindowDiffer*100 <= d.WindowPixels || d.Differ*50 <= d.Pixels {
		t.Fatalf("the comparison does not notice a missing window: %d of %d window pixels, %d of %d page pixels differ",
			d.WindowDiffer, d.WindowPixels, d.Differ, d.Pixels)
	}

	for _, tc := range []struct {
		name, scheme, transport string
	}{{"proxy-ws", "http", "ws"}, {"proxy-wss", "https", "wss"}} {
		t.Run(tc.name, func(t *testing.T) {
			// The page and its websocket come from the proxy's one port.
			page := fmt.Sprintf("%s://%s/index.html?%s", tc.scheme, p.Addr(), clientQuery(p.Port, user, "secret", srv.Display))
			s := showSession(t, art, tc.name, page, tc.scheme == "https")
			save(t, art, tc.name+".png", s.png)
			save(t, art, tc.name+".log", []byte(s.log))
			d := compare(direct, s)
			var diffPNG bytes.Buffer
			if err := png.Encode(&diffPNG, d.image); err != nil {
				t.Fatal(err)
			}
			save(t, art, tc.name+"-diff.png", diffPNG.Bytes())
			pixels, dark, light := windowInk(s)
			st, _ := json.Marshal(s.window)
			fmt.Fprintf(&summary, "%s: window %s; in the screenshot %d pixels, %d dark, %d light; vs direct: %d of %d page pixels differ, %d of %d window pixels\n",
				tc.name, st, pixels, dark, light, d.Differ, d.Pixels, d.WindowDiffer, d.WindowPixels)
			if dark*50 < pixels || light*3 < pixels {
				t.Errorf("the screenshot does not show xlogo's window at %+v: %d pixels, %d dark, %d light", s.window, pixels, dark, light)
			}
			if s.window.W != direct.window.W || s.window.H != direct.window.H {
				t.Errorf("window %dx%d, direct %dx%d", s.window.W, s.window.H, direct.window.W, direct.window.H)
			}
			// The window's own pixels must match; the page around it
			// (title bar, menu) nearly so.
			if d.WindowDiffer*100 > d.WindowPixels {
				t.Errorf("%d of %d pixels of the window differ from the direct connection's (see %s)", d.WindowDiffer, d.WindowPixels, filepath.Join(art, tc.name+"-diff.png"))
			}
			if d.Differ*50 > d.Pixels {
				t.Errorf("%d of %d pixels of the page differ from the direct connection's (see %s)", d.Differ, d.Pixels, filepath.Join(art, tc.name+"-diff.png"))
			}
			// The client really came through the proxy, on that transport.
			if !regexp.MustCompile(`msg=authenticated .*transport=` + tc.transport + ` `).MatchString(p.Logs()) {
				t.Errorf("the proxy logged no authenticated %s connection", tc.transport)
			}
		})
	}
	// Last: a failed login leaves a penalty on 127.0.0.1.
	t.Run("wrong password", func(t *testing.T) {
		b := chromelab.Start(t, chromelab.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := b.Navigate(ctx, fmt.Sprintf("http://%s/index.html?%s", p.Addr(), clientQuery(p.Port, user, "wrong", srv.Display))); err != nil {
			t.Fatal(err)
		}
		st, err := waitDrawn(ctx, t, b)
		var de *errDisconnected
		if !errors.As(err, &de) || !strings.Contains(de.text, "authentication failed") {
			t.Fatalf("with a wrong password: %v, state %+v\npage log:\n%s", err, st, b.Log())
		}
		data, err := b.Screenshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		save(t, art, "proxy-wrong-password.png", data)
		fmt.Fprintf(&summary, "wrong password: the client went back to %s saying %q\n", st.Path, de.text)
	})
}
