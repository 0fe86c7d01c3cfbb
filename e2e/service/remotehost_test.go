// SPDX-License-Identifier: GPL-2.0-or-later

//go:build testbed

package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/haproxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// remoteHost: the installed service behind Debian's real HAProxy, which
// sends a PROXY v2 header (send-proxy-v2) and which the service trusts
// (proxy-protocol-from = 127.0.0.1, HAProxy's address toward it). The real
// xpra 3.1.3 client comes from 127.0.0.7: xpra cannot choose its source
// address, so a host route in the testbed's own network namespace
// (loopback only) makes the kernel pick 127.0.0.7 for connections to
// 127.0.0.7, where HAProxy listens. The client logs in with the system
// password (PAM, over TLS end to end: HAProxy passes the bytes on) and
// gets a session started on demand; logind's RemoteHost of that session
// is 127.0.0.7, not HAProxy's 127.0.0.1, and so are xpra-proxy sessions,
// xpra-proxy list for the client attached to it, and the journal's login,
// relay and session records. The service's own settings come back after.
func (b *bed) remoteHost(t *testing.T) {
	haproxy := testenv.Command(t, "haproxy")
	testenv.Command(t, "ip")
	const (
		clientAddr = "127.0.0.7"
		front      = clientAddr + ":14600" // HAProxy's frontend
		path       = "/etc/xpra-proxy/xpra-proxy.toml"
	)
	proxied := config + "proxy-protocol-from = [\"127.0.0.1/32\"]\n"
	if err := os.WriteFile(path, []byte(proxied), 0o640); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Direct clients from 127.0.0.1 have no header: the later steps
		// and the cleanup need the settings without it.
		if err := os.WriteFile(path, []byte(config), 0o640); err != nil {
			t.Error(err)
		}
		if out, err := tryErr("systemctl", "restart", "xpra-proxy.service"); err != nil {
			t.Errorf("restoring the service's settings: %v\n%s", err, out)
		}
	}()
	sh(t, "systemctl", "restart", "xpra-proxy.service")
	since := fmt.Sprintf("--since=@%d", time.Now().Add(-time.Second).Unix())

	sh(t, "ip", "route", "add", "local", clientAddr+"/32", "dev", "lo", "src", clientAddr, "table", "local")
	defer func() {
		if out, err := tryErr("ip", "route", "del", "local", clientAddr+"/32", "dev", "lo", "table", "local"); err != nil {
			t.Errorf("removing the route to %s: %v\n%s", clientAddr, err, out)
		}
	}()
	if got := sourceToward(t, clientAddr); got != clientAddr {
		t.Fatalf("a connection to %s comes from %s, want %s: the route did not take", clientAddr, got, clientAddr)
	}
	// Relays of earlier steps' clients (direct, from 127.0.0.1) stay and
	// log; the check of the journal below leaves their lines out.
	var earlier []connlist.Conn
	if out := sh(t, "xpra-proxy", "list", "--json"); json.Unmarshal([]byte(out), &earlier) != nil {
		t.Fatalf("xpra-proxy list --json:\n%s", out)
	}
	haLog := haproxylab.Start(t, haproxy, front, nil, "127.0.0.1:14500")

	before := map[string]bool{}
	for _, s := range b.proxySessions(t) {
		before[s.ID] = true
	}
	// A session on demand, over TLS with PAM, through HAProxy.
	url := "ssl://" + testUser + ":" + testPassword + "@" + front + "/"
	cmd := exec.Command("xpra", "start", url, "--attach=no", "--ssl-server-verify-mode=none", "--start=xterm")
	cmd.Env, cmd.Dir = clientEnv(), "/"
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "requesting new session") {
		t.Fatalf("xpra start through HAProxy: %v\n%s\nhaproxy:\n%s\n%s\nsessions:\n%s\n%s", err, out, haLog, journal("xpra-proxy.service"),
			try("journalctl", "--no-pager", "-o", "cat", "-u", "xpra-proxy-session-*", since),
			try("sh", "-c", fmt.Sprintf("ls -la /tmp/.X*-lock /tmp/.X11-unix /run/user/%d/xpra; tail -n 40 /run/user/%d/xpra/*.log", b.uid, b.uid)))
	}
	var s logind.Session
	for _, x := range b.proxySessions(t) {
		if !before[x.ID] {
			if s.ID != "" {
				t.Fatalf("more than one new proxy session: %+v", b.proxySessions(t))
			}
			s = x
		}
	}
	if s.ID == "" {
		t.Fatalf("no new proxy session: %+v", b.proxySessions(t))
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := b.lc.Terminate(ctx, s.ID); err != nil {
			t.Errorf("terminating session %s: %v", s.ID, err)
		}
	}()
	// HAProxy's own log names the client it saw: the route worked for xpra too.
	if !strings.Contains(haLog.String(), clientAddr+":") {
		t.Errorf("HAProxy did not log a client from %s:\n%s", clientAddr, haLog)
	}

	// logind, over D-Bus and as loginctl shows it.
	if s.RemoteHost != clientAddr {
		t.Errorf("logind's session %s: RemoteHost %q, want the client's %s (HAProxy is 127.0.0.1)", s.ID, s.RemoteHost, clientAddr)
	}
	show := loginctlShow(t, s.ID)
	for k, want := range map[string]string{"Name": testUser, "Service": "xpra-proxy", "Remote": "yes", "RemoteHost": clientAddr, "Display": s.Display} {
		if show[k] != want {
			t.Errorf("loginctl show-session %s: %s=%q, want %q", s.ID, k, show[k], want)
		}
	}
	t.Logf("session %s on %s started through HAProxy: loginctl RemoteHost=%s", s.ID, s.Display, show["RemoteHost"])

	// xpra-proxy sessions.
	var listed []struct {
		ID         string `json:"id"`
		RemoteHost string `json:"remote_host"`
	}
	if out := sh(t, "xpra-proxy", "sessions", "--json"); json.Unmarshal([]byte(out), &listed) != nil {
		t.Errorf("xpra-proxy sessions --json:\n%s", out)
	}
	found := false
	for _, x := range listed {
		if x.ID == s.ID {
			found = true
			if x.RemoteHost != clientAddr {
				t.Errorf("xpra-proxy sessions: %s has RemoteHost %q, want %s", s.ID, x.RemoteHost, clientAddr)
			}
		}
	}
	if !found {
		t.Errorf("xpra-proxy sessions does not list %s: %+v", s.ID, listed)
	}

	// The real client attached to it through HAProxy, in xpra-proxy list.
	n := strings.TrimPrefix(s.Display, ":")
	c := startClient(t, url+n, "--ssl-server-verify-mode=none")
	defer c.stop()
	var conn connlist.Conn
	waitFor(t, 30*time.Second, "the relay to "+s.Display+" in xpra-proxy list", func() bool {
		var conns []connlist.Conn
		if json.Unmarshal([]byte(try("xpra-proxy", "list", "--json")), &conns) != nil {
			return false
		}
		for _, x := range conns {
			if strings.HasSuffix(x.Target, "-"+n) || strings.Contains(x.Target, "/"+n+"/") {
				conn = x
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(conn.Source, clientAddr+":") || conn.User != testUser || conn.Transport != "ssl" {
		t.Errorf("xpra-proxy list: %+v, want the source %s (not HAProxy's 127.0.0.1), user %s over ssl", conn, clientAddr, testUser)
	}
	t.Logf("xpra-proxy list: relay %d of %s from %s over %s", conn.Pid, conn.User, conn.Source, conn.Transport)

	// The journal's records since the restart name the client, never
	// HAProxy, as a source, peer or remote host.
	logs := try("journalctl", "--no-pager", "-o", "cat", "-u", "xpra-proxy.service", since)
	q := regexp.QuoteMeta
	for what, pattern := range map[string]string{
		// peer is the claimed client, via HAProxy, which sent the header.
		"the PAM login": `msg=authenticated peer=` + q(clientAddr) + `:\d+ via=\S*127\.0\.0\.1\S* .*user=` + q(testUser) +
			` source=` + q(clientAddr) + ` module=pam `,
		"the session's start":      `msg="session started" .*session=` + q(s.ID) + ` .*remote_host=` + q(clientAddr) + `\b`,
		"the attached relay":       fmt.Sprintf(`msg="relay worker started" worker=%d .*source=%s `, conn.Pid, q(clientAddr)),
		"the relay to the session": `msg=relaying .*display=` + q(s.Display) + ` `,
	} {
		if !regexp.MustCompile(pattern).MatchString(logs) {
			t.Errorf("the journal has no record of %s (/%s/)", what, pattern)
		}
	}
	var haproxyNamed []string
lines:
	for _, line := range regexp.MustCompile(`(?m)^.*\b(source|peer|remote_host)=\[?(::ffff:)?127\.0\.0\.1\b.*$`).FindAllString(logs, -1) {
		for _, e := range earlier {
			if strings.Contains(line, fmt.Sprintf("worker=%d ", e.Pid)) || strings.Contains(line, fmt.Sprintf("pid=%d ", e.Pid)) {
				continue lines
			}
		}
		haproxyNamed = append(haproxyNamed, line)
	}
	if haproxyNamed != nil {
		t.Errorf("the journal names HAProxy's address as a client:\n%s", strings.Join(haproxyNamed, "\n"))
	}
	if t.Failed() {
		t.Logf("journal since the restart:\n%s\nhaproxy:\n%s", logs, haLog)
	}
}

// sourceToward is the address the kernel picks for a TCP connection to
// addr (a listener of its own there).
func sourceToward(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.TCPAddr).IP.String()
}
