// SPDX-License-Identifier: GPL-2.0-or-later

// Package xpra6lab runs the real xpra 6.5.3 build of ../shared/lab/xpra6
// (built into /opt/xpra6 by scripts/ensure-xpra6.sh) for integration
// tests: its client as root, in the kit's isolated environment, and its
// X11 server as the unprivileged test user of package xpralab, on a
// loopback TCP port. Where the build is missing the tests skip with a
// message saying how to build it; under CI=true (scripts/test-all.sh
// builds it first) a missing build is a failure.
package xpra6lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
)

// Prefix is where the kit's build-xpra6.sh puts the build (XPRA6_PREFIX
// overrides it, as in scripts/ensure-xpra6.sh).
func Prefix() string {
	if p := os.Getenv("XPRA6_PREFIX"); p != "" {
		return p
	}
	return "/opt/xpra6"
}

// Version is the xpra release the kit builds.
const Version = "6.5.3"

// Missing says why the 6.x build cannot be used here, or "".
func Missing() string {
	if _, err := os.Stat(filepath.Join(Prefix(), "bin", "xpra")); err != nil {
		return Prefix() + "/bin/xpra is missing (build it with scripts/ensure-xpra6.sh, about 8 minutes)"
	}
	return ""
}

// RemoteEncoderMissing says why 6.5.3's --video-encoders=remote: cannot
// load in the build (the kit's patch, which scripts/ensure-xpra6.sh
// applies, is not in), or "".
func RemoteEncoderMissing() string {
	matches, _ := filepath.Glob(filepath.Join(Prefix(), "lib", "python3*", "site-packages", "xpra", "client", "base", "adapter.py"))
	if len(matches) != 1 {
		return "xpra/client/base/adapter.py not found under " + Prefix()
	}
	src, err := os.ReadFile(matches[0])
	if err != nil {
		return err.Error()
	}
	// The patch reads the defaults from make_defaults_struct() instead of
	// attributes of the options dict (AttributeError: sessions_dir).
	if !strings.Contains(string(src), "defaults.sessions_dir") {
		return "the kit's patches/6.5.3-remote-encoder-adapter.patch is not applied to " + matches[0] +
			" (scripts/ensure-xpra6.sh applies it)"
	}
	return ""
}

// Require skips the test (fails it under CI=true) without the 6.x build,
// root or Xvfb.
func Require(t testing.TB) {
	t.Helper()
	testenv.Root(t)
	testenv.Command(t, "Xvfb")
	if why := Missing(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the xpra %s build: %s (scripts/test-all.sh builds it)", Version, why)
		}
		t.Skipf("skipped: the xpra %s build: %s", Version, why)
	}
}

// envScript is the kit's xpra6-env.sh.
func envScript(t testing.TB) string {
	return filepath.Join(shared.Dir(t), "lab", "xpra6", "xpra6-env.sh")
}

// Env is the environment xpra6-env.sh sets up for PREFIX and STATE, read
// from a shell that sourced it, run as uid/gid (so that the folders it
// makes belong to whoever runs xpra in it).
func Env(t testing.TB, state string, uid, gid int) []string {
	t.Helper()
	cmd := exec.Command("bash", "-c", `. "$0" "$1" "$2" >/dev/null && env -0`, envScript(t), Prefix(), state)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sourcing %s: %v", envScript(t), err)
	}
	var env []string
	for kv := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
		// The shell's own variables are not the kit's.
		if k, _, _ := strings.Cut(kv, "="); k == "SHLVL" || k == "_" || k == "PWD" || k == "OLDPWD" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C.UTF-8")
}

// Client is the 6.x client, run as root in its own state folder.
type Client struct {
	Version string // what `xpra --version` says
	Bin     string
	Env     []string
}

// NewClient requires the build and returns its client.
func NewClient(t testing.TB) *Client {
	t.Helper()
	Require(t)
	c := &Client{Bin: filepath.Join(Prefix(), "bin", "xpra"), Env: Env(t, t.TempDir(), 0, 0)}
	v, err := c.Command(context.Background(), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("xpra 6 --version: %v\n%s", err, v)
	}
	lines := strings.Split(strings.TrimSpace(string(v)), "\n")
	c.Version = strings.TrimPrefix(strings.TrimSpace(lines[len(lines)-1]), "xpra v")
	return c
}

// Command runs the client with args.
func (c *Client) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = c.Env
	cmd.Dir = "/"
	return cmd
}

// Options shape one 6.x server.
type Options struct {
	App  string   // X program started in the session ("" for none)
	Args []string // extra arguments (6.x syntax: --tcp-auth=password:value=secret)
}

// Server is a running 6.x server, owned by the test user.
type Server struct {
	Display string
	Port    int // loopback TCP port (also ws: 6.x upgrades on the same port)
	UID     int
	GID     int
	Log     string // its output
	cmd     *exec.Cmd
	exited  chan struct{}
	client  *Client
}

// TCP is the server's tcp:// URL with the given user info ("" for none).
func (s *Server) TCP(userinfo string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return fmt.Sprintf("tcp://%s127.0.0.1:%d/", userinfo, s.Port)
}

// Start starts a server as the test user and stops it when the test
// ends. It is ready when its log says so (our probe speaks no
// rencodeplus, the only packet encoding 6.x reads).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	_, uid, gid := xpralab.TestUser(t)
	dir := xpralab.Dir(t)
	state := filepath.Join(dir, "xpra6")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, uid, gid); err != nil {
		t.Fatal(err)
	}
	s := &Server{Display: ":" + strconv.Itoa(xpralab.FreeDisplay()), Port: xpralab.FreePort(t), UID: uid, GID: gid,
		Log: filepath.Join(dir, "server.log"), exited: make(chan struct{}), client: NewClient(t)}
	logf, err := os.Create(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := []string{"start", s.Display, "--daemon=no", fmt.Sprintf("--bind-tcp=127.0.0.1:%d", s.Port),
		"--html=off", "--exit-with-children=no", "--start=" + o.App}
	args = append(args, o.Args...)
	s.cmd = exec.Command(filepath.Join(Prefix(), "bin", "xpra"), args...)
	s.cmd.Env = Env(t, state, uid, gid)
	s.cmd.Dir = "/"
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Its own process group: Xvfb and the session's programs go with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("xpra 6 start: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(90 * time.Second)
	for {
		log, _ := os.ReadFile(s.Log)
		if strings.Contains(string(log), "xpra is ready") {
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("xpra %s server %s exited:\n%s", Version, s.Display, tail(string(log), 30))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("xpra %s server %s not ready after 90s:\n%s", Version, s.Display, tail(string(log), 30))
		}
	}
}

// stop ends the server with SIGTERM (xpra's clean exit, which also stops
// its Xvfb), then SIGKILL to its process group if it lingers.
func (s *Server) stop(t testing.TB) {
	_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		t.Logf("xpra %s server %s still alive 20s after SIGTERM: killing its group", Version, s.Display)
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // what is left of the group, if anything
	<-s.exited
	if t.Failed() {
		log, _ := os.ReadFile(s.Log)
		t.Logf("xpra %s server %s log tail:\n%s", Version, s.Display, tail(string(log), 40))
	}
}

// Info is the server's own `xpra info`, asked directly over its TCP port
// with the 6.x client, as key=value pairs.
func (s *Server) Info(t testing.TB, userinfo string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := s.client.Command(ctx, "info", s.TCP(userinfo)).Output()
	if err != nil {
		t.Fatalf("xpra %s info %s: %v\n%s", Version, s.TCP(""), err, out)
	}
	return ParseInfo(string(out))
}

// ParseInfo reads `xpra info` output (key=value lines, any version).
func ParseInfo(out string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(k, " \t") {
			m[k] = v
		}
	}
	return m
}

// drawAcks matches the per-client count of draw acknowledgements in
// `xpra info` of 3.1 ("client.connection...") and 6.x ("client.0.connection...").
var drawAcks = regexp.MustCompile(`^client(\.\d+)?\.connection\.input\.count\.damage-sequence$`)

// DrawsAcked is how many draws the server's clients have acknowledged
// (damage-sequence packets received), from its `xpra info`.
func DrawsAcked(info map[string]string) int {
	n := 0
	for k, v := range info {
		if drawAcks.MatchString(k) {
			c, _ := strconv.Atoi(v)
			n += c
		}
	}
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
