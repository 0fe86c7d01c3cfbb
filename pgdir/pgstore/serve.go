// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// maxInFlight bounds the requests served at once; more wait to be read.
// Generous: each ends within the directory timeout (Store.Do), and one
// that waits to be read past the supervisor's bound gets the helper
// killed as hung.
const maxInFlight = 1024

// Bounds of what a request may carry (the supervisor is trusted, but a
// bug there must not make the helper do unbounded work).
const (
	maxText  = 4096 // a username, password, display, source, column value
	maxHosts = 1024
	maxLive  = 1 << 16 // relays in a SyncRelays
)

// ErrBadRequest is the error of a request Serve refuses.
var ErrBadRequest = errors.New("pgstore: bad request")

// Serve is the server end of pgdir's protocol on conn: the Open frame
// first, then requests until conn ends or ctx does. It returns why.
// confine (nil: none) runs once the URI is parsed, before the first
// connection to the database: the helper's sandbox, which needs the
// database's address.
func Serve(ctx context.Context, conn net.Conn, log *slog.Logger, confine func(*pgxpool.Config) error) error {
	r := bufio.NewReader(conn)
	var wmu sync.Mutex
	send := func(rep pgdir.Reply) error {
		wmu.Lock()
		defer wmu.Unlock()
		err := pgdir.WriteFrame(conn, rep, pgdir.MaxReply)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			// Too large: say so instead, in a reply that fits.
			var big = fmt.Errorf("pgstore: the reply to request %d: %w", rep.ID, err)
			return pgdir.WriteFrame(conn, pgdir.Reply{ID: rep.ID, Err: big.Error()}, pgdir.MaxReply)
		}
		return err
	}
	b, err := pgdir.ReadFrame(r, pgdir.MaxRequest)
	if err != nil {
		return fmt.Errorf("pgstore: the open request: %w", err)
	}
	var req pgdir.Request
	var oa pgdir.OpenArgs
	if err := json.Unmarshal(b, &req); err != nil || req.Op != pgdir.OpOpen || json.Unmarshal(req.Args, &oa) != nil {
		send(pgdir.Reply{Err: "pgstore: the first request must be open"})
		return errors.New("pgstore: the first request is not open")
	}
	db, err := Open(Config{URI: oa.URI, Timeout: time.Duration(oa.TimeoutMS) * time.Millisecond,
		Retry: time.Duration(oa.RetryMS) * time.Millisecond, Name: oa.Name, Log: log})
	clear([]byte(oa.URI)) // best effort: strings are immutable; the pool keeps its copy anyway
	if err != nil {
		send(pgdir.Reply{Err: err.Error()})
		return err
	}
	defer db.Close()
	if confine != nil {
		if err := confine(db.pool.Config()); err != nil {
			send(pgdir.Reply{Err: err.Error()})
			return err
		}
	}
	if err := send(pgdir.Reply{Result: json.RawMessage("{}")}); err != nil {
		return err
	}
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Before the wait: the long polls end at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		b, err := pgdir.ReadFrame(r, pgdir.MaxRequest)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pgstore: reading a request: %w", err)
		}
		var req pgdir.Request
		if err := json.Unmarshal(b, &req); err != nil || req.ID == 0 {
			// Without an id there is nobody to answer: the peer is broken.
			return fmt.Errorf("%w: a frame that is not a request", ErrBadRequest)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			rep := db.handle(ctx, req)
			rep.ID = req.ID
			if err := send(rep); err != nil {
				log.Debug("sending a reply", "err", err)
			}
		})
	}
}

// handle runs one request.
func (db *Store) handle(ctx context.Context, req pgdir.Request) pgdir.Reply {
	res, err := db.dispatch(ctx, req)
	if err != nil {
		return pgdir.Reply{Err: err.Error(), Unavailable: errors.Is(err, ErrUnavailable)}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return pgdir.Reply{Err: fmt.Sprintf("pgstore: encoding the result: %v", err)}
	}
	return pgdir.Reply{Result: b}
}

// args decodes a request's arguments into v and checks its strings.
func args(req pgdir.Request, v any, texts ...*string) error {
	if len(req.Args) > 0 {
		if err := json.Unmarshal(req.Args, v); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadRequest, req.Op, err)
		}
	}
	for _, s := range texts {
		if len(*s) > maxText || !utf8.ValidString(*s) {
			return fmt.Errorf("%w: %s: an argument over %d bytes or not UTF-8", ErrBadRequest, req.Op, maxText)
		}
	}
	return nil
}

type empty struct{}

func (db *Store) dispatch(ctx context.Context, req pgdir.Request) (any, error) {
	switch req.Op {
	case pgdir.OpPing:
		return empty{}, db.Ping(ctx)
	case pgdir.OpUserRows:
		var a pgdir.UserArgs
		if err := args(req, &a, &a.Username); err != nil {
			return nil, err
		}
		return db.UserRows(ctx, a.Username)
	case pgdir.OpUsers:
		return db.Users(ctx)
	case pgdir.OpAddUser:
		var u pgdir.User
		if err := args(req, &u, &u.Username, &u.Password, &u.UID, &u.GID, &u.Displays, &u.EnvOptions, &u.SessionOptions); err != nil {
			return nil, err
		}
		return empty{}, db.AddUser(ctx, u)
	case pgdir.OpRemoveUser:
		var a pgdir.UserArgs
		if err := args(req, &a, &a.Username, &a.Password); err != nil {
			return nil, err
		}
		n, err := db.RemoveUser(ctx, a.Username, a.Password)
		return pgdir.Count{N: n}, err
	case pgdir.OpSetUser:
		var a pgdir.UserArgs
		if err := args(req, &a, &a.Username, &a.Column, &a.Value); err != nil {
			return nil, err
		}
		n, err := db.SetUser(ctx, a.Username, a.Column, a.Value)
		return pgdir.Count{N: n}, err
	case pgdir.OpPlace:
		var a pgdir.PlaceArgs
		if err := args(req, &a, &a.User); err != nil {
			return nil, err
		}
		if len(a.Hosts) == 0 || len(a.Hosts) > maxHosts {
			return nil, fmt.Errorf("%w: place: %d hosts", ErrBadRequest, len(a.Hosts))
		}
		host, found, err := db.Place(ctx, a.User, a.Hosts)
		return pgdir.PlaceResult{Host: host, Found: found}, err
	case pgdir.OpSessionLive, pgdir.OpSessionEnded:
		var a pgdir.SessionArgs
		if err := args(req, &a, &a.User, &a.Display); err != nil {
			return nil, err
		}
		if req.Op == pgdir.OpSessionLive {
			return empty{}, db.SessionLive(ctx, a.User, a.Display)
		}
		return empty{}, db.SessionEnded(ctx, a.User, a.Display)
	case pgdir.OpSessions:
		return db.Sessions(ctx)
	case pgdir.OpSessionsRunning:
		var a pgdir.RunningArgs
		if err := args(req, &a); err != nil {
			return nil, err
		}
		if len(a.Running) > maxLive {
			return nil, fmt.Errorf("%w: sessions-running: %d sessions", ErrBadRequest, len(a.Running))
		}
		return empty{}, db.SessionsRunning(ctx, a.Running)
	case pgdir.OpAddFailure:
		var a pgdir.FailureArgs
		if err := args(req, &a, &a.Source); err != nil {
			return nil, err
		}
		if len(a.Rule.Penalties) > pgdir.MaxPenaltySteps {
			return nil, fmt.Errorf("%w: add-failure: %d penalty steps", ErrBadRequest, len(a.Rule.Penalties))
		}
		return db.AddFailure(ctx, a.Source, a.Rule)
	case pgdir.OpClearPenalty:
		var a pgdir.SourceArgs
		if err := args(req, &a, &a.Source); err != nil {
			return nil, err
		}
		return empty{}, db.ClearPenalty(ctx, a.Source)
	case pgdir.OpPenalties:
		var a pgdir.PenaltiesArgs
		if err := args(req, &a); err != nil {
			return nil, err
		}
		return db.Penalties(ctx, time.Duration(a.ForgetMS)*time.Millisecond)
	case pgdir.OpPublishPenalties:
		var a pgdir.PublishArgs
		if err := args(req, &a); err != nil {
			return nil, err
		}
		n, err := db.PublishPenalties(ctx, a.Penalties)
		return pgdir.Count{N: int64(n)}, err
	case pgdir.OpAddRelay, pgdir.OpRemoveRelay, pgdir.OpOtherRelays:
		var a pgdir.RelayArgs
		if err := args(req, &a, &a.User); err != nil {
			return nil, err
		}
		switch req.Op {
		case pgdir.OpAddRelay:
			return empty{}, db.AddRelay(ctx, a.PID, a.User)
		case pgdir.OpRemoveRelay:
			return empty{}, db.RemoveRelay(ctx, a.PID)
		}
		n, err := db.OtherRelays(ctx, a.User)
		return pgdir.Count{N: int64(n)}, err
	case pgdir.OpSyncRelays:
		var a pgdir.SyncArgs
		if err := args(req, &a); err != nil {
			return nil, err
		}
		if len(a.Live) > maxLive {
			return nil, fmt.Errorf("%w: sync-relays: %d relays", ErrBadRequest, len(a.Live))
		}
		return empty{}, db.SyncRelays(ctx, a.Live)
	case pgdir.OpListen:
		var a pgdir.ListenArgs
		if err := args(req, &a, &a.Channel, &a.Epoch); err != nil {
			return nil, err
		}
		if a.Channel == "" || len(a.Channel) > pgdir.MaxChannel {
			return nil, fmt.Errorf("%w: listen: channel %q", ErrBadRequest, a.Channel)
		}
		return db.Wait(ctx, a, pgdir.ListenWait), nil
	}
	return nil, fmt.Errorf("%w: unknown op %q", ErrBadRequest, req.Op)
}
