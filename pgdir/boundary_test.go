// SPDX-License-Identifier: GPL-2.0-or-later

package pgdir

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer is a unit test's directory server: it answers open, then
// does what behave says with each request (the helper's misbehaviours,
// which the real one should not have).
type fakeServer struct {
	starts atomic.Int32
	// behave gets the n-th run's request; it returns the reply to send,
	// or nil to send none.
	behave func(run int32, req Request, conn net.Conn) *Reply
}

func (f *fakeServer) connect() (*Backend, error) {
	run := f.starts.Add(1)
	ours, theirs := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer theirs.Close()
		r := bufio.NewReader(theirs)
		if _, err := ReadFrame(r, MaxRequest); err != nil {
			return
		}
		if WriteFrame(theirs, Reply{Result: json.RawMessage("{}")}, MaxReply) != nil {
			return
		}
		for {
			b, err := ReadFrame(r, MaxRequest)
			if err != nil {
				return
			}
			var req Request
			if json.Unmarshal(b, &req) != nil {
				return
			}
			if rep := f.behave(run, req, theirs); rep != nil {
				rep.ID = req.ID
				if WriteFrame(theirs, rep, MaxReply) != nil {
					return
				}
			}
		}
	}()
	return &Backend{Conn: ours, Done: done, Kill: func() { ours.Close(); theirs.Close() },
		Exit: func() error { return errors.New("ended") }}, nil
}

func openFake(t *testing.T, f *fakeServer) *DB {
	t.Helper()
	db, err := OpenWith(Config{Timeout: 200 * time.Millisecond, Retry: time.Second, Name: "t"}, f.connect)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// waitRestart waits for the supervisor to have started run n.
// serving reports whether a helper is in service (calls reach it).
func (db *DB) serving() bool {
	db.mu.Lock()
	s := db.cur
	db.mu.Unlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.dead
}

// waitRestart waits until the helper was started n times and db has
// taken the last one into service: a start is counted when the helper is
// dialled, before its open reply makes it db's current one (calls in
// between fail over at once, as they should).
func waitRestart(t *testing.T, db *DB, f *fakeServer, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // a hang guard: the first backoff is 0.5 s
	for f.starts.Load() < n || !db.serving() {
		if time.Now().After(deadline) {
			t.Fatalf("the helper was not restarted (%d starts, serving %v)", f.starts.Load(), db.serving())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHelperBoundary(t *testing.T) {
	ok := &Reply{Result: json.RawMessage(`{"N":3}`)}
	tests := []struct {
		name string
		// first: what the first run does with a call
		first func(req Request, conn net.Conn) *Reply
	}{
		{"hung: no reply", func(Request, net.Conn) *Reply { return nil }},
		{"killed mid-call", func(_ Request, conn net.Conn) *Reply { conn.Close(); return nil }},
		{"a reply over its bound", func(_ Request, conn net.Conn) *Reply {
			var h [4]byte
			binary.BigEndian.PutUint32(h[:], MaxReply+1)
			conn.Write(h[:])
			return nil
		}},
		{"a reply that does not parse", func(_ Request, conn net.Conn) *Reply {
			conn.Write([]byte{0, 0, 0, 3, '{', '{', '{'})
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{behave: func(run int32, req Request, conn net.Conn) *Reply {
				if run == 1 {
					return tt.first(req, conn)
				}
				return ok
			}}
			db := openFake(t, f)
			_, err := db.OtherRelays(context.Background(), "alice")
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("first call: %v, want ErrUnavailable", err)
			}
			if db.Status().Up {
				t.Fatalf("status after a broken helper: %+v", db.Status())
			}
			waitRestart(t, db, f, 2)
			n, err := db.OtherRelays(context.Background(), "alice")
			if err != nil || n != 3 {
				t.Fatalf("after the restart: %d, %v", n, err)
			}
			if !db.Status().Up {
				t.Fatalf("status after the restart: %+v", db.Status())
			}
		})
	}
}

// The helper's two kinds of error: an outage (ErrUnavailable, down) and
// an SQL error (up), with the helper's text.
func TestReplyErrors(t *testing.T) {
	f := &fakeServer{behave: func(_ int32, req Request, _ net.Conn) *Reply {
		var a RelayArgs
		json.Unmarshal(req.Args, &a)
		if a.User == "down" {
			return &Reply{Err: "pgdir: database unavailable: dial tcp: refused", Unavailable: true}
		}
		return &Reply{Err: `pgdir: counting the relays of x: ERROR: relation "xpra_proxy_relays" does not exist`}
	}}
	db := openFake(t, f)
	_, err := db.OtherRelays(context.Background(), "down")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused") || db.Status().Up {
		t.Fatalf("outage: %v, status %+v", err, db.Status())
	}
	_, err = db.OtherRelays(context.Background(), "x")
	if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "does not exist") || !db.Status().Up {
		t.Fatalf("SQL error: %v, status %+v", err, db.Status())
	}
}

// Calls run concurrently: a slow one does not hold the others.
func TestConcurrentCalls(t *testing.T) {
	release := make(chan struct{})
	f := &fakeServer{}
	f.behave = func(_ int32, req Request, conn net.Conn) *Reply {
		var a RelayArgs
		json.Unmarshal(req.Args, &a)
		if a.User == "slow" {
			go func() {
				<-release
				WriteFrame(conn, Reply{ID: req.ID, Result: json.RawMessage(`{"N":1}`)}, MaxReply)
			}()
			return nil
		}
		return &Reply{Result: json.RawMessage(`{"N":2}`)}
	}
	db, err := OpenWith(Config{Timeout: 5 * time.Second, Name: "t"}, f.connect)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	slow := make(chan int, 1)
	go func() { n, _ := db.OtherRelays(context.Background(), "slow"); slow <- n }()
	if n, err := db.OtherRelays(context.Background(), "fast"); err != nil || n != 2 {
		t.Fatalf("fast call behind a slow one: %d, %v", n, err)
	}
	close(release)
	if n := <-slow; n != 1 {
		t.Fatalf("slow call: %d", n)
	}
}

func TestFailureRule(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	steps := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	tests := []struct {
		name        string
		rule        FailureRule
		shared      int
		sharedUntil time.Time
		wantF       int
		wantUntil   time.Time
	}{
		{"no shared record", FailureRule{Failures: 1, Until: now.Add(time.Second), Forget: time.Hour, Penalties: steps},
			0, time.Unix(0, 0), 1, now.Add(time.Second)},
		{"others saw more: one more than theirs", FailureRule{Failures: 1, Until: now.Add(time.Second), Forget: time.Hour, Penalties: steps},
			2, now.Add(time.Second), 3, now.Add(4 * time.Second)},
		{"past the table: its last step", FailureRule{Failures: 1, Until: now.Add(time.Second), Forget: time.Hour, Penalties: steps},
			9, now.Add(-time.Minute), 10, now.Add(4 * time.Second)},
		{"a record forgotten counts 0", FailureRule{Failures: 2, Until: now.Add(2 * time.Second), Forget: time.Minute, Penalties: steps},
			5, now.Add(-time.Hour), 2, now.Add(2 * time.Second)},
		{"a later shared end is kept", FailureRule{Failures: 3, Until: now.Add(time.Second), Forget: time.Hour, Penalties: steps},
			1, now.Add(time.Hour), 3, now.Add(time.Hour)},
		{"penalties off", FailureRule{Failures: 1, Until: now, Forget: time.Hour},
			1, now, 2, now},
	}
	for _, tt := range tests {
		f, until := tt.rule.Combine(now, tt.shared, tt.sharedUntil)
		if f != tt.wantF || !until.Equal(tt.wantUntil) {
			t.Errorf("%s: %d until %v, want %d until %v", tt.name, f, until, tt.wantF, tt.wantUntil)
		}
	}
}

// FuzzDecodeReply: root's parser of the helper's bytes never panics and
// never returns more than its bound.
func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte("\x00\x00\x00\x1d{\"id\":7,\"result\":{\"N\":3}}...."))
	f.Add([]byte("\x00\x00\x00\x2a{\"id\":1,\"err\":\"x\",\"unavailable\":true}"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(strings.NewReader(string(b)))
		for range 4 {
			rep, err := DecodeReply(r)
			if err != nil {
				return
			}
			if len(rep.Result) > MaxReply {
				t.Fatalf("a result of %d bytes", len(rep.Result))
			}
			_ = ReplyError(rep)
			var u []User
			_ = json.Unmarshal(rep.Result, &u)
		}
	})
}
