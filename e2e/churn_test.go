// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// holdRelay connects through the proxy as a client that stays, and
// returns the connection and its relay worker as `xpra-proxy list` shows
// it (found by the client's own address), once its control socket is up.
func holdRelay(t *testing.T, p *proxylab.Proxy, url string) (net.Conn, connlist.Conn) {
	t.Helper()
	_, nc, err := probe.Open(context.Background(), probe.Options{URL: url, Request: probe.Connect, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("connecting through the proxy: %v", err)
	}
	src := nc.LocalAddr().String()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range listConns(t, p) {
			if c.Source == src && c.Control != "" {
				return nc, c
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	nc.Close()
	t.Fatalf("no relay with a control socket listed for %s", src)
	return nil, connlist.Conn{}
}

// waitGone waits for pid to exit and says how long it took.
func waitGone(t *testing.T, pid int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("relay worker %d still running %v later", pid, within)
	return 0
}

func noFile(t *testing.T, path, how string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s: control socket %s left behind (%v)", how, path, err)
	}
}

// TestControlSocketExitPaths: a relay removes its control socket however
// it ends (its client leaves, SIGTERM, SIGINT, SIGHUP, an error, xpra
// stop, its server goes away); a SIGKILLed relay's socket is removed by the next relay of the
// user; the real `xpra list` then shows none of ours as UNKNOWN.
func TestControlSocketExitPaths(t *testing.T) {
	xpralab.Require(t)
	srv := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=churn-a"}})
	p := proxylab.Start(t, "--tcp-auth=password,value=secret")
	url := p.URL(srv.User.Username+":secret", srv.Display)
	var dir string

	for _, tc := range []struct {
		name string
		end  func(nc net.Conn, pid int)
	}{
		{"client leaves", func(nc net.Conn, _ int) { nc.Close() }},
		{"SIGTERM", func(_ net.Conn, pid int) { syscall.Kill(pid, syscall.SIGTERM) }},
		{"SIGINT", func(_ net.Conn, pid int) { syscall.Kill(pid, syscall.SIGINT) }},
		{"SIGHUP", func(_ net.Conn, pid int) { syscall.Kill(pid, syscall.SIGHUP) }},
		// An error: the client's stream is not xpra any more.
		{"client sends garbage", func(nc net.Conn, _ int) { nc.Write([]byte("this is not an xpra packet header\n")) }},
		{"xpra stop", func(_ net.Conn, pid int) {
			xpraClient(t, 30*time.Second, "stop", fmt.Sprintf(":proxy-%d", pid), fmt.Sprintf("--socket-dir=/run/user/%d/xpra", srv.UID))
		}},
	} {
		nc, c := holdRelay(t, p, url)
		dir = filepath.Dir(c.Control)
		if !strings.HasPrefix(dir, "/run/user/") {
			t.Errorf("control socket %s is not in the runtime directory", c.Control)
		}
		tc.end(nc, c.Pid)
		took := waitGone(t, c.Pid, 15*time.Second)
		t.Logf("%s: relay %d exited %v later", tc.name, c.Pid, took.Round(time.Millisecond))
		if (tc.name == "client leaves" || tc.name == "client sends garbage") && took > 5*time.Second {
			t.Errorf("the relay outlived its client by %v", took)
		}
		noFile(t, c.Control, tc.name)
		nc.Close()
	}

	// SIGKILL: nothing in the relay runs; the next relay cleans up.
	nc, killed := holdRelay(t, p, url)
	p.ExpectLog(fmt.Sprintf(`msg="relay worker ended" worker=%d .*status="signal: killed"`, killed.Pid))
	syscall.Kill(killed.Pid, syscall.SIGKILL)
	waitGone(t, killed.Pid, 15*time.Second)
	nc.Close()
	if _, err := os.Lstat(killed.Control); err != nil {
		t.Fatalf("SIGKILL: no stale socket to clean up (%v): the test proves nothing", err)
	}
	nc, next := holdRelay(t, p, url)
	noFile(t, killed.Control, "SIGKILL, then another relay")
	if !strings.Contains(p.Logs(), "removed control sockets of dead relay workers") {
		t.Errorf("the sweep was not logged")
	}

	// The server goes away under a relay.
	srv.Stop(t)
	waitGone(t, next.Pid, 30*time.Second)
	noFile(t, next.Control, "server gone")
	nc.Close()

	// Only our sockets (:proxy-PID) are this test's to judge: the user's
	// socket directory is shared with every other test's xpra servers, and
	// one killed elsewhere leaves an UNKNOWN display socket of its own.
	out := xpraClient(t, 30*time.Second, "list", "--socket-dirs="+dir)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "UNKNOWN") && strings.Contains(line, "proxy") {
			t.Errorf("xpra list shows a socket of ours as UNKNOWN: %s\n%s", line, out)
		}
	}
	t.Logf("xpra list:\n%s", out)
}

// fakeServer listens on loopback and does what serve says with each
// connection; it returns the tcp:// URL.
func fakeServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return "tcp://" + l.Addr().String() + "/"
}

// TestServerFailuresNamed: a server that never answers the hello, one
// that closes, one that refuses and one that speaks something else are
// each reported to the client (our probe, and the real xpra 3.1.3 client
// for the silent one) and to the log in the same words.
func TestServerFailuresNamed(t *testing.T) {
	xpralab.Require(t)
	u, uid, gid := xpralab.TestUser(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	silent := fakeServer(t, func(c net.Conn) { defer c.Close(); <-hold })
	closer := fakeServer(t, func(c net.Conn) { c.Read(make([]byte, 64)); c.Close() })
	other := fakeServer(t, func(c net.Conn) {
		defer c.Close()
		c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
		time.Sleep(time.Second)
	})
	refuser := fmt.Sprintf("tcp://127.0.0.1:%d/", xpralab.FreePort(t))
	dir := xpralab.Dir(t)
	multi := filepath.Join(dir, "users.txt")
	rows := "# user|password|uid|gid|displays\n"
	for name, url := range map[string]string{"silent": silent, "closer": closer, "other": other, "refuser": refuser} {
		rows += fmt.Sprintf("%s|pw|%d|%d|%s\n", name, uid, gid, url)
	}
	if err := os.WriteFile(multi, []byte(rows), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = u
	p := proxylab.Start(t, "--tcp-auth=multifile,filename="+multi, "--server-hello-timeout=3s")
	for _, tc := range []struct{ user, want string }{
		{"silent", "connection error the server of the session did not answer the proxy's hello within 3s"},
		{"closer", "connection error the server of the session closed the connection before its hello"},
		{"refuser", "connection error the server of the session refused the connection"},
		{"other", "version error the server of the session does not speak xpra or speaks another version"},
	} {
		start := time.Now()
		_, err := run(t, probe.Options{URL: p.URL(tc.user+":pw", ""), Request: probe.Connect})
		got := refusal(err)
		t.Logf("%s: %q after %v", tc.user, got, time.Since(start).Round(time.Millisecond))
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: the client was told %q (%v), want %q", tc.user, got, err, tc.want)
		}
		detail := strings.TrimPrefix(strings.TrimPrefix(tc.want, "connection error "), "version error ")
		// The worker's stderr reaches the buffer through a pipe: give it
		// a moment.
		for end := time.Now().Add(5 * time.Second); !strings.Contains(p.Logs(), detail) && time.Now().Before(end); {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(p.Logs(), detail) {
			t.Errorf("%s: the log does not say %q", tc.user, detail)
		}
	}
	// The real client: xpra detach is relayed to the server, like attach.
	out := xpraClient(t, 60*time.Second, "detach", p.URL("silent:pw", ""))
	if !strings.Contains(out, "did not answer the proxy's hello within 3s") {
		t.Errorf("xpra detach through the proxy to a silent server:\n%s", out)
	}
	t.Logf("xpra detach said:\n%s", out)
}
