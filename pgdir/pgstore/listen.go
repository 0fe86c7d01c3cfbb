// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// listenLoop holds a connection of its own (not the pool's: LISTEN ties a
// connection up for good) LISTENing on channel until ctx ends, and hands
// each notification's payload to note. After each
// (re)connection it calls ready first, so that the caller loads what it
// missed while not listening. A lost connection is tried again every
// Retry; the loss is logged once, not at each try.
func (db *Store) listenLoop(ctx context.Context, channel string, ready func(context.Context) error, note func(payload string), down func(error)) {
	lost := false
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, channel, func() error {
			if err := ready(ctx); err != nil {
				return err
			}
			if lost {
				db.log.Debug("listening again", "channel", channel)
				lost = false
			}
			return nil
		}, note)
		if ctx.Err() != nil {
			return
		}
		down(err)
		if !lost {
			db.log.Debug("not listening", "channel", channel, "err", err, "retry", db.retry)
			lost = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(db.retry):
		}
	}
}

func (db *Store) listenOnce(ctx context.Context, channel string, ready func() error, note func(string)) error {
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

// listener is one channel's LISTEN for the supervisor's long polls
// (pgdir.OpListen): what it hears is kept, bounded, until asked for.
type listener struct {
	mu        sync.Mutex
	wake      chan struct{} // closed and replaced on each change
	listening bool
	err       string
	epoch     string // a new one at each (re)connection
	n         int    // connections so far
	seq       uint64 // the last note's
	notes     []string
	first     uint64 // notes[0]'s seq
	gap       bool   // notes were dropped since the epoch began
}

func (l *listener) changed() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// listenerOf starts channel's listener on first use.
func (db *Store) listenerOf(channel string) *listener {
	db.lmu.Lock()
	defer db.lmu.Unlock()
	if l, ok := db.listeners[channel]; ok {
		return l
	}
	l := &listener{wake: make(chan struct{}), err: "connecting"}
	db.listeners[channel] = l
	start := time.Now().UnixNano()
	go db.listenLoop(db.lctx, channel, func(context.Context) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.n++
		l.listening, l.err, l.epoch = true, "", fmt.Sprintf("%d.%d", start, l.n)
		l.notes, l.first, l.gap = nil, l.seq+1, false
		l.changed()
		return nil
	}, func(payload string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.seq++
		l.notes = append(l.notes, payload)
		if len(l.notes) > pgdir.MaxNotes {
			l.notes = l.notes[1:]
			l.first++
			l.gap = true
		}
		l.changed()
	}, func(err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.listening, l.err = false, err.Error()
		l.changed()
	})
	return l
}

// Wait is one long poll: it returns at once when there is news for a
// caller at (epoch, after, listening), else at the first change or after
// wait.
func (db *Store) Wait(ctx context.Context, a pgdir.ListenArgs, wait time.Duration) pgdir.ListenReply {
	l := db.listenerOf(a.Channel)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		l.mu.Lock()
		news := l.listening != a.Listening || (l.listening && (l.epoch != a.Epoch || l.seq > a.After))
		if news {
			r := pgdir.ListenReply{Listening: l.listening, Err: l.err, Epoch: l.epoch, Seq: l.seq}
			if l.listening {
				from := a.After + 1
				if l.epoch != a.Epoch || from < l.first {
					from = l.first
					r.Gap = l.gap
				}
				if from <= l.seq {
					r.Notes = append([]string(nil), l.notes[from-l.first:]...)
				}
			}
			l.mu.Unlock()
			return r
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-t.C:
			l.mu.Lock()
			defer l.mu.Unlock()
			return pgdir.ListenReply{Listening: l.listening, Err: l.err, Epoch: l.epoch, Seq: l.seq}
		case <-ctx.Done():
			return pgdir.ListenReply{Listening: false, Err: "the directory helper is stopping"}
		}
	}
}
