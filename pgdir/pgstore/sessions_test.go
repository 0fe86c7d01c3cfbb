// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"github.com/xpra-proxy/xpra-proxy/pgdir"

	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
)

func TestSessionDirectory(t *testing.T) {
	c := pglab.Start(t)
	open := func(name string) *pgdir.DB {
		db, err := Local(Config{URI: c.URI(), Timeout: 2 * time.Second, Retry: 200 * time.Millisecond, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	frontA, frontB, h1, h2 := open("front-a"), open("front-b"), open("h1"), open("h2")
	hosts := []string{"h1", "h2"}
	ctx := context.Background()
	place := func(db *pgdir.DB, user string) (string, bool) {
		t.Helper()
		h, found, err := db.Place(ctx, user, hosts)
		if err != nil {
			t.Fatalf("Place(%s): %v", user, err)
		}
		return h, found
	}
	raw, err := Open(Config{URI: c.URI(), Name: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	clear := func() {
		err := raw.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
			_, err := p.Exec(ctx, `DELETE FROM xpra_proxy_sessions`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Run("least loaded, ties in config order, found again from another front", func(t *testing.T) {
		clear()
		for _, step := range []struct {
			db    *pgdir.DB
			user  string
			host  string
			found bool
		}{
			{frontA, "alice", "h1", false}, // both empty: the first
			{frontB, "bob", "h2", false},   // h1 has alice
			{frontA, "carol", "h1", false}, // one each: the first
			{frontB, "alice", "h1", true},  // her placement, from the other front
			{frontA, "bob", "h2", true},
		} {
			if h, found := place(step.db, step.user); h != step.host || found != step.found {
				t.Fatalf("%s at %s: host %s found %v, want %s %v", step.user, step.db.Name(), h, found, step.host, step.found)
			}
		}
	})
	t.Run("a live session routes its user; an ended one neither routes nor loads", func(t *testing.T) {
		clear()
		if err := h2.SessionLive(ctx, "dave", ":101"); err != nil {
			t.Fatal(err)
		}
		if h, found := place(frontA, "dave"); h != "h2" || !found {
			t.Fatalf("dave: %s %v, want his live session's host h2", h, found)
		}
		if h, _ := place(frontA, "erin"); h != "h1" {
			t.Fatalf("erin: %s, want h1 (h2 holds dave)", h)
		}
		// The host confirms erin's placement: one live row, no placed one.
		if err := h1.SessionLive(ctx, "erin", ":100"); err != nil {
			t.Fatal(err)
		}
		rows, err := frontA.Sessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var erin []SessionRow
		for _, r := range rows {
			if r.Username == "erin" {
				erin = append(erin, r)
			}
		}
		if len(erin) != 1 || erin[0].State != pgdir.StateLive || erin[0].Host != "h1" || erin[0].Display != ":100" || erin[0].Proxy != "h1" {
			t.Fatalf("erin's rows after the host recorded her session: %+v", erin)
		}
		for _, u := range []string{"dave", "erin"} {
			db, d := h2, ":101"
			if u == "erin" {
				db, d = h1, ":100"
			}
			if err := db.SessionEnded(ctx, u, d); err != nil {
				t.Fatal(err)
			}
		}
		// Nothing live: dave is placed anew, on the first host.
		if h, found := place(frontB, "dave"); h != "h1" || found {
			t.Fatalf("dave after his session ended: %s %v, want a new placement on h1", h, found)
		}
	})
	t.Run("a stale placement neither routes nor loads", func(t *testing.T) {
		clear()
		place(frontA, "frank") // h1
		err := raw.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
			_, err := p.Exec(ctx, `UPDATE xpra_proxy_sessions SET updated = now() - make_interval(secs => $1)`, (pgdir.PlacedTTL + time.Minute).Seconds())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if h, found := place(frontA, "gina"); h != "h1" || found {
			t.Fatalf("gina: %s %v, want h1 (frank's placement is stale)", h, found)
		}
		if h, found := place(frontA, "frank"); h != "h2" || found {
			t.Fatalf("frank: %s %v, want a new placement on h2", h, found)
		}
	})
	t.Run("concurrent logins at two fronts spread", func(t *testing.T) {
		clear()
		const n = 20
		got := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			db := frontA
			if i%2 == 1 {
				db = frontB
			}
			wg.Go(func() {
				h, _, err := db.Place(ctx, fmt.Sprintf("user%02d", i), hosts)
				if err != nil {
					t.Errorf("Place: %v", err)
				}
				got[i] = h
			})
		}
		wg.Wait()
		per := map[string]int{}
		for _, h := range got {
			per[h]++
		}
		if per["h1"] != n/2 || per["h2"] != n/2 {
			t.Fatalf("%d concurrent placements: %v, want %d on each host", n, per, n/2)
		}
	})
	t.Run("sessions gone while unwatched end; running and recent ones stay", func(t *testing.T) {
		clear()
		for _, r := range []struct{ user, display string }{{"old-gone", ":100"}, {"old-running", ":101"}, {"recent", ":102"}} {
			if err := h1.SessionLive(ctx, r.user, r.display); err != nil {
				t.Fatal(err)
			}
		}
		if err := h2.SessionLive(ctx, "other-host", ":100"); err != nil {
			t.Fatal(err)
		}
		err := raw.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
			_, err := p.Exec(ctx, `UPDATE xpra_proxy_sessions SET updated = now() - interval '1 hour' WHERE username LIKE 'old-%' OR host = 'h2'`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := h1.SessionsRunning(ctx, []pgdir.SessionRow{{Username: "old-running", Display: ":101"}}); err != nil {
			t.Fatal(err)
		}
		rows, err := frontA.Sessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"old-gone": pgdir.StateEnded, "old-running": pgdir.StateLive, "recent": pgdir.StateLive, "other-host": pgdir.StateLive}
		for _, r := range rows {
			if want[r.Username] != r.State {
				t.Errorf("%s on %s: %s, want %s", r.Username, r.Host, r.State, want[r.Username])
			}
		}
		if len(rows) != len(want) {
			t.Errorf("rows %+v", rows)
		}
	})
	t.Run("directory down", func(t *testing.T) {
		c.Stop()
		if _, _, err := frontA.Place(ctx, "alice", hosts); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Place with the database stopped: %v", err)
		}
		if err := h1.SessionLive(ctx, "alice", ":100"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("SessionLive with the database stopped: %v", err)
		}
		c.Start()
	})
}
