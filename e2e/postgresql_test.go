// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/pamauth/pamlab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// TestPostgreSQL: two proxies share a throwaway PostgreSQL as their
// directory of users (the postgresql module, users added with the real
// `xpra-proxy auth postgresql`), with a sqlite fallback. Real xpra 3.1.3
// clients log in through either proxy. Then the database stops: the live
// relay keeps relaying, a user of the fallback logs in, a user only in
// PostgreSQL is refused with the usual words and at once, and the metrics
// and :proxy's info show the outage. The database comes back: without a
// restart of either proxy, the PostgreSQL user logs in again and the
// metrics say up.
func TestPostgreSQL(t *testing.T) {
	xpralab.Require(t)
	pglab.Require(t)
	testenv.Command(t, "xvfb-run")
	c := pglab.Start(t)
	// Two sessions of one system user: one for the directory's user,
	// one for the fallback's (a second client of a session would take it
	// over from the first).
	servers := xpralab.StartAll(t, xpralab.Options{App: "xclock -update 1", Args: []string{"--session-name=pg-dir"}},
		xpralab.Options{Args: []string{"--session-name=pg-fallback"}})
	sys := servers[0].User.Username
	bin := proxylab.Build(t)
	dir := t.TempDir()
	uriFile := filepath.Join(dir, "directory.uri")
	if err := os.WriteFile(uriFile, []byte(c.URI()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The admin command runs the directory helper as its own user.
	proxylab.EnsurePreauthUser(t)
	admin := func(module, file string, args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, "xpra-proxy"), append([]string{"auth", module, file}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("xpra-proxy auth %s %v: %v\n%s", module, args, err, out)
		}
		return string(out)
	}
	admin("postgresql", uriFile, "create")
	admin("postgresql", uriFile, "add", "pguser", "pg-secret", sys, sys, servers[0].Display)
	if out := admin("postgresql", uriFile, "list"); !strings.Contains(out, "pguser|***|"+sys+"|") || strings.Contains(out, "pg-secret") {
		t.Fatalf("xpra-proxy auth postgresql list:\n%s", out)
	}
	fallback := filepath.Join(dir, "fallback.sdb")
	admin("sqlite", fallback, "create")
	admin("sqlite", fallback, "add", "localuser", "local-secret", sys, sys, servers[1].Display)

	mports := []int{xpralab.FreePort(t), xpralab.FreePort(t)}
	var proxies []*proxylab.Proxy
	for i, name := range []string{"pg-a", "pg-b"} {
		proxies = append(proxies, proxylab.Start(t,
			`--tcp-auth=postgresql,fallback="sqlite,filename=`+fallback+`"`,
			"--directory-uri-file="+uriFile, "--proxy-name="+name,
			"--directory-timeout=2s", "--directory-retry=2s",
			// Refusals on purpose below: no penalties, no per-user cap.
			"--per-source-penalty=0", "--max-relays-per-user=0",
			fmt.Sprintf("--metrics-bind=127.0.0.1:%d", mports[i])))
	}
	// A third proxy without a fallback, penalising each failure for a
	// minute: an outage refuses its logins, and penalises no one.
	strict := proxylab.Start(t, "--tcp-auth=postgresql", "--directory-uri-file="+uriFile, "--proxy-name=pg-c",
		"--directory-timeout=2s", "--directory-retry=2s", "--per-source-penalty=60s", "--per-source-penalty-max=60s",
		"--max-relays-per-user=0")
	metricsURL := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", mports[i]) }
	served := func(out string) bool { return strings.Contains(out, "server.type=xpra-proxy") }
	info := func(p *proxylab.Proxy, userinfo, display string) (string, time.Duration) {
		t.Helper()
		start := time.Now()
		out := xpraClient(t, 60*time.Second, "info", p.URL(userinfo, display))
		return out, time.Since(start)
	}
	for i := range proxies {
		if m := missing(scrape(t, metricsURL(i)), []string{"xpra_proxy_directory_fallback_logins_total 0"}); m != nil {
			t.Fatalf("proxy %d's first scrape lacks %q", i, m)
		}
	}

	t.Run("directory users log in through either proxy", func(t *testing.T) {
		for i, p := range proxies {
			out, took := info(p, "pguser:pg-secret", servers[0].Display)
			if !served(out) {
				t.Fatalf("xpra info through proxy %d as the directory's user:\n%s", i, out)
			}
			t.Logf("proxy %d: a directory login with the database up took %v (the whole client run)", i, took)
			if out, _ := info(p, "pguser:wrong", servers[0].Display); !strings.Contains(out, "authentication failed") {
				t.Fatalf("a wrong password through proxy %d:\n%s", i, out)
			}
			// The fallback decides nothing while the database answers.
			if out, _ := info(p, "localuser:local-secret", servers[1].Display); !strings.Contains(out, "authentication failed") {
				t.Fatalf("the fallback's user with the database up, through proxy %d:\n%s", i, out)
			}
			waitLogged(t, p, `msg=authenticated .*user=pguser .*module=postgresql`, fmt.Sprintf("proxy %d's login record", i))
			if m := missing(scrape(t, metricsURL(i)), []string{"xpra_proxy_directory_up 1", "xpra_proxy_directory_fallback_logins_total 0"}); m != nil {
				t.Fatalf("proxy %d's scrape lacks %q", i, m)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	// Attached for the rest of the test (startAttach stops it at the end
	// of the t it is given).
	live := startAttach(t, proxies[0].URL("pguser:pg-secret", servers[0].Display))
	relayed := func() (int64, bool) {
		conns := listConns(t, proxies[0])
		if len(conns) != 1 || conns[0].User != sys {
			return 0, false
		}
		return conns[0].ToClient, true
	}
	before, ok := relayed()
	if !ok {
		t.Fatalf("proxy A's relays: %+v, want the attached client's", listConns(t, proxies[0]))
	}

	c.Stop()
	t.Run("database down", func(t *testing.T) {
		// The first login after the stop finds the outage; the next ones
		// within directory-retry fail over at once. Times are the whole
		// xpra client run, Python's start included.
		out, first := info(proxies[1], "pguser:pg-secret", servers[0].Display)
		if !strings.Contains(out, "authentication failed") || served(out) {
			t.Fatalf("the directory's user through proxy B with the database down:\n%s", out)
		}
		t.Logf("first login after the stop (proxy B, finds the outage): refused after %v", first)
		for i, p := range proxies {
			if out, _ := info(p, "localuser:local-secret", servers[1].Display); !served(out) {
				t.Fatalf("the fallback's user through proxy %d with the database down:\n%s", i, out)
			}
			waitLogged(t, p, `the shared directory is unreachable: the fallback module decides this login" user=localuser fallback=sqlite`, fmt.Sprintf("proxy %d's fallback warning", i))
		}
		out, noFallback := info(strict, "pguser:pg-secret", servers[0].Display)
		if !strings.Contains(out, "authentication failed") || served(out) {
			t.Fatalf("the directory's user through the proxy without a fallback, database down:\n%s", out)
		}
		t.Logf("first login after the stop without a fallback: refused after %v", noFallback)
		waitLogged(t, strict, `msg="authentication failed" .*user=pguser .*module=postgresql reason=".*database unavailable`, "the refusal for the outage")
		out, next := info(proxies[0], "pguser:pg-secret", servers[0].Display)
		if !strings.Contains(out, "authentication failed") || served(out) {
			t.Fatalf("the directory's user through proxy A with the database down:\n%s", out)
		}
		t.Logf("a login within directory-retry (proxy A): refused after %v", next)
		// A hang guard, not a timing claim: the bound is directory-timeout
		// (2 s) on the proxy; a hung login would be the client's 60 s.
		for _, d := range []time.Duration{first, noFallback, next} {
			if d > 30*time.Second {
				t.Errorf("a login waited %v on the dead database", d)
			}
		}
		// The live relay still relays: the client is attached, and the
		// bytes it got (xclock draws every second) keep growing.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			now, ok := relayed()
			if !ok || live.disconnected() {
				t.Fatalf("the relay ended with the database: %+v\n%s", listConns(t, proxies[0]), live.out)
			}
			if now > before {
				t.Logf("the live relay sent %d more bytes to its client with the database down", now-before)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the live relay sent nothing more in 20 s with the database down (%d bytes)", now)
			}
		}
		for i, p := range proxies {
			body := scrape(t, metricsURL(i))
			if m := missing(body, []string{"xpra_proxy_directory_up 0"}); m != nil {
				t.Errorf("proxy %d's scrape lacks %q", i, m)
			}
			if !regexp.MustCompile(`(?m)^xpra_proxy_directory_fallback_logins_total [1-9]`).MatchString(body) {
				t.Errorf("proxy %d counts no fallback login:\n%s", i, body)
			}
			if out := xpraClient(t, 30*time.Second, "info", ":proxy", "--socket-dir="+filepath.Dir(p.Control)); !strings.Contains(out, "proxy.directory.up=0") {
				t.Errorf("xpra info :proxy of proxy %d with the database down:\n%s", i, out)
			}
		}
	})

	c.Start()
	t.Run("database back, no restart", func(t *testing.T) {
		// Each proxy's watch probes the database every directory-retry.
		for i := range proxies {
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
				if missing(scrape(t, metricsURL(i)), []string{"xpra_proxy_directory_up 1"}) == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("proxy %d does not see the database back within 30 s", i)
				}
			}
			waitLogged(t, proxies[i], `the shared directory \(PostgreSQL\) is reachable again`, fmt.Sprintf("proxy %d's recovery", i))
		}
		for i, p := range proxies {
			if out, _ := info(p, "pguser:pg-secret", servers[0].Display); !served(out) {
				t.Fatalf("the directory's user through proxy %d after the database came back:\n%s", i, out)
			}
		}
		if live.disconnected() {
			t.Fatalf("the attached client lost its session:\n%s", live.out)
		}
		// Not penalised for the outage: served at once, as before it.
		if out, _ := info(strict, "pguser:pg-secret", servers[0].Display); !served(out) {
			t.Fatalf("the directory's user through the proxy without a fallback after the outage:\n%s", out)
		}
		if strings.Contains(strict.Logs(), `msg="source penalized"`) {
			t.Errorf("a source was penalised for the database's outage:\n%s", strict.Logs())
		}
	})
}

// TestPostgreSQLPAMFallback: with pam as the fallback, the module needs
// what pam needs, database up or down: the password itself (xpra's xor
// answer), so only over TLS. Up, the directory's user logs in over TLS
// with the password compared to its row, plain TCP is refused with pam's
// reason, and a system user the directory lacks is refused (the fallback
// is not asked). Down, that system user logs in through PAM.
func TestPostgreSQLPAMFallback(t *testing.T) {
	xpralab.Require(t)
	pglab.Require(t)
	helper := pamlab.Helper(t)
	service := pamlab.Service(t, pamlab.CommonAuth+pamlab.CommonAccount)
	c := pglab.Start(t)
	srv := xpralab.Start(t, xpralab.Options{Args: []string{"--session-name=pg-pam"}})
	sys := srv.User.Username
	// xpra 3.1.3 does not unquote URL passwords: plain ones.
	const sysPassword, pgPassword = "Pam-fallback-1", "Pg-row-1"
	systemPassword(t, sys, sysPassword)
	dir := t.TempDir()
	uriFile := filepath.Join(dir, "directory.uri")
	if err := os.WriteFile(uriFile, []byte(c.URI()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := proxylab.Build(t)
	if out, err := exec.Command(filepath.Join(bin, "xpra-proxy"), "auth", "postgresql", uriFile,
		"add", "pguser", pgPassword, sys, sys, srv.Display).CombinedOutput(); err != nil {
		t.Fatalf("xpra-proxy auth postgresql add: %v\n%s", err, out)
	}
	cert, key := testCert(t, dir)
	p := proxylab.Start(t, `--tcp-auth=postgresql,fallback="pam,service=`+service+`,helper=`+helper+`"`,
		"--ssl-cert="+cert, "--ssl-key="+key, "--directory-uri-file="+uriFile,
		"--directory-timeout=2s", "--directory-retry=2s", "--per-source-penalty=0")
	tls := func(userinfo string) string {
		return xpraClient(t, 40*time.Second, "info", "ssl://"+userinfo+"@"+p.Addr()+"/"+strings.TrimPrefix(srv.Display, ":"),
			"--ssl-server-verify-mode=none")
	}
	served := func(out string) bool { return strings.Contains(out, "server.type=xpra-proxy") }

	t.Run("database up", func(t *testing.T) {
		_, err := run(t, probe.Options{URL: p.URL("pguser:"+pgPassword, srv.Display), Request: "info"})
		if r := refusal(err); !strings.HasPrefix(r, "authentication failed") || !strings.Contains(r, "encrypted connection") {
			t.Fatalf("plain TCP: want pam's refusal that asks for encryption, got %v", err)
		}
		if out := tls("pguser:" + pgPassword); !served(out) {
			t.Fatalf("the directory's user over TLS:\n%s", out)
		}
		if out := tls("pguser:wrong"); served(out) || !strings.Contains(out, "authentication failed") {
			t.Fatalf("the directory's user with a wrong password over TLS:\n%s", out)
		}
		if out := tls(sys + ":" + sysPassword); served(out) || !strings.Contains(out, "authentication failed") {
			t.Fatalf("a system user the directory lacks, database up:\n%s", out)
		}
	})
	c.Stop()
	t.Run("database down", func(t *testing.T) {
		if out := tls(sys + ":" + sysPassword); !served(out) {
			t.Fatalf("the system user through the pam fallback:\n%s", out)
		}
		waitLogged(t, p, `fallback module decides this login" user=`+regexp.QuoteMeta(sys)+` fallback=pam`, "the fallback's warning")
		if out := tls("pguser:" + pgPassword); served(out) || !strings.Contains(out, "authentication failed") {
			t.Fatalf("the directory's user with the database down:\n%s", out)
		}
	})
}
