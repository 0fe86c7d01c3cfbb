// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listen holds a connection of its own (not the pool's: LISTEN ties a
// connection up for good) LISTENing on channel until ctx ends, and hands
// each notification's payload to note. After each
// (re)connection it calls ready first, so that the caller loads what it
// missed while not listening. A lost connection is tried again every
// Retry; the loss is logged once, not at each try.
func (db *DB) Listen(ctx context.Context, channel string, ready func(context.Context) error, note func(payload string)) {
	lost := false
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, channel, func() error {
			if err := ready(ctx); err != nil {
				return err
			}
			if lost {
				db.log.Info("listening to the shared directory again", "channel", channel)
				lost = false
			}
			return nil
		}, note)
		if ctx.Err() != nil {
			return
		}
		if !lost {
			db.log.Warn("not listening to the shared directory: what other proxies share is not heard until it comes back",
				"channel", channel, "err", err, "retry", db.retry)
			lost = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(db.retry):
		}
	}
}

func (db *DB) listenOnce(ctx context.Context, channel string, ready func() error, note func(string)) error {
	cc := db.pool.Config().ConnConfig.Copy()
	cctx, cancel := context.WithTimeout(ctx, db.timeout)
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		cancel()
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(cctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	cancel()
	if err != nil {
		return fmt.Errorf("LISTEN: %w", err)
	}
	// Listening before loading: what changes meanwhile is heard, not lost.
	if err := ready(); err != nil {
		return fmt.Errorf("loading: %w", err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("waiting: %w", err)
		}
		note(n.Payload)
	}
}
