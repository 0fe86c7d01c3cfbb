// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpra6lab"
	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// config6 is what an admin writes to have sessions started by an xpra 6.x
// build installed beside the distribution's 3.1.3 (the kit's /opt/xpra6):
// session-command runs it through env(1) with its own system config
// folder, so that it does not read 3.1.3's /etc/xpra; session-args are
// 6.x options (3.1.3's --dbus-proxy no longer exists there).
func config6(prefix string) string {
	return fmt.Sprintf(`auth = ["pam"]
tcp-auth = ["pam"]
ssl-cert = "/etc/xpra-proxy/cert.pem"
ssl-key = "/etc/xpra-proxy/key.pem"
per-source-penalty = "0s"
start-session = "on-request"
session-displays = "130-139"
session-command = ["/usr/bin/env", "XPRA_SYSTEM_CONF_DIRS=%[1]s/etc/xpra", "%[1]s/bin/xpra"]
session-args = ["--start=xclock -update 1", "--xvfb=Xvfb -screen 0 1280x1024x24 -nolisten tcp -noreset -auth $XAUTHORITY",
  "--mdns=no", "--pulseaudio=no", "--audio=no", "--notifications=no", "--dbus-launch=", "--dbus-control=no",
  "--printing=no", "--webcam=no", "--opengl=no", "--speaker=off", "--microphone=off", "--file-transfer=no", "--html=off"]
`, prefix)
}

// xpra6Session: with session-command pointing at the 6.5.3 build, a real
// 6.5.3 client logs in over TLS with the system password (PAM) and asks
// for a session (xpra start ssl://... --attach=no); the proxy starts it
// as a logind session, finds its socket in 6.x's layout
// (/run/user/UID/xpra/N/socket) and relays the 6.5.3 client's `attach`
// to it, which draws.
func (b *bed) xpra6Session(t *testing.T) {
	if why := xpra6lab.Missing(); why != "" {
		testenv.Missing(t, "the xpra "+xpra6lab.Version+" build: "+why)
	}
	prefix := xpra6lab.Prefix()
	// The user's 3.1.3 sessions of the earlier steps stay: the 6.5.3
	// client names its session in the URL's path, as a 3.1.3 client does
	// (6.x sends it as the hello's session.display, not as "display").
	before := map[string]bool{}
	for _, s := range b.proxySessions(t) {
		before[s.ID] = true
	}
	if err := os.WriteFile("/etc/xpra-proxy/xpra-proxy.toml", []byte(config6(prefix)), 0o640); err != nil {
		t.Fatal(err)
	}
	sh(t, "systemctl", "restart", "xpra-proxy.service")
	c6 := newXpra6Client(t, prefix)
	run := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := c6.command(ctx, args...).CombinedOutput()
		return string(out), err
	}
	defer func() {
		if t.Failed() {
			t.Logf("journal of the service:\n%s", journal("xpra-proxy.service"))
			t.Logf("journal of the sessions:\n%s", journal("xpra-proxy-session-*"))
		}
	}()
	tlsURL := "ssl://" + testUser + ":" + testPassword + "@" + tcpAddr + "/"
	trust := "--ssl-ca-certs=/etc/xpra-proxy/cert.pem"

	// PAM with the 6.5.3 client: a wrong password, then the right one.
	if out, _ := run(60*time.Second, "info", "ssl://"+testUser+":not-"+testPassword+"@"+tcpAddr+"/", trust); !strings.Contains(out, "authentication failed") || strings.Contains(out, "server.type") {
		t.Fatalf("xpra %s info with a wrong password:\n%s", xpra6lab.Version, out)
	}
	if out, err := run(60*time.Second, "info", tlsURL, trust); err != nil || !strings.Contains(out, "server.type=xpra-proxy") {
		t.Fatalf("xpra %s info with the system password over TLS: %v\n%s", xpra6lab.Version, err, out)
	}
	if out, err := run(60*time.Second, "version", "ssl://"+tcpAddr+"/", trust); err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("xpra %s version over TLS: %v\n%s", xpra6lab.Version, err, out)
	} else {
		t.Logf("xpra %s version through the proxy: %s", xpra6lab.Version, lastLine(out))
	}

	// A session on request, started by the 6.x build as a logind session.
	// xpra start ssl://... --attach=no: a new session each time.
	startOne := func() logind.Session {
		t.Helper()
		t0 := time.Now()
		// 6.5.3's client initialises GTK even for --attach=no: it needs a display.
		ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
		defer cancel()
		startCmd := exec.CommandContext(ctx, "xvfb-run", "-a", "-s", "-screen 0 1024x768x24", c6.bin, "start", tlsURL, "--attach=no", trust, "--start=xterm")
		startCmd.Env, startCmd.Dir = c6.env, "/"
		outb, err := startCmd.CombinedOutput()
		out := string(outb)
		if err != nil {
			t.Fatalf("xpra %s start %s --attach=no: %v\n%s", xpra6lab.Version, tlsURL, err, out)
		}
		t.Logf("xpra %s start ssl://... --attach=no: answered after %v:\n%s", xpra6lab.Version, time.Since(t0).Round(time.Millisecond), out)
		var ss []logind.Session
		for _, s := range b.proxySessions(t) {
			if !before[s.ID] {
				ss = append(ss, s)
			}
		}
		if len(ss) != 1 {
			t.Fatalf("new proxy sessions after the start: %+v, want one", ss)
		}
		before[ss[0].ID] = true
		return ss[0]
	}
	terminate := func(s logind.Session) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := b.lc.Terminate(ctx, s.ID); err != nil {
			t.Errorf("terminating the 6.x session %s: %v", s.ID, err)
		}
	}
	s := startOne()
	if s.Display != ":130" {
		t.Fatalf("the session started on request is on %s, want :130 (the first of session-displays)", s.Display)
	}
	show := loginctlShow(t, s.ID)
	for k, want := range map[string]string{"Name": testUser, "Service": "xpra-proxy", "Class": "user", "Type": "x11",
		"Remote": "yes", "RemoteHost": "127.0.0.1", "Display": ":130"} {
		if show[k] != want {
			t.Errorf("loginctl show-session %s: %s=%q, want %q", s.ID, k, show[k], want)
		}
	}
	// The leader logs what it ran (6.x retitles its process, so its
	// cmdline does not show the command); the server's own `version` on
	// the session's socket, below, says which xpra it is.
	// journald may show the line a moment after the start's answer.
	waitFor(t, 15*time.Second, "the session's leader to log running /usr/bin/env", func() bool {
		logs := journal("xpra-proxy-session-*")
		return strings.Contains(logs, "session="+s.ID+" ") && strings.Contains(logs, "command=/usr/bin/env")
	})
	// 6.x's layout: a folder per session with its socket inside.
	sock := fmt.Sprintf("/run/user/%d/xpra/130/socket", b.uid)
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || int(st.Uid) != b.uid {
		t.Errorf("the 6.x session's socket %s: %v (uid %d)", sock, err, st.Uid)
	}
	// 6.x also binds "<hostname>-N" in its first socket-dirs entry, which
	// the relay may find first: either is the session.
	host, _ := os.Hostname()
	named := fmt.Sprintf("/run/user/%d/xpra/%s-130", b.uid, host)
	if logs := journal("xpra-proxy.service"); !strings.Contains(logs, "socket="+sock) && !strings.Contains(logs, "socket="+named) {
		t.Errorf("the relay did not log %s (or %s) live:\n%s", sock, named, logs)
	}
	// The server itself says which xpra it is.
	direct := "socket://" + sock
	if out, err := run(60*time.Second, "version", direct); err != nil || lastLine(out) != xpra6lab.Version {
		t.Fatalf("xpra version %s: %v\n%s", direct, err, out)
	}

	// The 6.x client attaches through the proxy (TLS, PAM) and draws: the
	// server's own info counts the draws it acknowledged.
	// The session is new and no client has attached: every draw the
	// server counts was acknowledged through the proxy.
	// A second session: without a display in the URL the client is told
	// to name one, as xpra 6.5.3's own proxy tells it; with /130 in the
	// URL (sent as the hello's session.display) it gets that one.
	second := startOne()
	defer terminate(second)
	if second.Display == ":130" {
		t.Fatalf("the second session is on :130 too")
	}
	out := c6.attachOnce(t, tlsURL, trust)
	if !strings.Contains(out, "please specify a display, more than one is available") || !strings.Contains(out, ":130") || !strings.Contains(out, second.Display) {
		t.Errorf("xpra %s attach %s with several sessions:\n%s", xpra6lab.Version, tlsURL, out)
	} else {
		t.Logf("xpra %s attach without a display, with :130 and %s live: told to specify one", xpra6lab.Version, second.Display)
	}
	a := c6.attach(t, tlsURL+"130", trust)
	defer a.stop()
	deadline := time.Now().Add(90 * time.Second)
	for {
		// The session's own info goes straight to the 6.x server, which
		// on this loaded machine dropped one while still starting up
		// ("Broken pipe", third testbed run): such a miss is logged and
		// asked again until the deadline.
		info, err := sessionInfo(run, direct)
		if err != nil {
			t.Logf("xpra info %s: %v", direct, err)
		} else if n := xpra6lab.DrawsAcked(info); n > 0 && info["clients"] == "1" {
			t.Logf("xpra %s attach through TLS with PAM to the session started on demand: %d draws acknowledged", xpra6lab.Version, n)
			break
		}
		if a.disconnected() {
			t.Fatalf("the %s client was disconnected:\n%s", xpra6lab.Version, a.out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no draw acknowledged within 90s (server info clients=%q, err %v)\nclient:\n%s", info["clients"], err, a.out)
		}
		time.Sleep(time.Second)
	}
	if relayedTo(":130") < 1 {
		t.Errorf("the attach was not relayed to :130 by the proxy")
	}
	b.rootControl(t, run)
	a.stop()
	terminate(s)
	waitFor(t, 20*time.Second, "the X server of :130 to go", func() bool { return !xListening(130) })
	if _, err := b.lc.Session(context.Background(), s.ID); !errors.Is(err, logind.ErrNoSession) {
		t.Errorf("session %s after terminate: %v", s.ID, err)
	}
}

// rootControl: root's `xpra info :proxy-PID` of the relay to :130, by
// the display name alone as README and xpra-proxy(8) say, through the
// root-only socket the supervisor binds for it in /run/xpra: xpra 3.1.3
// with its own defaults, and 6.5.3 (run6), whose test folder replaces
// its socket-dirs, told /run/xpra, one of its defaults.
func (b *bed) rootControl(t *testing.T, run6 func(time.Duration, ...string) (string, error)) {
	var pid int
	waitFor(t, 30*time.Second, "the relay to :130 in xpra-proxy list", func() bool {
		var conns []connlist.Conn
		if json.Unmarshal([]byte(try("xpra-proxy", "list", "--json")), &conns) != nil {
			return false
		}
		for _, c := range conns {
			if strings.Contains(c.Target, "/130/") || strings.HasSuffix(c.Target, "-130") {
				pid = c.Pid
				return true
			}
		}
		return false
	})
	display := fmt.Sprintf(":proxy-%d", pid)
	want := fmt.Sprintf("proxy.pid=%d", pid)
	cmd := exec.Command("xpra", "info", display)
	cmd.Env, cmd.Dir = []string{"PATH=" + cleanPath, "HOME=/root", "LANG=C.UTF-8", "XDG_RUNTIME_DIR=/run/user/0"}, "/"
	t0 := time.Now()
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "proxy.user="+testUser) {
		t.Errorf("xpra 3.1.3 info %s as root:\n%s", display, out)
	} else {
		t.Logf("xpra 3.1.3 info %s as root: answered in %v", display, time.Since(t0).Round(time.Millisecond))
	}
	t0 = time.Now()
	out6, _ := run6(60*time.Second, "info", display, "--socket-dirs=/run/xpra")
	if !strings.Contains(out6, want) || !strings.Contains(out6, "proxy.user="+testUser) {
		t.Errorf("xpra %s info %s --socket-dirs=/run/xpra as root:\n%s", xpra6lab.Version, display, out6)
	} else {
		t.Logf("xpra %s info %s as root: answered in %v", xpra6lab.Version, display, time.Since(t0).Round(time.Millisecond))
	}
}

// sessionInfo is the session's own `xpra info`, asked on its socket.
func sessionInfo(run func(time.Duration, ...string) (string, error), url string) (map[string]string, error) {
	out, err := run(60*time.Second, "info", url)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, lastLine(out))
	}
	return xpra6lab.ParseInfo(out), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// xpra6Client is the 6.x build's client as root, isolated as the kit's
// xpra6-env.sh does it (the kit's folder is not inside the testbed).
type xpra6Client struct {
	bin string
	env []string
}

func newXpra6Client(t *testing.T, prefix string) *xpra6Client {
	t.Helper()
	state := t.TempDir()
	conf := filepath.Join(state, "conf")
	rundir := filepath.Join(state, "run")
	for _, d := range []string{conf, rundir, filepath.Join(state, "sockets")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	defaults := "socket-dirs = " + filepath.Join(state, "sockets") + "\nsplash = no\nmdns = no\naudio = no\nspeaker = off\n" +
		"microphone = off\nwebcam = no\nprinting = no\nnotifications = no\ndbus = no\ntray = no\nfile-transfer = no\n" +
		"open-files = no\nopen-url = no\nopengl = no\nsystemd-run = no\n"
	if err := os.WriteFile(filepath.Join(conf, "xpra.conf"), []byte(defaults), 0o600); err != nil {
		t.Fatal(err)
	}
	return &xpra6Client{bin: prefix + "/bin/xpra", env: []string{
		"PATH=" + prefix + "/bin:" + cleanPath, "HOME=" + state, "LANG=C.UTF-8",
		"XDG_RUNTIME_DIR=" + rundir, "XDG_CONFIG_HOME=" + filepath.Join(state, ".config"),
		"XPRA_SYSTEM_CONF_DIRS=" + prefix + "/etc/xpra", "XPRA_USER_CONF_DIRS=" + conf,
	}}
}

func (c *xpra6Client) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env, cmd.Dir = c.env, "/"
	return cmd
}

// attachOnce runs `xpra attach` in an Xvfb of its own until it exits
// (within a minute) and returns what it printed.
func (c *xpra6Client) attachOnce(t *testing.T, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"-a", "-s", "-screen 0 1024x768x24", c.bin, "attach", url, "--mmap=no", "--clipboard=no"}, extra...)
	cmd := exec.CommandContext(ctx, "xvfb-run", args...)
	cmd.Env, cmd.Dir = c.env, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, _ := cmd.CombinedOutput() // refused: the output says why, the exit code is the client's own
	if ctx.Err() != nil {
		t.Fatalf("xpra %s attach %s still running after a minute:\n%s", xpra6lab.Version, url, out)
	}
	return string(out)
}

// attach runs `xpra attach` in an Xvfb of its own until stopped; mmap off
// so that pixels go through the proxy.
func (c *xpra6Client) attach(t *testing.T, url string, extra ...string) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"-a", "-s", "-screen 0 1280x1024x24", c.bin, "attach", url, "--mmap=no", "--clipboard=no"}, extra...)
	cmd := exec.CommandContext(ctx, "xvfb-run", args...)
	cmd.Env, cmd.Dir = c.env, "/"
	out := &proxylab.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	cl := &client{out: out}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopped := false
	cl.stop = func() {
		if stopped {
			return
		}
		stopped = true
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
	}
	return cl
}
