// SPDX-License-Identifier: GPL-2.0-or-later

package placement

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/pgdir/pgstore"
	"github.com/xpra-proxy/xpra-proxy/protocol/xpraurl"
	"github.com/xpra-proxy/xpra-proxy/sessionhost"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestParseHosts(t *testing.T) {
	tests := []struct {
		in   []string
		want string // names and addresses, or the error's text
	}{
		{[]string{"h1=tcp://10.0.0.1:14500", " h2 = tcp://10.0.0.2:15000/ "}, "h1 10.0.0.1:14500, h2 10.0.0.2:15000"},
		{[]string{"h1=tcp://[fd00::1]:14500"}, "h1 fd00::1:14500"},
		{[]string{"tcp://10.0.0.1:14500"}, "want NAME="},
		{[]string{"=tcp://10.0.0.1:14500"}, "want NAME="},
		{[]string{"h1=tcp://10.0.0.1:1", "h1=tcp://10.0.0.2:1"}, "given twice"},
		{[]string{"h1=ssh://10.0.0.1:22"}, "nothing more"},
		{[]string{"h1=tcp://u:p@10.0.0.1:14500"}, "nothing more"},
		{[]string{"h1=tcp://10.0.0.1:14500/100"}, "nothing more"},
		{[]string{"h1=:100"}, "nothing more"},
		{[]string{"h1=bogus://x"}, "unknown scheme"},
	}
	for _, tt := range tests {
		hosts, err := ParseHosts(tt.in)
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var parts []string
			for _, h := range hosts {
				parts = append(parts, fmt.Sprintf("%s %s:%d", h.Name, h.Addr.Host, h.Addr.Port))
			}
			got = strings.Join(parts, ", ")
		}
		if !strings.Contains(got, tt.want) {
			t.Errorf("ParseHosts(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func hosts(t *testing.T) []Host {
	h, err := ParseHosts([]string{"h1=tcp://127.0.0.1:20001", "h2=tcp://127.0.0.1:20002", "h3=tcp://127.0.0.1:20003"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRouteTarget: the relay's target and password for a routed login.
func TestRouteTarget(t *testing.T) {
	r, err := New(hosts(t), key, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return now }
	rt := r.Route(context.Background(), "alice")
	tgt, err := xpraurl.Parse(rt.Display, xpraurl.V3)
	if err != nil {
		t.Fatalf("the route's display %q: %v", rt.Display, err)
	}
	if tgt.Scheme != "tcp" || tgt.Username != "alice" || tgt.HasPassword || tgt.Host != "127.0.0.1" || tgt.Port != rt.Host.Addr.Port || tgt.Display != "" {
		t.Fatalf("the route's display %q parses to %+v", rt.Display, tgt)
	}
	if want := sessionhost.Token(key, rt.Host.Name, "alice", sessionhost.Minute(now)); rt.Password != want || rt.How != "hashed" {
		t.Fatalf("route %+v, want the token %s, hashed", rt, want)
	}
	// Hashed: the same user, the same host, every time and from every front.
	r2, _ := New(hosts(t), key, nil, slog.Default())
	spread := map[string]bool{}
	for i := range 50 {
		u := fmt.Sprintf("user%d", i)
		a, b := r.Route(context.Background(), u), r2.Route(context.Background(), u)
		if a.Host.Name != b.Host.Name {
			t.Fatalf("%s hashed to %s and %s", u, a.Host.Name, b.Host.Name)
		}
		spread[a.Host.Name] = true
	}
	if len(spread) != 3 {
		t.Fatalf("50 users hashed onto %v, want all three hosts", spread)
	}
	if _, err := New(hosts(t), []byte("short"), nil, slog.Default()); err == nil {
		t.Fatal("a short key was accepted")
	}
	if _, err := New(nil, key, nil, slog.Default()); err == nil {
		t.Fatal("no hosts was accepted")
	}
}

// TestRouteDirectory: routing against a real throwaway PostgreSQL, two
// fronts sharing it.
func TestRouteDirectory(t *testing.T) {
	c := pglab.Start(t)
	open := func(name string) *pgdir.DB {
		db, err := pgstore.Local(pgdir.Config{URI: c.URI(), Timeout: 2 * time.Second, Retry: time.Hour, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	hs := hosts(t)[:2]
	dbA, dbB, h2 := open("front-a"), open("front-b"), open("h2")
	a, err := New(hs, key, dbA, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(hs, key, dbB, slog.Default())
	ctx := context.Background()
	for _, step := range []struct {
		r          *Router
		user, host string
		how        string
	}{
		{a, "alice", "h1", "placed"}, // empty: the first host
		{b, "bob", "h2", "placed"},   // h1 has alice
		{b, "alice", "h1", "found"},  // through the other front: her placement
		{a, "carol", "h1", "placed"}, // a tie: the first
	} {
		if rt := step.r.Route(ctx, step.user); rt.Host.Name != step.host || rt.How != step.how {
			t.Fatalf("%s: %s %s, want %s %s", step.user, rt.Host.Name, rt.How, step.host, step.how)
		}
	}
	// dave's session runs on h2 (h2 recorded it): found there, though
	// h2 is the more loaded.
	if err := h2.SessionLive(ctx, "dave", ":100"); err != nil {
		t.Fatal(err)
	}
	if rt := a.Route(ctx, "dave"); rt.Host.Name != "h2" || rt.How != "found" {
		t.Fatalf("dave: %+v, want found on h2", rt)
	}
	// Many logins at once through both fronts spread evenly.
	var mu sync.Mutex
	per := map[string]int{}
	var wg sync.WaitGroup
	for i := range 10 {
		r := a
		if i%2 == 1 {
			r = b
		}
		wg.Go(func() {
			rt := r.Route(ctx, fmt.Sprintf("many%d", i))
			mu.Lock()
			per[rt.Host.Name]++
			mu.Unlock()
		})
	}
	wg.Wait()
	// Before: h1 alice, carol; h2 bob, dave. Ten more: five each.
	if per["h1"] != 5 || per["h2"] != 5 {
		t.Fatalf("10 concurrent logins: %v, want 5 on each host", per)
	}
	// The directory down: hashed, and each call fails fast (Retry).
	c.Stop()
	for _, u := range []string{"alice", "bob", "erin"} {
		rt := a.Route(ctx, u)
		if want := hs[hashIndex(u, 2)].Name; rt.How != "hashed" || rt.Host.Name != want {
			t.Fatalf("%s with the directory down: %+v, want hashed to %s", u, rt, want)
		}
	}
}
