// SPDX-License-Identifier: GPL-2.0-or-later

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/internal/proxylab"
	"github.com/xpra-proxy/xpra-proxy/internal/xpralab"
	"github.com/xpra-proxy/xpra-proxy/probe"
)

// directoryURIFile writes c's URI to a root-only file, as
// directory-uri-file wants it.
func directoryURIFile(t *testing.T, c *pglab.Cluster) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "directory.uri")
	if err := os.WriteFile(f, []byte(c.URI()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSharedLimits: two proxies (A and B) share a throwaway PostgreSQL.
// Wrong passwords from 127.0.0.3 through A only get 127.0.0.3 refused at
// B too, while 127.0.0.2 logs in through both; max-relays-per-user=1
// holds across them: a user with a relay through A is refused one
// through B, with the usual words, until the first ends.
func TestSharedLimits(t *testing.T) {
	xpralab.Require(t)
	pglab.Require(t)
	c := pglab.Start(t)
	s := xpralab.Start(t, xpralab.Options{})
	user := s.User.Username
	uri := directoryURIFile(t, c)
	start := func(name string) *proxylab.Proxy {
		p := proxylab.Start(t, "--tcp-auth=password,value=secret", "--directory-uri-file="+uri, "--proxy-name="+name,
			"--directory-retry=1s", "--per-source-penalty=60s", "--per-source-penalty-max=60s", "--max-relays-per-user=1")
		waitLogged(t, p, `msg="penalties loaded from the shared directory"`, name+" listening to the directory")
		waitLogged(t, p, `msg="this proxy's relays recorded in the shared directory"`, name+" recording its relays")
		return p
	}
	a, b := start("proxy-a"), start("proxy-b")
	// Each request runs a relay worker, counted for max-relays-per-user
	// (1) across both proxies until its row is gone: the next request
	// waits for that.
	ask := func(p *proxylab.Proxy, pass string, from *net.TCPAddr) error {
		t.Helper()
		waitNoRelays(t, c)
		_, err := probe.Run(context.Background(), probe.Options{URL: p.URL(user+":"+pass, s.Display), Request: "info",
			LocalAddr: from, Timeout: 30 * time.Second})
		return err
	}

	t.Run("wrong passwords through A penalise the source at B", func(t *testing.T) {
		if err := ask(a, "wrong", guessSource); refusal(err) != "authentication failed" {
			t.Fatalf("a wrong password through A: %q (%v)", refusal(err), err)
		}
		waitLogged(t, a, `msg="source penalized" .*source=127\.0\.0\.3 `, "A's penalty")
		waitLogged(t, b, `msg="source penalized by another proxy" .*source=127\.0\.0\.3/32 proxy=proxy-a `, "B hearing A's penalty")
		// The right password from the guessing address: refused at B,
		// which never saw a failure from it.
		err := ask(b, "secret", guessSource)
		if err == nil {
			t.Fatal("127.0.0.3 served at B while penalised through A")
		}
		if r := refusal(err); r != "" && !strings.HasPrefix(r, "too many failed logins from your address") {
			t.Fatalf("127.0.0.3 at B: %q, want the penalty's refusal", r)
		}
		waitLogged(t, b, `msg="connection refused" peer=127\.0\.0\.3:\d+ .*penalty until`, "B's refusal of 127.0.0.3")
		// Another address is untouched, on both.
		for _, p := range []*proxylab.Proxy{a, b} {
			if err := ask(p, "secret", floodSource); err != nil {
				t.Fatalf("127.0.0.2 while 127.0.0.3 is penalised: %v", err)
			}
		}
		if strings.Contains(b.Logs(), `msg="source penalized" `) {
			t.Errorf("B penalised a source itself, with no failure through it:\n%s", b.Logs())
		}
	})

	t.Run("max-relays-per-user holds across A and B", func(t *testing.T) {
		open := func(p *proxylab.Proxy) (net.Conn, error) {
			_, nc, err := probe.Open(context.Background(), probe.Options{URL: p.URL(user+":secret", s.Display),
				Request: probe.Connect, LocalAddr: legitSource, Timeout: 30 * time.Second})
			return nc, err
		}
		// The info requests above ran relay workers too: the test's
		// relays are the only ones once those ended.
		for _, p := range []*proxylab.Proxy{a, b} {
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				l := p.Logs()
				if strings.Count(l, `msg="relay worker started"`) == strings.Count(l, `msg="relay worker ended"`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("relay workers of the info requests still running:\n%s", l)
				}
			}
		}
		waitNoRelays(t, c)
		held, err := open(a)
		if err != nil {
			t.Fatalf("the first relay, through A: %v", err)
		}
		defer func() {
			if held != nil {
				held.Close()
			}
		}()
		_, err = open(b)
		want := fmt.Sprintf("too many connections %s has 1 connections through the proxy, the most allowed (max-relays-per-user)", user)
		if got := refusal(err); got != want {
			t.Fatalf("a second relay, through B: %q (%v), want %q", got, err, want)
		}
		waitLogged(t, b, `msg="relay refused" .*max-relays-per-user`, "B's refusal of the second relay")
		// The first ends: B admits one.
		held.Close()
		held = nil
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			nc, err := open(b)
			if err == nil {
				held = nc
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no relay through B after A's ended: %v\n%s", err, b.Logs())
			}
		}
	})
}

// waitNoRelays waits until the directory records no live relay.
func waitNoRelays(t *testing.T, c *pglab.Cluster) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URI())
	if err != nil {
		t.Fatalf("connecting to the directory: %v", err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM xpra_proxy_relays`).Scan(&n); err != nil {
			t.Fatalf("counting the directory's relays: %v", err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the directory still records %d relays", n)
		}
	}
}
