// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// Penalty is pgdir's.
type Penalty = pgdir.Penalty

// AddFailure records one more failed login of source and tells the other
// proxies. rule combines it with the shared record, with the row locked,
// so two proxies recording a failure of one source at once count both.
func (db *Store) AddFailure(ctx context.Context, source string, rule pgdir.FailureRule) (Penalty, error) {
	out := Penalty{Source: source, Proxy: db.name}
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			// Inserted first so that there is a row to lock.
			if _, err := tx.Exec(ctx, `INSERT INTO xpra_proxy_penalties (source, failures, until) VALUES ($1, 0, 'epoch')
				ON CONFLICT (source) DO NOTHING`, source); err != nil {
				return fmt.Errorf("pgdir: penalty of %s: %w", source, err)
			}
			var failures int
			var until time.Time
			if err := tx.QueryRow(ctx, `SELECT failures, until FROM xpra_proxy_penalties WHERE source = $1 FOR UPDATE`,
				source).Scan(&failures, &until); err != nil {
				return fmt.Errorf("pgdir: penalty of %s: %w", source, err)
			}
			out.Failures, out.Until = rule.Combine(time.Now(), failures, until)
			// As PostgreSQL keeps it: the notification and a later load
			// then carry the same end.
			out.Until = out.Until.Truncate(time.Microsecond)
			if _, err := tx.Exec(ctx, `UPDATE xpra_proxy_penalties SET failures = $2, until = $3 WHERE source = $1`,
				source, out.Failures, out.Until); err != nil {
				return fmt.Errorf("pgdir: penalty of %s: %w", source, err)
			}
			return notify(ctx, tx, out)
		})
	})
	return out, err
}

// ClearPenalty forgets source's record (a login from it succeeded) and
// tells the other proxies.
func (db *Store) ClearPenalty(ctx context.Context, source string) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `DELETE FROM xpra_proxy_penalties WHERE source = $1`, source)
			if err != nil {
				return fmt.Errorf("pgdir: clearing the penalty of %s: %w", source, err)
			}
			if tag.RowsAffected() == 0 {
				return nil // nothing shared: nobody to tell
			}
			return notify(ctx, tx, Penalty{Source: source, Proxy: db.name, Cleared: true})
		})
	})
}

func notify(ctx context.Context, tx pgx.Tx, p Penalty) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("pgdir: penalty notification: %w", err)
	}
	// Sent at commit, so never for a change rolled back.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, pgdir.PenaltyChannel, string(b)); err != nil {
		return fmt.Errorf("pgdir: penalty notification: %w", err)
	}
	return nil
}

// Penalties are the records of the penalties that run now, what a proxy
// loads at start and after missing notifications. Records whose penalty
// ended more than forget ago are deleted on the way: no proxy counts
// their failures any more.
func (db *Store) Penalties(ctx context.Context, forget time.Duration) ([]Penalty, error) {
	var out []Penalty
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		if _, err := p.Exec(ctx, `DELETE FROM xpra_proxy_penalties WHERE until < now() - make_interval(secs => $1)`,
			forget.Seconds()); err != nil {
			return fmt.Errorf("pgdir: forgetting penalties: %w", err)
		}
		rows, err := p.Query(ctx, `SELECT source, failures, until FROM xpra_proxy_penalties WHERE until > now()`)
		if err != nil {
			return fmt.Errorf("pgdir: penalties: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Penalty, error) {
			var p Penalty
			err := r.Scan(&p.Source, &p.Failures, &p.Until)
			return p, err
		})
		if err != nil {
			return fmt.Errorf("pgdir: penalties: %w", err)
		}
		return nil
	})
	return out, err
}

// PublishPenalties merges penalties this proxy holds into the shared
// records (the larger count, the later end: no failure counted twice) and
// announces the records that changed. A proxy calls it after it could not
// write for a while, with its running penalties.
func (db *Store) PublishPenalties(ctx context.Context, ps []Penalty) (changed int, err error) {
	err = db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		changed = 0
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			for _, pen := range ps {
				out := Penalty{Source: pen.Source, Proxy: db.name}
				err := tx.QueryRow(ctx, `INSERT INTO xpra_proxy_penalties AS p (source, failures, until) VALUES ($1, $2, $3)
					ON CONFLICT (source) DO UPDATE SET failures = GREATEST(p.failures, EXCLUDED.failures), until = GREATEST(p.until, EXCLUDED.until)
					WHERE p.failures < EXCLUDED.failures OR p.until < EXCLUDED.until
					RETURNING failures, until`, pen.Source, pen.Failures, pen.Until.Truncate(time.Microsecond)).Scan(&out.Failures, &out.Until)
				if errors.Is(err, pgx.ErrNoRows) {
					continue // the shared record has as much already
				}
				if err != nil {
					return fmt.Errorf("pgdir: publishing the penalty of %s: %w", pen.Source, err)
				}
				if err := notify(ctx, tx, out); err != nil {
					return err
				}
				changed++
			}
			return nil
		})
	})
	return changed, err
}
