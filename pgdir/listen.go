// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"context"
	"time"
)

// Listen hands each notification's payload on channel to note until ctx
// ends. The helper LISTENs on a connection of its own; this long-polls it
// (OpListen). Each time the helper's LISTEN connection is new (at start,
// after a loss, after a helper restart) or notes were dropped, ready runs
// first, so that the caller loads what it missed while not listening. A
// loss is logged once, not at each try.
func (db *DB) Listen(ctx context.Context, channel string, ready func(context.Context) error, note func(payload string)) {
	var epoch string
	var after uint64
	listening, lost := false, false
	down := func(err any) {
		epoch, listening = "", false
		if !lost {
			db.log.Warn("not listening to the shared directory: what other proxies share is not heard until it comes back",
				"channel", channel, "err", err, "retry", db.cfg.Retry)
			lost = true
		}
	}
	pause := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(db.cfg.Retry):
			return true
		}
	}
	for ctx.Err() == nil {
		var r ListenReply
		err := db.callWait(ctx, OpListen, ListenArgs{Channel: channel, Epoch: epoch, After: after, Listening: listening},
			&r, ListenWait+db.cfg.Timeout+margin)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			down(err)
			if !pause() {
				return
			}
			continue
		}
		if !r.Listening {
			// The helper waited for its connection: ask again at once.
			down(r.Err)
			continue
		}
		if r.Epoch != epoch || r.Gap {
			// Listening before loading: what changes meanwhile is heard.
			if err := ready(ctx); err != nil {
				down("loading: " + err.Error())
				if !pause() {
					return
				}
				continue
			}
			epoch = r.Epoch
			if lost {
				db.log.Info("listening to the shared directory again", "channel", channel)
				lost = false
			}
		}
		listening = true
		for _, n := range r.Notes {
			note(n)
		}
		after = r.Seq
	}
}
