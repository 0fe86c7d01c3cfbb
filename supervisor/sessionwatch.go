// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/xpra-proxy/xpra-proxy/logind"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
)

// The session-ended audit record. A session's end happens in its own unit
// (the leader, xpra-proxy-session, sees its payload exit), which has no
// channel to the supervisor; logind, which the supervisor already asks to
// start and list sessions, announces it to everyone on the system bus
// (SessionRemoved). So the supervisor keeps a book of the proxy's
// sessions (PAM service xpra-proxy) from logind's list and SessionNew,
// and writes the record when one is removed. Sessions that end while no
// supervisor runs (between a stop and the next start) get no record.

// sessionRetry is how long the watch waits after losing the bus.
const sessionRetry = 10 * time.Second

// watchSessions runs until ctx ends.
func (s *Supervisor) watchSessions(ctx context.Context) {
	book := sessionBook{}
	last := "" // the error last warned of
	for {
		err := watchSessionsOnce(ctx, book, s.log, s.dir)
		if ctx.Err() != nil {
			return
		}
		// Once per kind of failure: with no system bus at all (a run by
		// hand outside systemd) the same error every 10 s says nothing new.
		level := slog.LevelWarn
		if msg := fmt.Sprint(err); msg == last {
			level = slog.LevelDebug
		} else {
			last = msg
		}
		s.log.Log(ctx, level, "watching logind for the end of sessions: retrying", "in", sessionRetry, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(sessionRetry):
		}
	}
}

// watchSessionsOnce watches until the bus connection or ctx ends. It
// watches before it lists, so that no session falls between the two.
func watchSessionsOnce(ctx context.Context, book sessionBook, log *slog.Logger, dir *pgdir.DB) error {
	c, err := logind.Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.Watch(ctx)
	if err != nil {
		return err
	}
	list, err := c.ListSessions(ctx, logind.AnyUser)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, gone := range book.listed(list) {
		sessionEnded(log, gone, now) // ended while the watch was down
		recordEnded(dir, log, gone)
	}
	recordRunning(ctx, dir, log, list)
	for ev := range events {
		switch ev.Kind {
		case logind.SessionNew:
			sess, err := c.Session(ctx, ev.ID)
			if errors.Is(err, logind.ErrNoSession) {
				continue // gone already
			}
			if err != nil {
				return err
			}
			book.add(sess)
		case logind.SessionRemoved:
			if sess, ok := book.removed(ev.ID); ok {
				sessionEnded(log, sess, time.Now())
				recordEnded(dir, log, sess)
			}
		}
	}
	return fmt.Errorf("logind: the watch ended: %w", context.Cause(ctx))
}

func sessionEnded(log *slog.Logger, sess logind.Session, now time.Time) {
	args := []any{audit.Event(audit.SessionEnded), audit.KeyUser, sess.User, "uid", sess.UID,
		audit.KeyDisplay, sess.Display, "session", sess.ID}
	if sess.RemoteHost != "" {
		args = append(args, "remote_host", sess.RemoteHost)
	}
	if !sess.Since.IsZero() {
		args = append(args, audit.KeyDuration, audit.Seconds(now.Sub(sess.Since)))
	}
	log.Info("session ended", args...)
}

// sessionBook is the proxy's live sessions by logind id.
type sessionBook map[string]logind.Session

// add keeps sess if the proxy started it.
func (b sessionBook) add(sess logind.Session) {
	if sess.IsProxy() {
		b[sess.ID] = sess
	}
}

// removed takes session id out of the book, if it was there.
func (b sessionBook) removed(id string) (logind.Session, bool) {
	sess, ok := b[id]
	delete(b, id)
	return sess, ok
}

// listed makes the book logind's list, and returns the sessions it had
// that the list lacks: they ended unseen.
func (b sessionBook) listed(list []logind.Session) []logind.Session {
	live := sessionBook{}
	for _, sess := range list {
		live.add(sess)
	}
	var gone []logind.Session
	for id, sess := range b {
		if _, ok := live[id]; !ok {
			gone = append(gone, sess)
		}
		delete(b, id)
	}
	for id, sess := range live {
		b[id] = sess
	}
	return gone
}
