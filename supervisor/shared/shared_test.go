// SPDX-License-Identifier: GPL-2.0-or-later

package shared

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/pgdir/pgstore"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// proxy is one proxy's share of the directory: its pool, limiter and
// shared penalties and relays, running until the test ends (or stop).
type proxy struct {
	db   *pgdir.DB
	raw  *pgstore.Store
	lim  *limits.Limiter
	pen  *Penalties
	rel  *Relays
	live map[int]string
	stop func()
}

func startProxy(t *testing.T, c *pglab.Cluster, name string, live map[int]string) *proxy {
	t.Helper()
	return startProxyCfg(t, c, name, live, limits.Defaults())
}

func startProxyCfg(t *testing.T, c *pglab.Cluster, name string, live map[int]string, cfg limits.Config) *proxy {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("proxy", name)
	db, err := pgstore.Local(pgdir.Config{URI: c.URI(), Timeout: time.Second, Retry: 200 * time.Millisecond, Name: name, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limits.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The tables as they are, for the test's own queries.
	raw, err := pgstore.Open(pgdir.Config{URI: c.URI(), Name: name + "-raw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	p := &proxy{db: db, raw: raw, lim: lim, live: live}
	p.pen = NewPenalties(db, lim, func() time.Duration { return cfg.PenaltyForget }, log)
	p.rel = NewRelays(db, func() map[int]string { return p.live }, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { p.pen.Run(ctx); done <- struct{}{} }()
	go func() { p.rel.Run(ctx); done <- struct{}{} }()
	go func() { db.Watch(ctx); done <- struct{}{} }()
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range 3 {
			<-done
		}
		db.Close()
	}
	t.Cleanup(p.stop)
	return p
}

// fail is a failed login at p, as the supervisor records it.
func (p *proxy) fail(src netip.Addr) {
	until, n := p.lim.Failed(src)
	p.pen.Failed(src, n, until)
}

// waitFor polls cond until it holds; the bound is a hang guard, far
// above what it takes, not a measure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func penalized(l *limits.Limiter, src netip.Addr) bool { return l.Check(src) != nil }

// row is the shared record of src's block.
func row(t *testing.T, db *pgstore.Store, block string) (failures int, until time.Time) {
	t.Helper()
	err := db.Do(context.Background(), func(ctx context.Context, p *pgxpool.Pool) error {
		return p.QueryRow(ctx, `SELECT failures, until FROM xpra_proxy_penalties WHERE source = $1`, block).Scan(&failures, &until)
	})
	if err != nil {
		t.Fatalf("the row of %s: %v", block, err)
	}
	return failures, until
}

var (
	guesser = netip.MustParseAddr("192.0.2.7")
	other   = netip.MustParseAddr("192.0.2.8")
)

func TestPenaltiesShared(t *testing.T) {
	pglab.Require(t)
	c := pglab.Start(t)
	a, b := startProxy(t, c, "a", nil), startProxy(t, c, "b", nil)
	waitFor(t, "b listening", func() bool { return b.pen.db.Status().Up })

	// Failures through a only penalise the source at b too, not another.
	a.fail(guesser)
	waitFor(t, "b hears a's penalty", func() bool { return penalized(b.lim, guesser) })
	if penalized(b.lim, other) {
		t.Fatal("another source penalised at b")
	}
	if n := b.pen.Heard(); n != 1 {
		t.Fatalf("b heard %d penalties, want 1", n)
	}
	if f, _ := row(t, a.raw, "192.0.2.7/32"); f != 1 {
		t.Fatalf("shared failures %d, want 1", f)
	}
	a.fail(guesser)
	a.fail(guesser)
	waitFor(t, "the shared count at 3", func() bool { f, _ := row(t, a.raw, "192.0.2.7/32"); return f == 3 })
	// b heard them all: its next failure is the 4th, with the 4th's penalty.
	waitFor(t, "b's count at 3", func() bool {
		var r *limits.Refusal
		return errors.As(b.lim.Check(guesser), &r) && time.Until(r.Until) > 3*time.Second
	})
	until, n := b.lim.Failed(guesser)
	if n != 4 {
		t.Fatalf("b's failure after a's three: count %d, want 4", n)
	}
	b.pen.Failed(guesser, n, until)
	waitFor(t, "the shared count at 4", func() bool { f, _ := row(t, a.raw, "192.0.2.7/32"); return f == 4 })

	// A proxy that starts later loads the running penalty.
	late := startProxy(t, c, "late", nil)
	waitFor(t, "a late proxy loads it", func() bool { return penalized(late.lim, guesser) })
	if penalized(late.lim, other) {
		t.Fatal("another source penalised at the late proxy")
	}

	// A success through b clears the source everywhere.
	b.lim.Succeeded(guesser)
	b.pen.Succeeded(guesser)
	waitFor(t, "a hears the success", func() bool { return !penalized(a.lim, guesser) })
	waitFor(t, "the late proxy hears the success", func() bool { return !penalized(late.lim, guesser) })
}

// A proxy that missed the failures (not listening) counts on from the
// shared count, and its penalty is lengthened to the shared one's.
func TestPenaltiesCombine(t *testing.T) {
	pglab.Require(t)
	c := pglab.Start(t)
	a := startProxy(t, c, "a", nil)
	for range 3 {
		a.fail(guesser)
	}
	waitFor(t, "the shared count at 3", func() bool {
		var f int
		err := a.raw.Do(context.Background(), func(ctx context.Context, p *pgxpool.Pool) error {
			return p.QueryRow(ctx, `SELECT COALESCE(max(failures), 0) FROM xpra_proxy_penalties`).Scan(&f)
		})
		return err == nil && f == 3
	})
	// deaf shares nothing it hears: its limiter knows none of a's failures.
	db, err := pgstore.Local(pgdir.Config{URI: c.URI(), Name: "deaf"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lim, err := limits.New(limits.Defaults(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	deaf := NewPenalties(db, lim, func() time.Duration { return time.Hour }, slog.Default())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { deaf.w.run(ctx, nil); close(done) }()
	defer func() { cancel(); <-done }()
	until, n := lim.Failed(guesser)
	if n != 1 || time.Until(until) > time.Second {
		t.Fatalf("deaf's own first failure: %d, until %v", n, until)
	}
	deaf.Failed(guesser, n, until)
	waitFor(t, "the shared count at 4", func() bool { f, _ := row(t, a.raw, "192.0.2.7/32"); return f == 4 })
	// The 4th failure's penalty: 1s doubled three times.
	var r *limits.Refusal
	if !errors.As(lim.Check(guesser), &r) || time.Until(r.Until) <= 4*time.Second {
		t.Fatalf("deaf's penalty after the shared 4th failure: %v", lim.Check(guesser))
	}
	if _, n := lim.Failed(guesser); n != 5 {
		t.Fatalf("deaf's next failure: count %d, want 5", n)
	}
}

// While the database is down each proxy has its own penalties; after it
// is back, listening resumes without a restart.
func TestPenaltiesOutage(t *testing.T) {
	pglab.Require(t)
	c := pglab.Start(t)
	// Penalties that outlast the outage: 30s, then 60s.
	cfg := limits.Defaults()
	cfg.PenaltyMin, cfg.PenaltyMax = 30*time.Second, 2*time.Minute
	a, b := startProxyCfg(t, c, "a", nil, cfg), startProxyCfg(t, c, "b", nil, cfg)
	a.fail(other)
	waitFor(t, "b hears a before the outage", func() bool { return penalized(b.lim, other) })

	c.Stop()
	start := time.Now()
	a.fail(guesser) // never waits on the database: written by the writer
	if !penalized(a.lim, guesser) {
		t.Fatal("a's own penalty missing during the outage")
	}
	if time.Since(start) > time.Second {
		t.Fatalf("a failed login waited %s on a dead database", time.Since(start))
	}
	waitFor(t, "a's write finds the database down", func() bool { return a.pen.w.failing.Load() })
	if penalized(b.lim, guesser) {
		t.Fatal("b penalised a source it could not have heard of")
	}

	c.Start()
	// a publishes the penalty it could not write once it listens again.
	waitFor(t, "b hears of the outage's penalty", func() bool { return penalized(b.lim, guesser) })
	if f, _ := row(t, b.raw, "192.0.2.7/32"); f != 1 {
		t.Fatalf("the outage's penalty published with %d failures, want 1", f)
	}
	// And a failure after it is written and heard as usual.
	waitFor(t, "a sees the database back", func() bool { return a.db.Status().Up })
	a.fail(guesser)
	waitFor(t, "b hears a's second failure", func() bool {
		var r *limits.Refusal
		return errors.As(b.lim.Check(guesser), &r) && time.Until(r.Until) > 40*time.Second
	})
	waitFor(t, "a's writes work again", func() bool { return !a.pen.w.failing.Load() })
	if f, _ := row(t, b.raw, "192.0.2.7/32"); f != 2 {
		t.Fatalf("after the outage's failure and one more: %d shared failures, want 2", f)
	}
}

func TestRelaysShared(t *testing.T) {
	pglab.Require(t)
	c := pglab.Start(t)
	ctx := context.Background()
	// Rows an earlier run of a left: replaced by its live relays at start.
	seed, err := pgstore.Local(pgdir.Config{URI: c.URI(), Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for pid, user := range map[int]string{90: "alice", 91: "alice", 92: "bob"} {
		if err := seed.AddRelay(ctx, pid, user); err != nil {
			t.Fatal(err)
		}
	}
	seed.Close()
	a := startProxy(t, c, "a", map[int]string{5: "alice"})
	b := startProxy(t, c, "b", nil)
	waitFor(t, "a's stale rows replaced", func() bool { return b.rel.Others(ctx, "alice") == 1 && b.rel.Others(ctx, "bob") == 0 })
	if n := a.rel.Others(ctx, "alice"); n != 0 {
		t.Fatalf("a counts %d of its own relays as others'", n)
	}

	tests := []struct {
		name      string
		do        func()
		user      string
		wantAtB   int
		wantOther int // carol's, untouched
	}{
		{"a relay starts at a", func() { a.live[6] = "alice"; a.rel.Started(6, "alice") }, "alice", 2, 0},
		{"one ends", func() { delete(a.live, 5); a.rel.Ended(5) }, "alice", 1, 0},
		{"bob's at a", func() { a.live[7] = "bob"; a.rel.Started(7, "bob") }, "bob", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.do()
			waitFor(t, tt.name, func() bool { return b.rel.Others(ctx, tt.user) == tt.wantAtB })
			if n := b.rel.Others(ctx, "carol"); n != tt.wantOther {
				t.Fatalf("carol: %d", n)
			}
		})
	}

	// Down: no count from the directory, without waiting on it; what a
	// did meanwhile is recorded once it is back.
	c.Stop()
	waitFor(t, "b finds the database down", func() bool { b.rel.Others(ctx, "alice"); return !b.db.Status().Up })
	start := time.Now()
	if n := b.rel.Others(ctx, "alice"); n != 0 {
		t.Fatalf("counted %d with the database down", n)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("counting waited %s on a dead database", time.Since(start))
	}
	a.live[8] = "alice"
	a.rel.Started(8, "alice")
	waitFor(t, "a's write finds the database down", func() bool { return a.rel.stale.Load() })
	c.Start()
	waitFor(t, "a's relays recorded after the outage", func() bool { return b.rel.Others(ctx, "alice") == 2 })
}
