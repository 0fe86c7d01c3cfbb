// SPDX-License-Identifier: GPL-2.0-or-later

// Package chromelab runs Debian's headless Chromium for end-to-end tests
// and drives it over the DevTools protocol (JSON calls over a websocket on
// loopback): load a page, evaluate JavaScript in it, take a screenshot.
// Each browser gets a new empty profile and its own process group, which
// is killed when the test ends. Without chromium the test is skipped (and
// fails under CI, which installs it).
package chromelab

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// Options shape one browser.
type Options struct {
	Width, Height int // window size in CSS pixels; default 1000x700
	// IgnoreCertErrors accepts any certificate, for a test's self-signed one.
	IgnoreCertErrors bool
	// StartTimeout bounds the wait for the DevTools endpoint; default 60 s
	// (a cold start on a loaded 2-core machine takes several seconds).
	StartTimeout time.Duration
}

// maxLogLines bounds what the browser's console log keeps (the newest).
const maxLogLines = 2000

// Browser is a running headless Chromium with one page.
type Browser struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	stderr  *buffer
	conn    net.Conn
	rw      io.ReadWriter
	wmu     sync.Mutex // one writer at a time: calls and the reader's pongs
	mu      sync.Mutex
	nextID  int
	pending map[int]chan reply
	log     []string
	readErr error
	done    chan struct{} // closed when the reader stops
	close   sync.Once
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Start launches Chromium on about:blank and connects to its page. The
// browser is closed when the test ends.
func Start(t testing.TB, o Options) *Browser {
	t.Helper()
	bin := testenv.Command(t, "chromium")
	if o.Width == 0 {
		o.Width, o.Height = 1000, 700
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	profile := t.TempDir()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir=" + profile, fmt.Sprintf("--window-size=%d,%d", o.Width, o.Height),
		// Port 0: Chromium picks a free one and writes it to
		// DevToolsActivePort in the profile, so parallel tests never collide.
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"}
	if o.IgnoreCertErrors {
		args = append(args, "--ignore-certificate-errors")
	}
	args = append(args, "about:blank")
	b := &Browser{exited: make(chan struct{}), stderr: &buffer{}, pending: map[int]chan reply{}, done: make(chan struct{})}
	b.cmd = exec.Command(bin, args...)
	// HOME in the profile: nothing of root's home is read or written.
	b.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + profile, "LANG=C.UTF-8"}
	b.cmd.Stdout, b.cmd.Stderr = b.stderr, b.stderr
	// A process that left the group could hold the output pipe open.
	b.cmd.WaitDelay = 5 * time.Second
	// Its own group, so Close stops the zygote, renderers and GPU process
	// too; Pdeathsig covers a test binary that dies without cleaning up.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(b.Close)
	if err := b.connect(profile, o.StartTimeout); err != nil {
		t.Fatalf("chromium: %v\nits output:\n%s", err, b.stderr)
	}
	return b
}

// connect waits for the DevTools port and opens the page's websocket.
func (b *Browser) connect(profile string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var port int
	for {
		// Written as "PORT\n/devtools/browser/ID" once the server listens.
		data, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err == nil {
			if first, _, ok := strings.Cut(string(data), "\n"); ok {
				if port, err = strconv.Atoi(first); err == nil && port > 0 {
					break
				}
			}
		}
		select {
		case <-b.exited:
			return fmt.Errorf("exited before its DevTools endpoint was up: %v", b.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no DevTools endpoint after %v", timeout)
		}
	}
	page, err := pageTarget(port, deadline)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// No Origin header: Chromium refuses DevTools connections from web
	// origins it was not told to allow, and a program has none.
	conn, br, _, err := ws.Dialer{}.Dial(ctx, page)
	if err != nil {
		return fmt.Errorf("DevTools websocket %s: %w", page, err)
	}
	b.conn = conn
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn) // bytes the handshake read past its end
	}
	b.rw = struct {
		io.Reader
		io.Writer
	}{r, writerFunc(b.write)}
	go b.readLoop()
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		if err := b.Call(ctx, m, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// pageTarget finds the websocket URL of the browser's page.
func pageTarget(port int, deadline time.Time) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		url, err := func() (string, error) {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/json/list", port))
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			var targets []struct{ Type, WebSocketDebuggerURL string }
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&targets); err != nil {
				return "", fmt.Errorf("DevTools target list: %w", err)
			}
			for _, t := range targets {
				if t.Type == "page" && t.WebSocketDebuggerURL != "" {
					return t.WebSocketDebuggerURL, nil
				}
			}
			return "", errors.New("no page target yet")
		}()
		if err == nil {
			return url, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("DevTools on port %d: %w", port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (b *Browser) write(p []byte) (int, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if err := b.conn.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, err
	}
	return b.conn.Write(p)
}

// readLoop hands replies to their callers and keeps console messages.
func (b *Browser) readLoop() {
	defer close(b.done)
	for {
		data, _, err := wsutil.ReadServerData(b.rw)
		if err != nil {
			b.mu.Lock()
			b.readErr = fmt.Errorf("DevTools connection: %w", err)
			b.mu.Unlock()
			return
		}
		var m struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			reply
		}
		if err := json.Unmarshal(data, &m); err != nil {
			b.mu.Lock()
			b.readErr = fmt.Errorf("DevTools message: %w", err)
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.pending[m.ID]; ok {
				delete(b.pending, m.ID)
				ch <- m.reply
			}
		} else if line := eventLine(m.Method, m.Params); line != "" {
			b.log = append(b.log, line)
			if len(b.log) > maxLogLines {
				b.log = b.log[len(b.log)-maxLogLines:]
			}
		}
		b.mu.Unlock()
	}
}

// eventLine renders the events worth keeping (console output, uncaught
// exceptions, browser log entries such as failed loads) as one line.
func eventLine(method string, params json.RawMessage) string {
	switch method {
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		if json.Unmarshal(params, &p) != nil {
			return ""
		}
		parts := []string{"console." + p.Type + ":"}
		for _, a := range p.Args {
			if a.Value != nil {
				parts = append(parts, fmt.Sprint(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		return strings.Join(parts, " ")
	case "Runtime.exceptionThrown":
		var p struct {
			Details struct {
				Text      string `json:"text"`
				URL       string `json:"url"`
				Line      int    `json:"lineNumber"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		if json.Unmarshal(params, &p) != nil {
			return ""
		}
		d := p.Details
		return fmt.Sprintf("exception: %s %s (%s:%d)", d.Text, d.Exception.Description, d.URL, d.Line)
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Source, Text, URL string } `json:"entry"`
		}
		if json.Unmarshal(params, &p) != nil {
			return ""
		}
		return fmt.Sprintf("log.%s (%s): %s %s", p.Entry.Level, p.Entry.Source, p.Entry.Text, p.Entry.URL)
	}
	return ""
}

// Call sends a DevTools command and decodes its result into result (if
// not nil).
func (b *Browser) Call(ctx context.Context, method string, params, result any) error {
	ch := make(chan reply, 1)
	b.mu.Lock()
	if b.readErr != nil {
		err := b.readErr
		b.mu.Unlock()
		return err
	}
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	msg, err := json.Marshal(struct {
		ID     int    `json:"id"`
		Method string `json:"method"`
		Params any    `json:"params,omitempty"`
	}{id, method, params})
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if err := wsutil.WriteClientText(b.rw, msg); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: DevTools error %d: %s", method, r.Error.Code, r.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(r.Result, result); err != nil {
				return fmt.Errorf("%s result: %w", method, err)
			}
		}
		return nil
	case <-b.done:
		b.mu.Lock()
		defer b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, b.readErr)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// Navigate loads url in the page; it returns once the navigation is
// committed, not when the page is done (poll with Eval for that).
func (b *Browser) Navigate(ctx context.Context, url string) error {
	var r struct {
		ErrorText string `json:"errorText"`
	}
	if err := b.Call(ctx, "Page.navigate", map[string]any{"url": url}, &r); err != nil {
		return err
	}
	if r.ErrorText != "" {
		return fmt.Errorf("loading %s: %s", url, r.ErrorText)
	}
	return nil
}

// Eval evaluates a JavaScript expression in the page (awaiting a promise)
// and decodes its JSON value into v (if not nil).
func (b *Browser) Eval(ctx context.Context, expr string, v any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := b.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if err != nil {
		return err
	}
	if e := r.ExceptionDetails; e != nil {
		return fmt.Errorf("javascript: %s %s", e.Text, e.Exception.Description)
	}
	if v != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, v); err != nil {
			return fmt.Errorf("javascript result %.200s: %w", r.Result.Value, err)
		}
	}
	return nil
}

// Screenshot returns a PNG of the page's viewport.
func (b *Browser) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := b.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return nil, err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, fmt.Errorf("screenshot data: %w", err)
	}
	return png, nil
}

// Log returns the page's console output, uncaught exceptions and the
// browser's log entries seen so far, one per line.
func (b *Browser) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.log, "\n")
}

// Output is what the chromium process wrote on stdout and stderr.
func (b *Browser) Output() string { return b.stderr.String() }

// Close stops the browser and every process of its group (done at the
// end of the test too; calling it twice is harmless).
func (b *Browser) Close() {
	b.close.Do(func() {
		if b.conn != nil {
			b.conn.Close()
		}
		pgid := b.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM) // the group may be gone already
		select {
		case <-b.exited:
		case <-time.After(5 * time.Second):
		}
		// Whatever of the group is left (a renderer that ignored TERM),
		// then wait until the group is empty: its other processes are
		// not our children, init reaps them.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-b.exited
		for range 100 {
			if syscall.Kill(-pgid, 0) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// buffer collects output written from other goroutines.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil // enough to diagnose; the rest is dropped
	}
	return s.b.Write(p)
}

func (s *buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
