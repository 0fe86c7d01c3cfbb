// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"encoding/json"
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
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// listConns runs the real `xpra-proxy list --json` as root.
func listConns(t *testing.T, p *proxylab.Proxy) []connlist.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(proxylab.Build(t), "xpra-proxy"), "list", "--json", "--run-dir="+p.RunDir).Output()
	if err != nil {
		t.Fatalf("xpra-proxy list --json: %v\n%s", err, out)
	}
	var conns []connlist.Conn
	if err := json.Unmarshal(out, &conns); err != nil {
		t.Fatalf("xpra-proxy list --json: %v\n%s", err, out)
	}
	return conns
}

func byPid(conns []connlist.Conn, pid int) (connlist.Conn, bool) {
	for _, c := range conns {
		if c.Pid == pid {
			return c, true
		}
	}
	return connlist.Conn{}, false
}

// TestControl: each connection's worker has a :proxy-PID control socket
// that the real `xpra info` and `xpra stop` use; stopping one connection
// leaves the others drawing; `xpra-proxy list` shows them all.
func TestControl(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	// Two sessions of one user, one client each (a second client of the
	// same session would take it over).
	servers := xpralab.StartAll(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=control-a"}},
		xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=control-b"}})
	srv := servers[0]
	p := proxylab.Start(t, "--tcp-auth=password,value=secret")
	creds := srv.User.Username + ":secret"

	before := map[int]bool{}
	for _, c := range listConns(t, p) {
		before[c.Pid] = true
	}
	first := startAttach(t, p.URL(creds, servers[0].Display))
	second := startAttach(t, p.URL(creds, servers[1].Display))

	// Both connections are listed with their user, source, transport and
	// target, and bytes flowing to their clients.
	var mine []connlist.Conn
	deadline := time.Now().Add(20 * time.Second)
	for len(mine) < 2 && time.Now().Before(deadline) {
		mine = mine[:0]
		for _, c := range listConns(t, p) {
			// Only relays to this test's sessions: xpra-proxy list shows
			// every relay on the machine, other tests' included.
			own := false
			for _, s := range servers {
				own = own || strings.HasSuffix(c.Target, "-"+strings.TrimPrefix(s.Display, ":"))
			}
			if own && !before[c.Pid] && c.Control != "" && c.ToClient > 0 {
				mine = append(mine, c)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(mine) != 2 {
		t.Fatalf("xpra-proxy list shows %d new connections with traffic, want 2: %+v", len(mine), mine)
	}
	for _, c := range mine {
		if c.User != srv.User.Username || c.Transport != "tcp" || !strings.HasPrefix(c.Target, "socket://") ||
			!strings.HasPrefix(c.Source, "127.0.0.1:") || c.Error != "" {
			t.Errorf("listed connection: %+v", c)
		}
	}
	victim, survivor := mine[0], mine[1]
	dir, name := filepath.Dir(victim.Control), filepath.Base(victim.Control)
	display := ":proxy-" + strings.TrimPrefix(name[strings.LastIndex(name, "-proxy-"):], "-proxy-")
	if display != fmt.Sprintf(":proxy-%d", victim.Pid) {
		t.Fatalf("control socket %s is not named for pid %d", victim.Control, victim.Pid)
	}

	// The real xpra client's info and stop, by display name, as root.
	out := xpraClient(t, 30*time.Second, "info", display, "--socket-dir="+dir)
	if !strings.Contains(out, "proxy.user="+srv.User.Username) || !strings.Contains(out, fmt.Sprintf("proxy.pid=%d", victim.Pid)) {
		t.Fatalf("xpra info %s:\n%s", display, out)
	}
	out = xpraClient(t, 30*time.Second, "stop", display, "--socket-dir="+dir)
	if !strings.Contains(out, "has exited") && !strings.Contains(out, "shutdown") {
		t.Fatalf("xpra stop %s:\n%s", display, out)
	}

	// Exactly one connection ended: its worker is gone, and one of the two
	// clients was told; the other keeps drawing.
	deadline = time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := byPid(listConns(t, p), victim.Pid); !ok {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	conns := listConns(t, p)
	if _, ok := byPid(conns, victim.Pid); ok {
		t.Fatalf("worker %d still running after xpra stop", victim.Pid)
	}
	s1, ok := byPid(conns, survivor.Pid)
	if !ok {
		t.Fatalf("the other connection (worker %d) ended too", survivor.Pid)
	}
	time.Sleep(3 * time.Second)
	s2, ok := byPid(listConns(t, p), survivor.Pid)
	if !ok || s2.ToClient <= s1.ToClient {
		t.Fatalf("the other connection stopped drawing: %d then %d bytes to its client (still there: %v)", s1.ToClient, s2.ToClient, ok)
	}
	if first.disconnected() == second.disconnected() {
		t.Fatalf("want exactly one client disconnected; first:\n%s\nsecond:\n%s", first.out, second.out)
	}
}

// TestSupervisorControl: the supervisor's own display answers the real
// `xpra info` and `xpra list`, and `xpra stop` stops it, for root.
func TestSupervisorControl(t *testing.T) {
	xpralab.Require(t)
	p := proxylab.Start(t, "--tcp-auth=password,value=secret")
	dir := filepath.Dir(p.Control)
	var out string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if out = xpraClient(t, 30*time.Second, "info", ":proxy", "--socket-dir="+dir); strings.Contains(out, "proxy.relays=") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(out, "server.type=xpra-proxy") || !strings.Contains(out, fmt.Sprintf("proxy.pid=%d", p.Pid())) {
		t.Fatalf("xpra info :proxy:\n%s", out)
	}
	if out := xpraClient(t, 30*time.Second, "list", "--socket-dirs="+dir); !strings.Contains(out, "LIVE session at :proxy") {
		t.Fatalf("xpra list:\n%s", out)
	}
	out = xpraClient(t, 30*time.Second, "stop", ":proxy", "--socket-dir="+dir)
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("the supervisor still runs after xpra stop:\n%s", out)
	}
}

// TestListIgnoresImpostors: a user's process that calls itself a relay
// worker, with any source it likes, is not listed: the list is the
// supervisor's own registry, not what /proc says.
func TestListIgnoresImpostors(t *testing.T) {
	testenv.Root(t)
	perl := testenv.Command(t, "perl")
	p := proxylab.Start(t, "--tcp-auth=password,value=secret")
	cmd := exec.Command("/bin/bash", "-c", `exec -a "$0" "$1" -e 'sleep 60' -- --relay --peer=203.0.113.66:666 --listener=tcp --transport=ssl`,
		filepath.Join(proxylab.Build(t), "xpra-proxy-worker"), perl)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testenv.Nobody, Gid: testenv.Nobody, Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(200 * time.Millisecond) // exec'd under its false name
	t0 := time.Now()
	conns := listConns(t, p)
	for _, c := range conns {
		if c.Pid == cmd.Process.Pid || strings.Contains(c.Source, "203.0.113.66") {
			t.Fatalf("the impostor is listed: %+v", c)
		}
	}
	t.Logf("xpra-proxy list took %s with an impostor running", time.Since(t0).Round(time.Millisecond))
}

// TestRootControl: root's real `xpra info :proxy-PID` and `xpra stop
// :proxy-PID`, xpra 3.1.3's and 6.5.3's, reach a relay of another user
// without naming any socket directory, as README and the man page say.
// The relay's own socket is in the user's /run/user/UID/xpra, which
// root's clients never search; the supervisor binds a root-only one for
// it in the directory of its own :proxy, here /run/xpra, the default
// (supervisor/rootctl.go), and removes it when the relay ends.
func TestRootControl(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	clients := []realClient{system313()}
	if c6, why := xpra6Client(t); why == "" {
		clients = append(clients, c6)
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("the xpra %s build: %s", xpra6lab.Version, why)
	} else {
		t.Run("xpra "+xpra6lab.Version, func(t *testing.T) { t.Skipf("skipped: %s", why) })
	}
	srv := xpralab.Start(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=root-control"}})
	host, _ := os.Hostname()
	// In root's search path, as the default /run/xpra/HOST-proxy is; a
	// name of its own (":proxy-e2e-PID"), so that no installed service's
	// :proxy is in the way.
	ctl := fmt.Sprintf("/run/xpra/%s-proxy-e2e-%d", host, os.Getpid())
	p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--control-socket="+ctl)
	for _, c := range clients {
		t.Run("xpra "+c.version, func(t *testing.T) {
			before := map[int]bool{}
			for _, cn := range listConns(t, p) {
				before[cn.Pid] = true
			}
			a := startAttach(t, p.URL(srv.User.Username+":secret", srv.Display))
			defer a.stop()
			var relay connlist.Conn
			deadline := time.Now().Add(20 * time.Second)
			for relay.Pid == 0 && time.Now().Before(deadline) {
				for _, cn := range listConns(t, p) {
					if !before[cn.Pid] && cn.Control != "" && cn.ToClient > 0 {
						relay = cn
					}
				}
				time.Sleep(300 * time.Millisecond)
			}
			if relay.Pid == 0 {
				t.Fatalf("no new relay drawing in xpra-proxy list:\n%s", p.Logs())
			}
			rootSock := fmt.Sprintf("/run/xpra/%s-proxy-%d", host, relay.Pid)
			var st syscall.Stat_t
			if err := syscall.Lstat(rootSock, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Uid != 0 || st.Mode&0o777 != 0o600 {
				t.Fatalf("root's socket for the relay %s: %v (mode %o, uid %d)", rootSock, err, st.Mode, st.Uid)
			}
			if strings.HasPrefix(relay.Control, "/run/xpra/") {
				t.Fatalf("the relay's own socket %s is not in the user's directory", relay.Control)
			}
			display := fmt.Sprintf(":proxy-%d", relay.Pid)
			// 3.1.3 as root with its default socket-dirs; the 6.5.3 build's
			// test folder replaces its socket-dirs, so it is given /run/xpra,
			// one of its defaults (10_network.conf) too.
			var extra []string
			if c.version != "3.1.3" {
				extra = []string{"--socket-dirs=/run/xpra"}
			}
			clientRun := func(args ...string) string {
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				defer cancel()
				t0 := time.Now()
				out, _ := c.command(ctx, append(args, extra...)...).CombinedOutput() // the output says what happened
				t.Logf("xpra %s %s as root: %v", c.version, strings.Join(args, " "), time.Since(t0).Round(time.Millisecond))
				return string(out)
			}
			out := clientRun("info", display)
			if !strings.Contains(out, "proxy.user="+srv.User.Username) || !strings.Contains(out, fmt.Sprintf("proxy.pid=%d", relay.Pid)) {
				t.Fatalf("xpra %s info %s as root:\n%s", c.version, display, out)
			}
			// Each client is told the release of its own dialect (6.x: nested
			// info, version 6.5.3; see ARCHITECTURE.md).
			if out := clientRun("version", display); lastLine(out) != c.version {
				t.Errorf("xpra %s version %s: %q, want %q\n%s", c.version, display, lastLine(out), c.version, out)
			}
			out = clientRun("stop", display)
			deadline = time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				if _, ok := byPid(listConns(t, p), relay.Pid); !ok {
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
			if _, ok := byPid(listConns(t, p), relay.Pid); ok {
				t.Fatalf("relay %d still running after xpra %s stop %s:\n%s", relay.Pid, c.version, display, out)
			}
			t.Logf("xpra %s stop %s:\n%s", c.version, display, out)
			waitFor(t, 10*time.Second, "root's socket of the ended relay to go", func() bool {
				_, err := os.Lstat(rootSock)
				return os.IsNotExist(err)
			}, func() string { return p.Logs() })
			waitFor(t, 10*time.Second, "the attached client to be told", a.disconnected, func() string { return a.out.String() })
		})
	}
}
