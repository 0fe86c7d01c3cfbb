// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AddRelay records a live relay of this proxy (worker pid, for user).
func (db *Store) AddRelay(ctx context.Context, pid int, user string) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		if _, err := p.Exec(ctx, `INSERT INTO xpra_proxy_relays (proxy, pid, username) VALUES ($1, $2, $3)
			ON CONFLICT (proxy, pid) DO UPDATE SET username = EXCLUDED.username, started = now()`, db.name, pid, user); err != nil {
			return fmt.Errorf("pgdir: recording relay %d: %w", pid, err)
		}
		return nil
	})
}

// RemoveRelay deletes the record of this proxy's relay pid.
func (db *Store) RemoveRelay(ctx context.Context, pid int) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		if _, err := p.Exec(ctx, `DELETE FROM xpra_proxy_relays WHERE proxy = $1 AND pid = $2`, db.name, pid); err != nil {
			return fmt.Errorf("pgdir: removing relay %d: %w", pid, err)
		}
		return nil
	})
}

// OtherRelays counts user's live relays through the other proxies (this
// one counts its own in memory).
func (db *Store) OtherRelays(ctx context.Context, user string) (int, error) {
	var n int
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		if err := p.QueryRow(ctx, `SELECT count(*) FROM xpra_proxy_relays WHERE username = $1 AND proxy <> $2`,
			user, db.name).Scan(&n); err != nil {
			return fmt.Errorf("pgdir: counting the relays of %s: %w", user, err)
		}
		return nil
	})
	return n, err
}

// SyncRelays replaces this proxy's records with live (pid: user): at
// start-up (the rows an earlier run left are stale) and after an outage
// (starts and ends went unrecorded).
func (db *Store) SyncRelays(ctx context.Context, live map[int]string) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM xpra_proxy_relays WHERE proxy = $1`, db.name); err != nil {
				return fmt.Errorf("pgdir: clearing this proxy's relays: %w", err)
			}
			for pid, user := range live {
				if _, err := tx.Exec(ctx, `INSERT INTO xpra_proxy_relays (proxy, pid, username) VALUES ($1, $2, $3)`,
					db.name, pid, user); err != nil {
					return fmt.Errorf("pgdir: recording relay %d: %w", pid, err)
				}
			}
			return nil
		})
	})
}
