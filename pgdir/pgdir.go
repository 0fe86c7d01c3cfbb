// SPDX-License-Identifier: GPL-2.0-or-later

// Package pgdir is the directory several proxies share in PostgreSQL
// (issue 16): xpra's users table (the same rows as the sqlite module),
// the session directory (which host holds whose session), the penalties
// of sources that failed to log in, and the live relays per user.
//
// The root supervisor never speaks PostgreSQL's wire protocol itself
// (ARCHITECTURE.md, "Where untrusted bytes are parsed"): DB is the client
// of xpra-proxy-directory, a long-running helper under a uid of its own
// that holds the connection pool (package pgdir/pgstore). Root starts it,
// hands it the URI on its descriptor, and restarts it when it dies; each
// method is one request and reply (proto.go), bounded by Config.Timeout
// plus a margin, so a hung helper fails a login over to the fallback
// (ErrUnavailable) instead of holding it.
//
// Every call is bounded (Config.Timeout) and a database that failed is not
// tried again for Config.Retry (the helper keeps that window): a login
// never waits on a dead database for more than one timeout, and later ones
// fail over at once (ErrUnavailable) to what the proxy can decide alone
// (the configured fallback module, its own penalty table, its own relay
// counts). Watch notices the database coming back without a login having
// to try.
package pgdir

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is the error of a call made while the database is known
// to be unreachable, or that found it so; also of a call the directory
// helper did not answer (dead, restarting, hung).
var ErrUnavailable = errors.New("pgdir: database unavailable")

// Defaults of Config.
const (
	DefaultTimeout = 2 * time.Second
	DefaultRetry   = 5 * time.Second
	// margin is what a call waits for the helper beyond the database's
	// own bound (the helper applies Timeout to the database).
	margin = time.Second
	// Restart backoff of a helper that died.
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
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

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retry <= 0 {
		c.Retry = DefaultRetry
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Status is the database's state as this proxy last saw it.
type Status struct {
	Up    bool
	Since time.Time // when it last changed (or the first call)
	Err   string    // why it is down
}

// Backend is one running directory server: the helper process (Start),
// or one in this process for tests (pgstore.Local).
type Backend struct {
	Conn net.Conn
	// Kill ends it (the process is killed; Done closes once reaped).
	Kill func()
	Done <-chan struct{}
	// Exit says how it ended, after Done.
	Exit func() error
}

// Connector starts a backend.
type Connector func() (*Backend, error)

// DB is the shared directory, through its helper.
type DB struct {
	cfg     Config
	connect Connector
	log     *slog.Logger

	mu      sync.Mutex
	status  Status
	changed chan struct{} // closed and replaced on each up/down change
	cur     *session      // nil while the helper is not running
	closed  bool
	stop    chan struct{}
	ended   chan struct{}

	nextID    atomic.Uint64
	fallbacks atomic.Uint64 // logins the fallback module decided (CountFallback)
}

// session is one run of the helper.
type session struct {
	b       *Backend
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[uint64]chan Reply
	dead    bool
}

// OpenWith starts the directory server with connect and sends it cfg; an
// error is a server that did not start or refused the URI. A server that
// dies later is restarted with a bounded backoff (logged), calls failing
// meanwhile with ErrUnavailable.
func OpenWith(cfg Config, connect Connector) (*DB, error) {
	cfg.defaults()
	db := &DB{cfg: cfg, connect: connect, log: cfg.Log,
		status:  Status{Up: true, Since: time.Now()},
		changed: make(chan struct{}), stop: make(chan struct{}), ended: make(chan struct{})}
	s, err := db.start()
	if err != nil {
		return nil, err
	}
	db.cur = s
	go db.supervise(s)
	return db, nil
}

// start runs a backend and opens the pool in it.
func (db *DB) start() (*session, error) {
	b, err := db.connect()
	if err != nil {
		return nil, fmt.Errorf("pgdir: starting the directory helper: %w", err)
	}
	s := &session{b: b, pending: map[uint64]chan Reply{}}
	fail := func(err error) (*session, error) {
		b.Kill()
		<-b.Done
		return nil, err
	}
	b.Conn.SetDeadline(time.Now().Add(db.cfg.Timeout + margin + 5*time.Second))
	open := Request{Op: OpOpen}
	open.Args, _ = json.Marshal(OpenArgs{URI: db.cfg.URI, TimeoutMS: db.cfg.Timeout.Milliseconds(),
		RetryMS: db.cfg.Retry.Milliseconds(), Name: db.cfg.Name})
	if err := WriteFrame(b.Conn, open, MaxRequest); err != nil {
		return fail(fmt.Errorf("pgdir: the directory helper: %w", err))
	}
	r := bufio.NewReader(b.Conn)
	rep, err := DecodeReply(r)
	if err != nil {
		return fail(fmt.Errorf("pgdir: the directory helper did not start: %w", err))
	}
	if err := ReplyError(rep); err != nil {
		return fail(err)
	}
	b.Conn.SetDeadline(time.Time{})
	go s.read(r)
	return s, nil
}

// read delivers the replies until the connection fails; then it kills
// the backend (a peer that broke the protocol is not trusted further).
func (s *session) read(r *bufio.Reader) {
	for {
		rep, err := DecodeReply(r)
		if err != nil {
			s.b.Kill()
			return
		}
		s.mu.Lock()
		ch, ok := s.pending[rep.ID]
		delete(s.pending, rep.ID)
		s.mu.Unlock()
		if ok {
			ch <- rep
		}
	}
}

// supervise waits for the backend's end and restarts it.
func (db *DB) supervise(s *session) {
	defer close(db.ended)
	backoff := minBackoff
	for {
		db.mu.Lock()
		db.cur = s
		db.mu.Unlock()
		started := time.Now()
		select {
		case <-s.b.Done:
		case <-db.stop:
			s.b.Kill()
			<-s.b.Done
			s.fail()
			return
		}
		db.mu.Lock()
		db.cur = nil
		db.mu.Unlock()
		s.fail()
		exit := s.b.Exit()
		db.mark(false, fmt.Sprintf("the directory helper ended: %v", exit))
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		for {
			db.log.Error("the directory helper ended: restarting it", "err", exit, "after", backoff)
			select {
			case <-db.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
			var err error
			if s, err = db.start(); err == nil {
				break
			}
			exit = err
		}
	}
}

// fail ends every call waiting on s.
func (s *session) fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = true
	for id, ch := range s.pending {
		close(ch)
		delete(s.pending, id)
	}
}

// Close stops the helper.
func (db *DB) Close() {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return
	}
	db.closed = true
	close(db.stop)
	db.mu.Unlock()
	<-db.ended
}

// Name is this proxy's name in the directory.
func (db *DB) Name() string { return db.cfg.Name }

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

// call sends op with args and decodes the reply's result into out (nil:
// none), waiting at most wait.
func (db *DB) call(ctx context.Context, op string, args, out any) error {
	return db.callWait(ctx, op, args, out, db.cfg.Timeout+margin)
}

func (db *DB) callWait(ctx context.Context, op string, args, out any, wait time.Duration) error {
	db.mu.Lock()
	s := db.cur
	db.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%w: the directory helper is not running", ErrUnavailable)
	}
	req := Request{ID: db.nextID.Add(1), Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("pgdir: %s: %w", op, err)
		}
		req.Args = b
	}
	ch := make(chan Reply, 1)
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return fmt.Errorf("%w: the directory helper is not running", ErrUnavailable)
	}
	s.pending[req.ID] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, req.ID)
		s.mu.Unlock()
	}

	s.wmu.Lock()
	s.b.Conn.SetWriteDeadline(time.Now().Add(wait))
	err := WriteFrame(s.b.Conn, req, MaxRequest)
	s.wmu.Unlock()
	if err != nil {
		forget()
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
	}

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case rep, ok := <-ch:
		if !ok {
			return fmt.Errorf("%w: the directory helper ended during %s", ErrUnavailable, op)
		}
		if err := ReplyError(rep); err != nil {
			if errors.Is(err, ErrUnavailable) {
				db.mark(false, rep.Err)
			} else {
				db.mark(true, "")
			}
			return err
		}
		db.mark(true, "")
		if out != nil {
			if err := json.Unmarshal(rep.Result, out); err != nil {
				return fmt.Errorf("pgdir: %s: a result that does not parse: %w", op, err)
			}
		}
		return nil
	case <-t.C:
		forget()
		// Hung: its calls would all wait this long. Restarted.
		db.log.Error("the directory helper did not answer in time: killing it", "op", op, "wait", wait)
		s.b.Kill()
		db.mark(false, "the directory helper did not answer in time")
		return fmt.Errorf("%w: the directory helper did not answer %s within %s", ErrUnavailable, op, wait)
	case <-ctx.Done():
		forget()
		return fmt.Errorf("pgdir: %s: %w", op, ctx.Err())
	}
}

// Ping checks the database (Watch's probe).
func (db *DB) Ping(ctx context.Context) error { return db.call(ctx, OpPing, nil, nil) }

// Watch probes the database once at once (Open assumes it up: one down
// at start-up must show before the first login), then every Retry while
// it is down, until ctx ends, so status and metrics show its return
// without a login having to try.
func (db *DB) Watch(ctx context.Context) {
	_ = db.Ping(ctx)
	t := time.NewTicker(db.cfg.Retry)
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

func (db *DB) mark(up bool, why string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.status.Up == up {
		if !up {
			db.status.Err = why
		}
		return
	}
	db.status = Status{Up: up, Since: time.Now()}
	if up {
		db.log.Info("the shared directory (PostgreSQL) is reachable again")
	} else {
		db.status.Err = why
		db.log.Error("the shared directory (PostgreSQL) is unreachable: serving from the fallback", "err", why, "retry", db.cfg.Retry)
	}
	close(db.changed)
	db.changed = make(chan struct{})
}

// CountFallback counts a login that the fallback module decided because
// the directory was unavailable (xpra_proxy_directory_fallback_logins_total).
func (db *DB) CountFallback() { db.fallbacks.Add(1) }

// FallbackLogins is CountFallback's count since the proxy started.
func (db *DB) FallbackLogins() uint64 { return db.fallbacks.Load() }
