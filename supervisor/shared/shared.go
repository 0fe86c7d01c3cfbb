// SPDX-License-Identifier: GPL-2.0-or-later

// Package shared shares a proxy's penalties and relay counts with the
// other proxies of one directory (pgdir, issue 16), so that password
// guessing spread over N proxies is limited as on one and a user's
// max-relays-per-user holds across them.
//
// The database is never on the accept path: admission stays local and
// in memory (package limits). A failed login is penalised locally at
// once, then written to xpra_proxy_penalties and announced with NOTIFY
// by a writer goroutine; every proxy LISTENs and imposes what it hears on
// its own limiter, and loads the running penalties when it (re)connects.
// While the database is down a proxy has its own penalties and relay
// counts only: writes are tried once, not queued for later (a bounded
// queue; the database's own bound on each call), and the loss is logged
// once per outage; once a write works again, the running penalties and
// live relays it could not record are written whole, once.
package shared

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// queueLen bounds the writes waiting for the database: a burst of failed
// logins beyond it while the database is slow is penalised locally only.
const queueLen = 256

// writer runs one proxy's writes to the directory in order, each once.
type writer struct {
	db      *pgdir.DB
	log     *slog.Logger
	what    string // in the log: "penalties", "relays"
	jobs    chan func(context.Context) error
	failing atomic.Bool // logged once until a write works again
	dropped atomic.Uint64
}

func newWriter(db *pgdir.DB, log *slog.Logger, what string) *writer {
	return &writer{db: db, log: log, what: what, jobs: make(chan func(context.Context) error, queueLen)}
}

// post queues job; false if the queue is full (the job is dropped).
func (w *writer) post(job func(context.Context) error) bool {
	select {
	case w.jobs <- job:
		return true
	default:
		w.dropped.Add(1)
		w.failed(errors.New("too many writes waiting for the database"))
		return false
	}
}

// run does the queued jobs until ctx ends; after is called after each.
func (w *writer) run(ctx context.Context, after func(ok bool)) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-w.jobs:
			err := job(ctx)
			if err != nil && ctx.Err() == nil {
				w.failed(err)
			} else if err == nil && w.failing.CompareAndSwap(true, false) {
				w.log.Info("shared directory writes work again", "shared", w.what)
			}
			if after != nil {
				after(err == nil)
			}
		}
	}
}

func (w *writer) failed(err error) {
	if w.failing.CompareAndSwap(false, true) {
		w.log.Warn("shared directory write failed: this proxy's limits are local only until it works again",
			"shared", w.what, "err", err)
	}
}
