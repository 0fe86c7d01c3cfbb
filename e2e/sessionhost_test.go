// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/pgdir/pgstore"
)

// TestSessionHosts: two front proxies sharing a real PostgreSQL (a
// throwaway cluster) relay a real xpra 3.1.3 client to a session host, a
// third proxy whose login module is session-host, where the user's real
// xpra server runs (found by its socket: sessions started on demand need
// logind, which the systemd testbed has). What it shows:
//   - xpra attach through front A reaches the session host's session:
//     placed there by load, the placement recorded in the directory;
//   - xpra attach through front B reaches it too, found in the directory;
//   - the session host refuses a front with another key, and a front
//     outside its from=, and the client is told "authentication failed".
func TestSessionHosts(t *testing.T) {
	xpralab.Require(t)
	testenv.Command(t, "xvfb-run")
	db := pglab.Start(t)
	srv := xpralab.Start(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=sh-e2e"}})
	user := srv.User.Username

	dir := t.TempDir()
	secret := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := secret("key", "k3y-shared-by-fronts-and-hosts-0123456789")
	otherKey := secret("other-key", "an0ther-key-the-host-does-not-know-0123")
	uri := secret("uri", db.URI())

	// Session hosts take many logins from few addresses, the fronts': no
	// per-source limits or penalties there (etc/session-host.toml).
	hostArgs := func(name, from string) []string {
		return []string{"--tcp-auth=session-host,key-file=" + key + ",from=" + from, "--proxy-name=" + name,
			"--per-source-max-startups=0", "--per-source-rate=0", "--per-source-penalty=0"}
	}
	sh1 := proxylab.Start(t, hostArgs("sh1", "127.0.0.0/8")...)
	sh2 := proxylab.Start(t, hostArgs("sh2", "192.0.2.0/24")...) // no front is there
	front := func(name, keyFile string, extra ...string) *proxylab.Proxy {
		return proxylab.Start(t, append([]string{"--tcp-auth=password,value=secret", "--per-source-penalty=0",
			"--proxy-name=" + name, "--session-host-key-file=" + keyFile}, extra...)...)
	}
	frontA := front("front-a", key, "--directory-uri-file="+uri, "--session-hosts=sh1=tcp://"+sh1.Addr())
	frontB := front("front-b", key, "--directory-uri-file="+uri, "--session-hosts=sh1=tcp://"+sh1.Addr())
	wrongKey := front("front-wrong-key", otherKey, "--session-hosts=sh1=tcp://"+sh1.Addr())
	outside := front("front-outside", key, "--session-hosts=sh2=tcp://"+sh2.Addr())

	shDisplay := regexp.QuoteMeta(strings.TrimPrefix(srv.Display, ":"))
	for i, step := range []struct {
		front *proxylab.Proxy
		how   string
	}{{frontA, "placed"}, {frontB, "found"}} {
		t.Run("xpra attach through "+[]string{"front A", "front B"}[i], func(t *testing.T) {
			a := startAttach(t, step.front.URL(user+":secret", ""))
			waitLogged(t, step.front, `msg="routed to a session host" .*user=`+regexp.QuoteMeta(user)+` session_host=sh1 how=`+step.how,
				"the front's routing ("+step.how+")")
			// The session host authenticated the front's relay as the
			// user, by token, and relayed it to the user's own session.
			waitCount(t, sh1, `msg=authenticated .*user=`+regexp.QuoteMeta(user)+` .*module=session-host`, i+1, "the session host's login")
			waitCount(t, sh1, `msg="waiting for the server's hello" .*`+shDisplay, i+1, "the session host's relay to the session")
			a.stop()
			waitCount(t, sh1, `msg="relay worker ended"`, i+1, "the session host's relay's end")
		})
	}
	t.Run("the directory holds the placement", func(t *testing.T) {
		d, err := pgstore.Local(pgdir.Config{URI: db.URI(), Name: "test"})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		rows, err := d.Sessions(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Username != user || rows[0].Host != "sh1" || rows[0].State != pgdir.StatePlaced {
			t.Fatalf("session directory: %+v, want one placement of %s on sh1", rows, user)
		}
	})
	for _, tc := range []struct {
		name   string
		front  *proxylab.Proxy
		host   *proxylab.Proxy
		logged string
	}{
		{"a front with another key", wrongKey, sh1, `not this host's token for this user`},
		{"a front outside from=", outside, sh2, `127\.0\.0\.1 is not a front proxy \(from=\)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// detach is relayed to the session (the proxy answers info
			// itself): it needs the session host's login.
			out := xpraClient(t, 60*time.Second, "detach", tc.front.URL(user+":secret", ""))
			if !strings.Contains(out, "authentication failed") {
				t.Fatalf("xpra detach through %s:\n%s", tc.name, out)
			}
			waitLogged(t, tc.host, `msg="authentication failed" .*`+tc.logged, "the session host's refusal")
			waitLogged(t, tc.front, `msg="the server refused the connection" .*reason="authentication failed"`, "the front's relay told of it")
		})
	}
}

// waitCount waits until p has logged n lines matching pattern.
func waitCount(t *testing.T, p *proxylab.Proxy, pattern string, n int, what string) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	for deadline := time.Now().Add(20 * time.Second); len(re.FindAllString(p.Logs(), -1)) < n; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not logged %d times within 20 s: %s (/%s/)\n%s", n, what, pattern, p.Logs())
		}
	}
}
