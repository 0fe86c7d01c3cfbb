// SPDX-License-Identifier: GPL-2.0-or-later

package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// The real xpra 3.1.3 command-line tools against our control socket.

// xpraEnv is a clean environment for the client: its own HOME and
// runtime directory so nothing of the machine's sessions or config in
// HOME leaks in.
func xpraEnv(t *testing.T, home string) []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "XDG_RUNTIME_DIR=" + home,
		"LANG=C.UTF-8", "XPRA_SOCKET_HOSTNAME=" + hostname(t)}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// runXpra runs the real client and returns its combined output and exit
// code.
func runXpra(t *testing.T, cred *syscall.Credential, home string, args ...string) (string, int) {
	t.Helper()
	bin := testenv.Command(t, "xpra")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = xpraEnv(t, home)
	cmd.Dir = home
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("xpra %v did not finish within 60 s:\n%s", args, out.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		t.Logf("xpra %v: exit 0\n%s", args, out.String())
		return out.String(), 0
	case errors.As(err, &ee):
		t.Logf("xpra %v: exit %d\n%s", args, ee.ExitCode(), out.String())
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("xpra %v: %v", args, err)
	return "", -1
}

// realServer starts a Server on <dir>/<host>-proxy-<our pid>, as the relay
// worker would, and returns the socket directory and path.
type realServer struct {
	dir, path string
	stops     *stopRecorder
	infos     *atomic.Int64
	done      chan error
}

func startReal(t *testing.T, owner int) *realServer {
	t.Helper()
	testenv.Command(t, "xpra")
	rs := &realServer{dir: t.TempDir(), stops: &stopRecorder{}, infos: new(atomic.Int64), done: make(chan error, 1)}
	rs.path = Path(rs.dir, hostname(t), os.Getpid())
	l, err := Listen(rs.path, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Owner: owner, Version: "9.8.7-test", Stop: rs.stops.Stop,
		Info: func() value.Dict { rs.infos.Add(1); return testInfo() }}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		rs.done <- s.Serve(ctx, l)
		close(rs.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rs.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return rs
}

func (rs *realServer) display() string { return ":proxy-" + strconv.Itoa(os.Getpid()) }

// waitServeDone waits for Serve to end after a stop request.
func (rs *realServer) waitServeDone(t *testing.T) {
	t.Helper()
	select {
	case err := <-rs.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after xpra stop")
	}
}

// TestRealXpraInfo: `xpra info` (and `xpra id`, which the reference also
// answers with info) prints our nested info, flattened, and exits 0, for
// each way 3.1.3 names a socket.
func TestRealXpraInfo(t *testing.T) {
	rs := startReal(t, os.Getuid())
	home := t.TempDir()
	forms := []struct {
		name string
		args []string
	}{
		{"socket URL", []string{"info", "socket://" + rs.path}},
		{"socket colon", []string{"info", "socket:" + rs.path}},
		{"bare path", []string{"info", rs.path}},
		{"display and socket-dirs", []string{"info", rs.display(), "--socket-dirs=" + rs.dir}},
		{"display and socket-dir", []string{"info", rs.display(), "--socket-dir=" + rs.dir}},
		{"id", []string{"id", "socket://" + rs.path}},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			before := rs.infos.Load()
			out, code := runXpra(t, nil, home, f.args...)
			if code != 0 {
				t.Fatalf("xpra %v exited %d:\n%s", f.args, code, out)
			}
			for _, want := range []string{"proxy.version=0.1-test", "proxy.latency.client=3"} {
				if !strings.Contains(out, want) {
					t.Errorf("xpra %v output lacks %q:\n%s", f.args, want, out)
				}
			}
			if rs.infos.Load() != before+1 {
				t.Errorf("Info called %d times, want once", rs.infos.Load()-before)
			}
		})
	}
	if len(rs.stops.calls()) != 0 {
		t.Error("info requests stopped the worker")
	}
}

func TestRealXpraVersion(t *testing.T) {
	rs := startReal(t, os.Getuid())
	home := t.TempDir()
	for _, args := range [][]string{
		{"version", "socket://" + rs.path},
		{"version", rs.display(), "--socket-dirs=" + rs.dir},
	} {
		out, code := runXpra(t, nil, home, args...)
		if code != 0 || !strings.Contains(out, "9.8.7-test\n") {
			t.Errorf("xpra %v exited %d, want 0 and the version:\n%s", args, code, out)
		}
	}
}

// TestRealXpraList: `xpra list` finds the socket, LIVE, under the
// reference's pseudo display name.
func TestRealXpraList(t *testing.T) {
	rs := startReal(t, os.Getuid())
	out, code := runXpra(t, nil, t.TempDir(), "list", "--socket-dirs="+rs.dir)
	if code != 0 {
		t.Fatalf("xpra list exited %d:\n%s", code, out)
	}
	want := regexp.MustCompile(`(?m)^\s*LIVE session at ` + regexp.QuoteMeta(rs.display()) + `\s*$`)
	if !want.MatchString(out) {
		t.Errorf("xpra list does not show %s as LIVE:\n%s", rs.display(), out)
	}
	if _, err := os.Lstat(rs.path); err != nil {
		t.Errorf("the socket is gone after xpra list: %v", err)
	}
}

// TestRealXpraStop: `xpra stop` reports success, Stop runs once with the
// reference's reason, and the socket is gone.
func TestRealXpraStop(t *testing.T) {
	cases := []struct {
		name string
		args func(rs *realServer) []string
		want string
	}{
		{"socket URL", func(rs *realServer) []string { return []string{"stop", "socket://" + rs.path} },
			"server requested disconnect"},
		// Through the display name, xpra also waits for the socket to go.
		{"display", func(rs *realServer) []string {
			return []string{"stop", rs.display(), "--socket-dirs=" + rs.dir}
		}, "has exited"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs := startReal(t, os.Getuid())
			args := tc.args(rs)
			out, code := runXpra(t, nil, t.TempDir(), args...)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Errorf("xpra %v exited %d, want 0 and %q:\n%s", args, code, tc.want, out)
			}
			rs.waitServeDone(t)
			if stops := rs.stops.calls(); !slices.Equal(stops, []string{"socket request"}) {
				t.Errorf("Stop calls %q", stops)
			}
			if _, err := os.Lstat(rs.path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket still there: %v", err)
			}
		})
	}
}

// TestRealXpraRefusals: what the reference refuses, the real client shows
// with the reference's words and a failure exit code.
func TestRealXpraRefusals(t *testing.T) {
	rs := startReal(t, os.Getuid())
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		// 3.1.3 ignores --password-file here; a password in the URL works.
		{[]string{"info", "socket://user:secret@" + rs.path},
			"this socket does not use authentication"},
		{[]string{"detach", "socket://" + rs.path}, onlyHandles},
		{[]string{"screenshot", filepath.Join(home, "s.png"), "socket://" + rs.path}, onlyHandles},
	} {
		out, code := runXpra(t, nil, home, tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("xpra %v exited %d, want a failure showing %q:\n%s", tc.args, code, tc.want, out)
		}
	}
	if rs.infos.Load() != 0 || len(rs.stops.calls()) != 0 {
		t.Errorf("a refused request reached Info (%d) or Stop (%q)", rs.infos.Load(), rs.stops.calls())
	}
}

// TestRealXpraOtherUser: a client running as another uid that can reach
// the socket (its mode widened on purpose) is refused on its credentials.
func TestRealXpraOtherUser(t *testing.T) {
	testenv.Root(t)
	const nobody = 65534
	rs := startReal(t, 0)
	// Let nobody reach the socket: only the peer check stands in the way.
	for _, d := range []string{filepath.Dir(rs.dir), rs.dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(rs.path, 0o666); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := os.Chown(home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(home), 0o711); err != nil {
		t.Fatal(err)
	}
	cred := &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	want := fmt.Sprintf("uid %d may not use this control socket", nobody)
	for _, args := range [][]string{
		{"info", "socket://" + rs.path},
		{"stop", "socket://" + rs.path},
	} {
		out, code := runXpra(t, cred, home, args...)
		if code == 0 || !strings.Contains(out, "permission error") || !strings.Contains(out, want) {
			t.Errorf("xpra %v as nobody exited %d, want a failure showing %q:\n%s", args, code, want, out)
		}
	}
	if rs.infos.Load() != 0 || len(rs.stops.calls()) != 0 {
		t.Errorf("another uid reached Info (%d) or Stop (%q)", rs.infos.Load(), rs.stops.calls())
	}
}
