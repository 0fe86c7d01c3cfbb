// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// The schema, one statement list per version. Proxies of several versions
// may share a database: a proxy applies the versions it knows and the
// database has not seen, under an advisory lock so that two proxies
// starting together do not both apply one, and refuses a database newer
// than itself (it would not know what the new columns mean). docs/
// scale-out.md has the same schema for admins who create it by hand.
var schema = [][]string{
	1: {
		// xpra's users table, as its sqlite module has it (every
		// column text), so rows can be copied from a sqlite database.
		`CREATE TABLE IF NOT EXISTS users (
			username TEXT PRIMARY KEY,
			password TEXT NOT NULL,
			uid TEXT NOT NULL DEFAULT '',
			gid TEXT NOT NULL DEFAULT '',
			displays TEXT NOT NULL DEFAULT '',
			env_options TEXT NOT NULL DEFAULT '',
			session_options TEXT NOT NULL DEFAULT '')`,
		// The session directory: one row per session a proxy started or
		// found, or placed on a session host (display '' until the host
		// records it). state: placed, live, ended.
		`CREATE TABLE IF NOT EXISTS xpra_proxy_sessions (
			username TEXT NOT NULL,
			host TEXT NOT NULL,
			display TEXT NOT NULL DEFAULT '',
			state TEXT NOT NULL,
			proxy TEXT NOT NULL,
			updated TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (username, host, display))`,
		// Penalties shared by the proxies: the source block (a prefix,
		// as the limiter keys them), its failures and until when it is
		// refused.
		`CREATE TABLE IF NOT EXISTS xpra_proxy_penalties (
			source TEXT PRIMARY KEY,
			failures INTEGER NOT NULL,
			until TIMESTAMPTZ NOT NULL)`,
		// Live relays, per proxy, for max-relays-per-user across them.
		`CREATE TABLE IF NOT EXISTS xpra_proxy_relays (
			proxy TEXT NOT NULL,
			pid INTEGER NOT NULL,
			username TEXT NOT NULL,
			started TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (proxy, pid))`,
		`CREATE INDEX IF NOT EXISTS xpra_proxy_relays_user ON xpra_proxy_relays (username)`,
	},
	2: {
		// As in xpra's sqlite module, a user may have several rows, one
		// per password, each selecting its own session row.
		`ALTER TABLE users DROP CONSTRAINT IF EXISTS users_pkey`,
		`ALTER TABLE users ADD PRIMARY KEY (username, password)`,
	},
}

// SchemaVersion is the newest schema this proxy knows (pgdir's, which
// TestSchemaVersion keeps in step).
const SchemaVersion = pgdir.SchemaVersion

// migrationLock is the advisory lock's key ("xpra" in ASCII).
const migrationLock = 0x78707261

func (db *Store) migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgdir: connecting: %w", err)
	}
	defer conn.Release()
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("pgdir: schema lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS xpra_proxy_schema (version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("pgdir: schema table: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM xpra_proxy_schema`).Scan(&have); err != nil {
			return fmt.Errorf("pgdir: schema version: %w", err)
		}
		if have > SchemaVersion {
			return fmt.Errorf("pgdir: the database has schema version %d, this proxy knows up to %d: upgrade the proxy", have, SchemaVersion)
		}
		for v := have + 1; v <= SchemaVersion; v++ {
			for _, stmt := range schema[v] {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("pgdir: schema version %d: %w", v, err)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO xpra_proxy_schema (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("pgdir: schema version %d: %w", v, err)
			}
			db.log.Info("shared directory schema applied", "version", v)
		}
		return nil
	})
}
