// SPDX-License-Identifier: GPL-2.0-or-later

// Package pgstore is the shared directory's PostgreSQL client, run by
// xpra-proxy-directory (never by root: it parses the database's wire
// protocol and holds its password): the pool, the schema, the queries of
// users, sessions, penalties and relays, LISTEN, and Serve, the server end
// of package pgdir's protocol.
//
// Every call is bounded (Timeout) and a database that failed is not tried
// again for Retry: ErrUnavailable at once.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// ErrUnavailable is pgdir's: Serve reports it as such.
var ErrUnavailable = pgdir.ErrUnavailable

const (
	// maxConns bounds the pool: the supervisor's calls are short and
	// few at a time; more would only load the database.
	maxConns = 4
)

// Config and Status are pgdir's.
type (
	Config = pgdir.Config
	Status = pgdir.Status
)

// Store is a connection pool to the shared directory.
type Store struct {
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

	lmu       sync.Mutex
	listeners map[string]*listener // by channel (listen.go)
	lctx      context.Context
	lstop     context.CancelFunc
}

// Open prepares the pool; it does not connect (the database may be down
// when the proxy starts: the first call finds out, bounded).
func Open(cfg Config) (*Store, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = pgdir.DefaultTimeout
	}
	if cfg.Retry <= 0 {
		cfg.Retry = pgdir.DefaultRetry
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
	lctx, lstop := context.WithCancel(context.Background())
	return &Store{pool: pool, timeout: cfg.Timeout, retry: cfg.Retry, name: cfg.Name, log: cfg.Log,
		status: Status{Up: true, Since: time.Now()}, changed: make(chan struct{}),
		listeners: map[string]*listener{}, lctx: lctx, lstop: lstop}, nil
}

// Close stops the listeners and closes the pool.
func (db *Store) Close() {
	db.lstop()
	db.pool.Close()
}

// Name is this proxy's name in the directory.
func (db *Store) Name() string { return db.name }

// Status is the database's state as last seen.
func (db *Store) Status() Status {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.status
}

// Changed is closed at the next up/down change.
func (db *Store) Changed() <-chan struct{} {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.changed
}

// Do runs fn against the pool, bounded by the configured timeout (and
// ctx). It returns ErrUnavailable at once while the database is down and
// was tried less than Retry ago. A failure to reach the database marks
// it down (wrapped in ErrUnavailable); an SQL error does not.
func (db *Store) Do(ctx context.Context, fn func(ctx context.Context, p *pgxpool.Pool) error) error {
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
func (db *Store) Ping(ctx context.Context) error {
	return db.Do(ctx, func(ctx context.Context, p *pgxpool.Pool) error { return p.Ping(ctx) })
}

func (db *Store) mark(up bool, err error) {
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
	// Debug: the supervisor logs the change from the replies.
	if up {
		db.log.Debug("the database is reachable again")
	} else {
		db.status.Err = err.Error()
		db.log.Debug("the database is unreachable", "err", err, "retry", db.retry)
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
