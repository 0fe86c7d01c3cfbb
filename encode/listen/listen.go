// SPDX-License-Identifier: GPL-2.0-or-later

// Package listen is the socket side the encoder's front ends share: it
// accepts on a unix listener, learns who the peer is from the kernel's
// credentials before a byte is read, admits it under connection limits
// (which two sockets may share, so a uid gains nothing by using both),
// and hands it to the protocol's handler. Close drops every connection
// and waits for the handlers.
package listen

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/xpra-proxy/xpra-proxy/peercred"
)

// Limiter counts admitted connections in total and per uid. One
// Limiter given to several Listeners bounds them together.
type Limiter struct {
	maxConns, maxPerUID int

	mu     sync.Mutex
	n      int
	perUID map[uint32]int
}

// NewLimiter admits at most maxConns connections and maxPerUID per uid.
func NewLimiter(maxConns, maxPerUID int) *Limiter {
	return &Limiter{maxConns: maxConns, maxPerUID: maxPerUID, perUID: map[uint32]int{}}
}

// acquire counts one more connection of uid, or says why not.
func (l *Limiter) acquire(uid uint32) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.maxConns {
		return fmt.Sprintf("%d connections, the limit", l.n)
	}
	if l.perUID[uid] >= l.maxPerUID {
		return fmt.Sprintf("uid %d has %d connections, the limit", uid, l.perUID[uid])
	}
	l.n++
	l.perUID[uid]++
	return ""
}

// Conns is how many connections it counts now, on every Listener it
// bounds.
func (l *Limiter) Conns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *Limiter) release(uid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.perUID[uid]--; l.perUID[uid] <= 0 {
		delete(l.perUID, uid)
	}
}

// Peer is an accepted connection's kernel credentials, and a logger
// that names them (keys uid and peer_pid).
type Peer struct {
	UID uint32
	PID int32
	Log *slog.Logger
}

// Refusal says why a peer is turned away before its handler runs.
type Refusal int

const (
	// NotAllowed: the allow function refused the uid.
	NotAllowed Refusal = iota
	// Busy: a connection limit is reached, or the listener is closing.
	Busy
)

// Listener serves one unix listener.
type Listener struct {
	// Name starts every log message ("encoder", "xpra encoder").
	Name string
	// Allow says which uids may connect.
	Allow func(uid uint32) bool
	// Limits bounds the connections, shared with other Listeners or not.
	Limits *Limiter
	// Handle serves an admitted connection to its end; the Listener
	// closes it afterwards.
	Handle func(uc *net.UnixConn, p Peer)
	// Refuse, when set, tells a refused peer why (why is readable)
	// before the connection is closed; nil closes it unanswered.
	Refuse func(uc *net.UnixConn, p Peer, r Refusal, why string)
	// Log is the base logger (nil: slog.Default).
	Log *slog.Logger

	mu     sync.Mutex
	conns  map[*net.UnixConn]struct{}
	closed bool
	ln     *net.UnixListener
	wg     sync.WaitGroup
}

func (l *Listener) log() *slog.Logger {
	if l.Log == nil {
		return slog.Default()
	}
	return l.Log
}

// Serve accepts connections until Close, each in its own goroutine.
func (l *Listener) Serve(ln *net.UnixListener) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return net.ErrClosed
	}
	l.ln = ln
	l.mu.Unlock()
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: wait instead of spinning.
			l.log().Warn(l.Name+": accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.ServeConn(uc)
		}()
	}
}

// Close stops accepting, closes every admitted connection and waits for
// the handlers.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	if l.ln != nil {
		l.ln.Close()
	}
	for uc := range l.conns {
		uc.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return nil
}

// Conns is how many connections this Listener holds now.
func (l *Listener) Conns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// ServeConn serves one connection, accepted by Serve or elsewhere, in
// the calling goroutine: credentials, admission, the handler, and
// closing it.
func (l *Listener) ServeConn(uc *net.UnixConn) {
	defer uc.Close()
	cred, err := peercred.Of(uc)
	if err != nil {
		l.log().Warn(l.Name+": no peer credentials", "err", err)
		return
	}
	p := Peer{UID: cred.Uid, PID: cred.Pid, Log: l.log().With("uid", cred.Uid, "peer_pid", cred.Pid)}
	// Who it is decides everything, before a byte is read.
	if !l.Allow(p.UID) {
		p.Log.Warn(l.Name + ": uid not allowed")
		l.refuse(uc, p, NotAllowed, fmt.Sprintf("uid %d may not use this encoder", p.UID))
		return
	}
	if why := l.admit(uc, p.UID); why != "" {
		p.Log.Warn(l.Name+": connection refused", "why", why)
		l.refuse(uc, p, Busy, why)
		return
	}
	defer l.drop(uc, p.UID)
	l.Handle(uc, p)
}

func (l *Listener) refuse(uc *net.UnixConn, p Peer, r Refusal, why string) {
	if l.Refuse != nil {
		l.Refuse(uc, p, r, why)
	}
}

func (l *Listener) admit(uc *net.UnixConn, uid uint32) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "shutting down"
	}
	if why := l.Limits.acquire(uid); why != "" {
		return why
	}
	if l.conns == nil {
		l.conns = map[*net.UnixConn]struct{}{}
	}
	l.conns[uc] = struct{}{}
	return ""
}

func (l *Listener) drop(uc *net.UnixConn, uid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, uc)
	l.Limits.release(uid)
}
