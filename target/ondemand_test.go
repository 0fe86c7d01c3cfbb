// SPDX-License-Identifier: GPL-2.0-or-later

package target

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/protocol/caps"
	"github.com/xpra-proxy/xpra-proxy/protocol/sockdir"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// What xpra 3.1's and 6.x's clients put in start-new-session becomes the
// supervisor's request in xpra's command-line syntax.
func TestStartMessage(t *testing.T) {
	tests := []struct {
		name    string
		sns     value.Dict
		want    string // mode|display|options
		wantErr string
	}{
		{"3.1 client", value.Dict{{Key: []byte("mode"), Value: []byte("start-desktop")}, {Key: "display", Value: "150"},
			{Key: "start", Value: []any{[]byte("xterm"), "xclock -digital"}}, {Key: "chdir", Value: "/home/u"}},
			"start-desktop|:150|map[chdir:[/home/u] start:[xterm xclock -digital]]", ""},
		{"typed values", value.Dict{{Key: "mode", Value: "seamless"}, {Key: "sharing", Value: true}, {Key: "readonly", Value: false},
			{Key: "dpi", Value: int64(96)}, {Key: "title", Value: nil}},
			"seamless||map[dpi:[96] readonly:[no] sharing:[yes]]", ""},
		{"nested dict", value.Dict{{Key: "env", Value: value.Dict{{Key: "A", Value: "1"}}}}, "", "invalid value for \"env\""},
		{"nested list", value.Dict{{Key: "start", Value: []any{[]any{"x"}}}}, "", "invalid value for \"start\""},
		{"mode not text", value.Dict{{Key: "mode", Value: int64(1)}}, "", "invalid mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp, ok := startRequest(caps.ParseHello(value.Dict{{Key: "start-new-session", Value: tc.sns}}))
			if !ok {
				t.Fatal("no start request seen")
			}
			m, err := startMessage(sp)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if got := fmt.Sprintf("%s|%s|%v", m.Mode, m.Display, m.Options); err != nil || got != tc.want || m.Kind != ipc.StartSession {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
		})
	}
	// An empty dict asks for nothing (Python's truthiness, as xpra).
	for _, h := range []value.Dict{{}, {{Key: "start-new-session", Value: value.Dict{}}}, {{Key: "start-new-session", Value: "yes"}}} {
		if _, ok := startRequest(caps.ParseHello(h)); ok {
			t.Errorf("%v asks for a session", h)
		}
	}
}

// Which connections start a session, and what the others are told.
func TestTargetDecision(t *testing.T) {
	dir := t.TempDir()
	live := listenSession(t, dir, 7)
	defer live.Close()
	for _, tc := range []struct {
		name      string
		hello     value.Dict
		displays  []string // the module's list; nil: scan dir (":7" is live there)
		mode      string
		want      string
		wantError string
		noLive    bool // the user has no live session in the socket dirs
	}{
		{"a session to go to", nil, nil, StartAuto, ":7", "", false},
		{"asked, starting disabled", value.Dict{{Key: "start-new-session", Value: value.Dict{{Key: "mode", Value: "start"}}}}, nil, "",
			"", "session not found error: no displays found (this proxy does not start sessions)", false},
		{"none, on-request only", nil, []string{}, StartOnRequest, "", "session not found error: no displays found", false},
		{"module lists none but the user has a live one: no start (#3021)", nil, []string{}, StartAuto, "", "session not found error: no displays found", false},
		{"several", nil, []string{":1", ":2"}, StartAuto, "", "session not found error: please specify a display, more than one is available: :1, :2", false},
		{"none, but only detaching", value.Dict{{Key: "detach_request", Value: true}}, []string{}, StartAuto, "", "session not found error: no displays found", false},
		{"none, auto: a start is asked of the supervisor", nil, nil, StartAuto, "",
			"session not found error: no displays found (this proxy does not start sessions)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirs := []string{dir}
			if tc.noLive {
				dirs = []string{t.TempDir()}
			}
			s := &Finder{Log: quietLog(), StartMode: tc.mode,
				Launch: launch.Launch{UID: os.Getuid(), SocketDirs: dirs, Displays: tc.displays}}
			d, started, err := s.Choose(context.Background(), caps.ParseHello(tc.hello))
			if tc.wantError != "" {
				if err == nil || err.Error() != tc.wantError {
					t.Fatalf("target = %q, %v; want the error %q", d, err, tc.wantError)
				}
				return
			}
			if err != nil || d != tc.want || started != nil {
				t.Fatalf("target = %q, %v, %v; want %q", d, started, err, tc.want)
			}
		})
	}
}

// listenSession makes a live xpra-style socket for display n in dir.
func listenSession(t *testing.T, dir string, n int) net.Listener {
	t.Helper()
	name, err := sockdir.SocketName(sockdir.Hostname(), fmt.Sprintf(":%d", n))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The relay waits for the started session's socket to answer, and stops
// waiting as soon as the session's leader is gone.
func TestWaitLive(t *testing.T) {
	dir := t.TempDir()
	s := &Finder{Log: quietLog(), Launch: launch.Launch{UID: os.Getuid(), SocketDirs: []string{dir}}}
	go func() {
		time.Sleep(300 * time.Millisecond)
		l := listenSession(t, dir, 150)
		t.Cleanup(func() { l.Close() })
	}()
	t0 := time.Now()
	path, err := s.waitLive(context.Background(), ":150", os.Getpid(), 10*time.Second)
	if err != nil || filepath.Dir(path) != dir {
		t.Fatalf("waitLive = %q, %v", path, err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}

	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	_, err = s.waitLive(context.Background(), ":151", gone.Process.Pid, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "the session ended while starting") || time.Since(t0) > 5*time.Second {
		t.Fatalf("leader gone: %v after %v", err, time.Since(t0))
	}
	_, err = s.waitLive(context.Background(), ":152", 0, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no server on :152 after 300ms") {
		t.Fatalf("timeout: %v", err)
	}
}
