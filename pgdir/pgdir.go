// SPDX-License-Identifier: GPL-2.0-or-later

// Package pgdir is the directory several proxies share in PostgreSQL
// (issue 16): xpra's users table (the same rows as the sqlite module),
// the session directory (which host holds whose session), the penalties
// of sources that failed to log in, and the live relays per user.
//
// It runs inside the root supervisor, which holds the database's URI
// (read from a root-only file) and never hands it to a child. Every call
// is bounded (Config.Timeout) and a database that failed is not tried
// again for Config.Retry: a login never waits on a dead database for
// more than one timeout, and later ones fail over at once (ErrUnavailable)
// to what the proxy can decide alone (the configured fallback module,
// its own penalty table, its own relay counts). Watch notices the
// database coming back without a login having to try.
package pgdir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrUnavailable is the error of a call made while the database is known
// to be unreachable, or that found it so.
var ErrUnavailable = errors.New("pgdir: database unavailable")

// Defaults of Config.
const (
	DefaultTimeout = 2 * time.Second
	DefaultRetry   = 5 * time.Second
	// maxConns bounds the pool: the supervisor's calls are short and
	// few at a time; more would only load the database.
	maxConns = 4
)

// Config says which database and how long to wait for it.
type Config struct {
	URI     string        // postgres://... or key=value form (libpq's)
	Timeout time.Duration // bound of one call, connecting included
	Retry   time.Duration // how long a failed database is not tried again
	// Name is this proxy's name in the directory (sessions it records,
	// relays it counts); the host name by default.
	Name string
	Log  *slog.Logger
}

// Status is the database's state as this proxy last saw it.
type Status struct {
	Up    bool
	Since time.Time // when it last changed (or the first call)
	Err   string    // why it is down
}

// DB is a connection pool to the shared directory.
type DB struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	retry   time.Duration
	name    string
	log     *slog.Logger

	mu       sync.Mutex
	status   Status
	tried    time.Time // the last call that reached for the network
	migrated bool
	changed  chan struct{} // closed and replaced on each up/down change

	fallbacks atomic.Uint64 // logins the fallback module decided (CountFallback)
}

// Open prepares the pool; it does not connect (the database may be down
// when the proxy starts: the first call finds out, bounded).
func Open(cfg Config) (*DB, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	pc, err := pgxpool.ParseConfig(cfg.URI)
	if err != nil {
		// pgx's message may quote the URI, password included.
		return nil, errors.New("pgdir: the database URI does not parse")
	}
	pc.ConnConfig.ConnectTimeout = cfg.Timeout
	pc.MaxConns = maxConns
	pc.MinConns = 0
	pc.HealthCheckPeriod = cfg.Retry
	// A connection the database dropped (a restart) is found by the
	// health check or the next call; short idle lifetimes keep stale
	// connections from being the first thing a login tries.
	pc.MaxConnIdleTime = 30 * time.Second
	if pc.ConnConfig.RuntimeParams == nil {
		pc.ConnConfig.RuntimeParams = map[string]string{}
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "xpra-proxy"
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("pgdir: the pool: %w", err)
	}
	return &DB{pool: pool, timeout: cfg.Timeout, retry: cfg.Retry, name: cfg.Name, log: cfg.Log,
		status: Status{Up: true, Since: time.Now()}, changed: make(chan struct{})}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// Name is this proxy's name in the directory.
func (db *DB) Name() string { return db.name }

// Status is the database's state as last seen.
func (db *DB) Status() Status {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.status
}

// Changed is closed at the next up/down change.
func (db *DB) Changed() <-chan struct{} {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.changed
}

// Do runs fn against the pool, bounded by the configured timeout (and
// ctx). It returns ErrUnavailable at once while the database is down and
// was tried less than Retry ago. A failure to reach the database marks
// it down (wrapped in ErrUnavailable); an SQL error does not.
func (db *DB) Do(ctx context.Context, fn func(ctx context.Context, p *pgxpool.Pool) error) error {
	db.mu.Lock()
	if !db.status.Up && time.Since(db.tried) < db.retry {
		err := db.status.Err
		db.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnavailable, err)
	}
	db.tried = time.Now()
	migrated := db.migrated
	db.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, db.timeout)
	defer cancel()
	err := func() error {
		if !migrated {
			if err := db.migrate(ctx); err != nil {
				return err
			}
		}
		return fn(ctx, db.pool)
	}()
	if err != nil && unreachable(err) {
		db.mark(false, err)
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	db.mark(true, nil)
	return err
}

// Ping checks the database (Watch's probe).
func (db *DB) Ping(ctx context.Context) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error { return p.Ping(ctx) })
}

// Watch probes the database once at once (Open assumes it up: one down
// at start-up must show before the first login), then every Retry while
// it is down, until ctx ends, so status and metrics show its return
// without a login having to try.
func (db *DB) Watch(ctx context.Context) {
	_ = db.Ping(ctx)
	t := time.NewTicker(db.retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !db.Status().Up {
			_ = db.Ping(ctx)
		}
	}
}

func (db *DB) mark(up bool, err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if up {
		db.migrated = true
	}
	if db.status.Up == up {
		if !up {
			db.status.Err = err.Error()
		}
		return
	}
	db.status = Status{Up: up, Since: time.Now()}
	if up {
		db.log.Info("the shared directory (PostgreSQL) is reachable again")
	} else {
		db.status.Err = err.Error()
		db.log.Error("the shared directory (PostgreSQL) is unreachable: serving from the fallback", "err", err, "retry", db.retry)
	}
	close(db.changed)
	db.changed = make(chan struct{})
}

// unreachable tells a failure to reach the database (down, refused, cut,
// too slow) from an error the database returned.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Shutting down, too many connections, cannot connect now:
		// the database is there but not serving.
		switch pe.Code[:2] {
		case "57", "53", "08":
			return true
		}
		return false
	}
	return true
}
