// SPDX-License-Identifier: GPL-2.0-or-later

// Package xpralab starts real xpra 3.1.3 servers for integration tests, the
// way ../shared/lab/peers/start-peers.sh does: as an unprivileged test
// user, with a clean environment, an empty default start command, and a
// TCP socket on loopback. Tests that use it need root and Debian's xpra;
// where those are missing they skip (and fail under CI, which has them).
package xpralab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/protocol/sockdir"
)

// UserName is the account test servers run as; created when missing.
const UserName = "xpra-proxy-test"

// cleanPath: a python from pyenv or a venv earlier in PATH breaks xpra's
// helper processes.
const cleanPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options shape one server.
type Options struct {
	Args []string // extra xpra arguments, e.g. "--tcp-auth=password,value=secret"
	App  string   // X program started in the session ("" for none)
	WS   bool     // also listen for websocket connections (Server.WSPort)
	// Ready is the probe used to tell the server is up; the default asks
	// for its version over TCP, which every server answers without auth.
	Ready *probe.Options
}

// Server is a running xpra server.
type Server struct {
	Display    string // ":N"
	Port       int    // loopback TCP port
	WSPort     int    // loopback websocket port, when Options.WS
	User       *user.User
	UID, GID   int
	SocketPath string // its unix socket
	Log        string
	pidFile    string
	env        []string
}

// TCP is the server's tcp:// URL with the given user info ("" for none).
func (s *Server) TCP(userinfo string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return fmt.Sprintf("tcp://%s127.0.0.1:%d/", userinfo, s.Port)
}

// Require checks for root and xpra.
func Require(t testing.TB) {
	t.Helper()
	testenv.Root(t)
	testenv.Command(t, "xpra")
	testenv.Command(t, "Xvfb")
}

var userOnce sync.Mutex

// TestUser returns the test account, creating it (and its runtime dir).
func TestUser(t testing.TB) (*user.User, int, int) {
	t.Helper()
	userOnce.Lock()
	defer userOnce.Unlock()
	u, err := user.Lookup(UserName)
	if err != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", UserName).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v: %s", UserName, err, out)
		}
		if u, err = user.Lookup(UserName); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	run := fmt.Sprintf("/run/user/%d", uid)
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, uid, gid); err != nil {
		t.Fatal(err)
	}
	return u, uid, gid
}

// Dir returns a fresh folder the test user can read (t.TempDir is root's
// 0700), removed when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "xpralab-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Drop Debian's default "start = /etc/X11/Xsession true": tests want an
	// empty session that starts fast.
	conf := filepath.Join(dir, "xdg", "xpra")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "xpra.conf"), []byte("start = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var displayMu sync.Mutex

// Test servers use displays 1000-4999, apart from session-displays' default
// (100-999), which the on-demand sessions of the e2e tests use.
var nextDisplay = 1000 + os.Getpid()%4000

// claimDir holds one lock file per display a test process claimed. Test
// binaries of several packages run at once and each starts Xvfb servers:
// checking for an X lock file is not enough, since another process may have
// picked the same number and not yet started its X server. A display is
// ours while we hold an flock on its claim file; the kernel drops it when
// the test process ends, so a crashed test leaves nothing to clean up.
const claimDir = "/tmp/xpralab-displays"

// claims keeps the claim files open (and so locked) for the process's life.
var claims []*os.File

// FreeDisplay picks an X display number with no X server or lock file,
// claimed for this test process so no other test process picks it too.
func FreeDisplay() int {
	displayMu.Lock()
	defer displayMu.Unlock()
	if err := os.MkdirAll(claimDir, 0o1777); err != nil {
		panic(fmt.Sprintf("xpralab: display claims: %v", err))
	}
	for {
		n := nextDisplay
		nextDisplay++
		if nextDisplay >= 5000 {
			nextDisplay = 1000
		}
		f, err := os.OpenFile(filepath.Join(claimDir, strconv.Itoa(n)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		// Checked after the claim: a display another process claimed and
		// started is locked above; one left by a crashed X server, or
		// started outside the tests, shows here.
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
			f.Close()
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			f.Close()
			continue
		}
		claims = append(claims, f)
		return n
	}
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	return StartAll(t, o)[0]
}

// StartAll starts several servers at once: launching one takes a moment,
// becoming ready takes seconds, so they get ready in parallel.
func StartAll(t testing.TB, opts ...Options) []*Server {
	t.Helper()
	Require(t)
	servers := make([]*Server, len(opts))
	for i, o := range opts {
		servers[i] = launch(t, o)
	}
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Go(func() { errs[i] = servers[i].waitReady(o) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return servers
}

func launch(t testing.TB, o Options) *Server {
	t.Helper()
	u, uid, gid := TestUser(t)
	dir := Dir(t)
	s := &Server{User: u, UID: uid, GID: gid, Port: FreePort(t), pidFile: filepath.Join(dir, "server.pid")}
	n := FreeDisplay()
	s.Display = ":" + strconv.Itoa(n)
	s.env = []string{"PATH=" + cleanPath, "HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username,
		"SHELL=/bin/bash", "LANG=C.UTF-8", fmt.Sprintf("XDG_RUNTIME_DIR=/run/user/%d", uid),
		"XDG_CONFIG_DIRS=/etc/xdg:" + filepath.Join(dir, "xdg")}
	if err := os.WriteFile(s.pidFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.pidFile, uid, gid); err != nil {
		t.Fatal(err)
	}
	args := []string{"start", s.Display, "--daemon=yes", "--pidfile=" + s.pidFile,
		fmt.Sprintf("--bind-tcp=127.0.0.1:%d", s.Port),
		"--mdns=no", "--pulseaudio=no", "--notifications=no", "--systemd-run=no", "--dbus-launch=",
		"--dbus-proxy=no", "--dbus-control=no", "--printing=no", "--webcam=no", "--opengl=no",
		"--speaker=off", "--microphone=off", "--file-transfer=no", "--html=off", "--start=" + o.App}
	if o.WS {
		s.WSPort = FreePort(t)
		args = append(args, fmt.Sprintf("--bind-ws=127.0.0.1:%d", s.WSPort))
	}
	args = append(args, o.Args...)
	out, err := s.command(context.Background(), args...).CombinedOutput()
	t.Cleanup(func() { s.Stop(t) })
	if err != nil {
		t.Fatalf("xpra %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	s.Log = fmt.Sprintf("/run/user/%d/xpra/%s.log", uid, s.Display)
	name, _ := sockdir.SocketName(sockdir.Hostname(), s.Display)
	s.SocketPath = filepath.Join(fmt.Sprintf("/run/user/%d/xpra", uid), name)
	return s
}

// waitReady polls until the server answers the readiness probe: xpra
// binds its sockets before its main loop runs, so a connect is not enough.
func (s *Server) waitReady(o Options) error {
	ready := probe.Options{Request: "version"}
	if o.Ready != nil {
		ready = *o.Ready
	}
	if ready.URL == "" {
		ready.URL = s.TCP("")
	}
	ready.Timeout = 5 * time.Second
	deadline := time.Now().Add(90 * time.Second)
	pid := 0
	for {
		_, err := probe.Run(context.Background(), ready)
		if err == nil {
			return nil
		}
		// A server that died (xpra 3.1.3 has segfaulted in libc while
		// starting on a busy machine) is reported at once, not after
		// the whole wait.
		if dead, why := s.died(&pid); dead {
			log, _ := os.ReadFile(s.Log)
			return fmt.Errorf("xpra server %s died while starting (%s): %w\nlog tail:\n%s", s.Display, why, err, tail(string(log), 30))
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.Log)
			return fmt.Errorf("xpra server %s not ready after 90s: %w\nlog tail:\n%s", s.Display, err, tail(string(log), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// died reports whether the server whose pid the pid file held (pid keeps
// the last one seen: xpra removes the file as it exits) is gone, with the
// kernel's line about it if there is one (a segfault).
func (s *Server) died(pid *int) (bool, string) {
	if b, err := os.ReadFile(s.pidFile); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 1 {
			*pid = n
		}
	}
	if *pid == 0 || syscallKill(*pid, 0) == nil {
		return false, ""
	}
	why := fmt.Sprintf("pid %d is gone", *pid)
	if out, err := exec.Command("dmesg").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, fmt.Sprintf("[%d]", *pid)) {
				why += "; kernel: " + strings.TrimSpace(line)
			}
		}
	}
	return true, why
}

// Command runs xpra with args as the server's user, in its environment
// (e.g. the user's own `xpra info`).
func (s *Server) Command(ctx context.Context, args ...string) *exec.Cmd {
	return s.command(ctx, args...)
}

// command runs xpra as the test user with the server's environment.
func (s *Server) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"-u", s.User.Username, "--", "env", "-i"}, s.env...)
	full = append(full, "xpra")
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "runuser", full...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + cleanPath}
	return cmd
}

// Stop stops the server: xpra stop, then SIGKILL of its pid if needed.
func (s *Server) Stop(t testing.TB) {
	pidText, _ := os.ReadFile(s.pidFile) // read first: xpra removes it
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = s.command(ctx, "stop", s.Display).Run() // a server that never started has nothing to stop
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil || pid <= 1 {
		return
	}
	for range 50 {
		if err := syscallKill(pid, 0); err != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("xpra server %s (pid %d) still alive after stop; killing it", s.Display, pid)
	if err := syscallKill(pid, 9); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Logf("kill %d: %v", pid, err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
