// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// The session directory (table xpra_proxy_sessions): which session host
// holds whose session. A front proxy places a user (Place) before its
// relay reaches the host, so that logins arriving together at several
// fronts spread; the host records the sessions it starts (SessionLive)
// and their end (SessionEnded).

// endedKept is how long ended rows stay, for admins reading the table.
const endedKept = 7 * 24 * time.Hour

// placementLock serialises placements across proxies ("xprp" in ASCII):
// two fronts placing at once must see each other's rows.
const placementLock = 0x78707270

// SessionRow is pgdir's.
type SessionRow = pgdir.SessionRow

// Place returns the session host, among hosts (in the admin's order), of
// user: the host of their newest live session there (or fresh placement),
// found = true; else the host with the fewest users with live or fresh
// placed rows (ties: the first in hosts), where a placed row is recorded
// at once.
func (db *Store) Place(ctx context.Context, user string, hosts []string) (host string, found bool, err error) {
	if len(hosts) == 0 {
		return "", false, errors.New("pgdir: no session hosts to place on")
	}
	ttl := pgdir.PlacedTTL.Seconds()
	err = db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, placementLock); err != nil {
				return fmt.Errorf("pgdir: placement lock: %w", err)
			}
			var state string
			err := tx.QueryRow(ctx, `SELECT host, state FROM xpra_proxy_sessions
				WHERE username = $1 AND host = ANY($2)
				  AND (state = 'live' OR (state = 'placed' AND updated > now() - make_interval(secs => $3)))
				ORDER BY state = 'live' DESC, updated DESC LIMIT 1`, user, hosts, ttl).Scan(&host, &state)
			switch {
			case err == nil:
				found = true
				if state == pgdir.StatePlaced {
					_, err = tx.Exec(ctx, `UPDATE xpra_proxy_sessions SET updated = now(), proxy = $3
						WHERE username = $1 AND host = $2 AND display = '' AND state = 'placed'`, user, host, db.name)
					if err != nil {
						return fmt.Errorf("pgdir: renewing a placement: %w", err)
					}
				}
				return nil
			case !errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("pgdir: the user's session host: %w", err)
			}
			rows, err := tx.Query(ctx, `SELECT host, count(DISTINCT username) FROM xpra_proxy_sessions
				WHERE host = ANY($1)
				  AND (state = 'live' OR (state = 'placed' AND updated > now() - make_interval(secs => $2)))
				GROUP BY host`, hosts, ttl)
			if err != nil {
				return fmt.Errorf("pgdir: session hosts' load: %w", err)
			}
			load := map[string]int64{}
			for rows.Next() {
				var h string
				var n int64
				if err := rows.Scan(&h, &n); err != nil {
					rows.Close()
					return fmt.Errorf("pgdir: session hosts' load: %w", err)
				}
				load[h] = n
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("pgdir: session hosts' load: %w", err)
			}
			host = pgdir.LeastLoaded(hosts, load)
			_, err = tx.Exec(ctx, `INSERT INTO xpra_proxy_sessions (username, host, display, state, proxy)
				VALUES ($1, $2, '', 'placed', $3)
				ON CONFLICT (username, host, display) DO UPDATE SET state = 'placed', proxy = EXCLUDED.proxy, updated = now()`,
				user, host, db.name)
			if err != nil {
				return fmt.Errorf("pgdir: recording a placement: %w", err)
			}
			return nil
		})
	})
	return host, found, err
}

// SessionLive records that user's session on display runs on this proxy
// (this proxy's name is the host), replacing a placement of the user here.
func (db *Store) SessionLive(ctx context.Context, user, display string) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO xpra_proxy_sessions (username, host, display, state, proxy)
				VALUES ($1, $2, $3, 'live', $2)
				ON CONFLICT (username, host, display) DO UPDATE SET state = 'live', proxy = EXCLUDED.proxy, updated = now()`,
				user, db.name, display)
			if err != nil {
				return fmt.Errorf("pgdir: recording a live session: %w", err)
			}
			_, err = tx.Exec(ctx, `DELETE FROM xpra_proxy_sessions
				WHERE username = $1 AND host = $2 AND display = '' AND state = 'placed'`, user, db.name)
			if err != nil {
				return fmt.Errorf("pgdir: replacing a placement: %w", err)
			}
			return nil
		})
	})
}

// SessionEnded records the end of user's session on display here, and
// drops this host's rows that ended long ago.
func (db *Store) SessionEnded(ctx context.Context, user, display string) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `UPDATE xpra_proxy_sessions SET state = 'ended', updated = now()
			WHERE username = $1 AND host = $2 AND display = $3`, user, db.name, display)
		if err != nil {
			return fmt.Errorf("pgdir: recording a session's end: %w", err)
		}
		_, err = p.Exec(ctx, `DELETE FROM xpra_proxy_sessions
			WHERE host = $1 AND state = 'ended' AND updated < now() - make_interval(secs => $2)`, db.name, endedKept.Seconds())
		if err != nil {
			return fmt.Errorf("pgdir: dropping old ended sessions: %w", err)
		}
		return nil
	})
}

// Sessions lists the session directory, newest first.
func (db *Store) Sessions(ctx context.Context) ([]SessionRow, error) {
	var out []SessionRow
	err := db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		rows, err := p.Query(ctx, `SELECT username, host, display, state, proxy, updated
			FROM xpra_proxy_sessions ORDER BY updated DESC, username, host, display`)
		if err != nil {
			return fmt.Errorf("pgdir: listing sessions: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (SessionRow, error) {
			var s SessionRow
			err := r.Scan(&s.Username, &s.Host, &s.Display, &s.State, &s.Proxy, &s.Updated)
			return s, err
		})
		if err != nil {
			return fmt.Errorf("pgdir: listing sessions: %w", err)
		}
		return nil
	})
	return out, err
}

// recentGrace spares rows recorded this recently from SessionsRunning: a
// session started while logind's list was being read is not in it.
const recentGrace = time.Minute

// SessionsRunning ends this host's live rows whose session is not among
// running (logind's list, user and display): sessions that ended while no
// supervisor watched, so that they neither route users nor load the host.
func (db *Store) SessionsRunning(ctx context.Context, running []SessionRow) error {
	keys := make([]string, 0, len(running))
	for _, r := range running {
		keys = append(keys, r.Username+"\n"+r.Display)
	}
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `UPDATE xpra_proxy_sessions SET state = 'ended', updated = now()
			WHERE host = $1 AND state = 'live' AND NOT (username || E'\n' || display = ANY($2))
			  AND updated < now() - make_interval(secs => $3)`, db.name, keys, recentGrace.Seconds())
		if err != nil {
			return fmt.Errorf("pgdir: ending sessions gone while unwatched: %w", err)
		}
		return nil
	})
}
