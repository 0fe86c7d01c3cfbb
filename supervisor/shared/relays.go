// SPDX-License-Identifier: GPL-2.0-or-later

package shared

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// Relays records this proxy's live relays in the directory and counts
// a user's relays through the other proxies, for max-relays-per-user
// across them. While the database is down, each proxy counts its own
// relays only (so a user may have up to the limit on each); the records
// are made whole again (SyncRelays) at start-up and when it comes back.
type Relays struct {
	db   *pgdir.DB
	log  *slog.Logger
	live func() map[int]string // this proxy's relays now: pid to user
	w    *writer
	// stale: a write was lost (outage, full queue); the next chance
	// replaces this proxy's rows with live().
	stale    atomic.Bool
	counting atomic.Bool // counting failed: logged once until it works
}

// NewRelays shares the relays live reports through db.
func NewRelays(db *pgdir.DB, live func() map[int]string, log *slog.Logger) *Relays {
	log = log.With("shared", "relays")
	r := &Relays{db: db, log: log, live: live, w: newWriter(db, log, "relays")}
	r.stale.Store(true) // an earlier run's rows, and adopted relays
	return r
}

// Started records relay pid of user. It does not wait for the database.
func (r *Relays) Started(pid int, user string) {
	if !r.w.post(func(ctx context.Context) error { return r.db.AddRelay(ctx, pid, user) }) {
		r.stale.Store(true)
	}
}

// Ended removes relay pid's record. It does not wait for the database.
func (r *Relays) Ended(pid int) {
	if !r.w.post(func(ctx context.Context) error { return r.db.RemoveRelay(ctx, pid) }) {
		r.stale.Store(true)
	}
}

// Others counts user's relays through the other proxies, bounded by the
// directory's timeout; 0 while it is unreachable (logged once).
func (r *Relays) Others(ctx context.Context, user string) int {
	n, err := r.db.OtherRelays(ctx, user)
	if err != nil {
		if r.counting.CompareAndSwap(false, true) {
			r.log.Warn("relays through other proxies not counted: max-relays-per-user holds per proxy until the directory answers", "err", err)
		}
		return 0
	}
	if r.counting.CompareAndSwap(true, false) {
		r.log.Info("relays through other proxies counted again")
	}
	return n
}

// Run writes until ctx ends, and replaces this proxy's rows whenever some
// went unwritten and the database is there.
func (r *Relays) Run(ctx context.Context) {
	go func() {
		// The database's return does not go through the queue: wake it.
		for {
			ch := r.db.Changed()
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			if r.db.Status().Up {
				r.w.post(func(context.Context) error { return nil })
			}
		}
	}()
	r.sync(ctx)
	r.w.run(ctx, func(ok bool) {
		if !ok {
			r.stale.Store(true)
		}
		if len(r.w.jobs) == 0 && r.db.Status().Up {
			r.sync(ctx)
		}
	})
}

func (r *Relays) sync(ctx context.Context) {
	if !r.stale.Swap(false) {
		return
	}
	live := r.live()
	if err := r.db.SyncRelays(ctx, live); err != nil {
		r.stale.Store(true)
		r.w.failed(err)
		return
	}
	r.log.Info("this proxy's relays recorded in the shared directory", "relays", len(live))
}
