// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"os"
	"os/exec"
	"os/user"
	"sync"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
)

// Warm relays. On this class of machine a relay's exec and Go start-up
// cost about 10 ms of wall time and more of CPU (BENCHMARKS.md, issue 17),
// serially after the verdict and before the relay's hello to the server.
// So after an identity (uid, gid) was granted a relay, the supervisor
// starts the next relay for it ahead of time, refillDelay later (as the
// pre-auth spares: not while this connection's set-up still needs the
// CPU), and keeps it waiting. The next login granted that identity, with
// no env options (those are set at exec), hands it the connection
// (ipc.RelayFile) instead of an exec. A waiting relay holds nothing of
// any client's; it is ended when the pool is over warm-relays (the
// longest waiting goes), after warmIdle, at a reload, and at shutdown.
// Only logins that succeeded start them: an unauthenticated client
// causes none.

// warmIdle is how long a warm relay waits for a login before it is ended.
const warmIdle = 10 * time.Minute

// relayID is an identity relays run as.
type relayID struct{ uid, gid int }

// warmRelay is a relay worker started before its client: waiting in the
// pool, or taken by a login.
type warmRelay struct {
	id       relayID
	set      *settings // the settings it was started under
	since    time.Time // ready since
	user     *user.User
	cred     *syscall.Credential
	cmd      *exec.Cmd
	pid      int
	start    *ipc.Conn // root's end of "start"
	report   *ipc.Conn // root's end of "report"
	sessions *ipc.Conn // root's end of "session" (nil without a session starter)
}

// warmRelays is the pool.
type warmRelays struct {
	s        *Supervisor
	mu       sync.Mutex
	closed   bool
	ready    map[relayID]*warmRelay
	starting map[relayID]bool
}

func newWarmRelays(s *Supervisor) *warmRelays {
	return &warmRelays{s: s, ready: map[relayID]*warmRelay{}, starting: map[relayID]bool{}}
}

// take returns the relay waiting for id under set, if any; the caller
// owns it.
func (w *warmRelays) take(set *settings, id relayID) *warmRelay {
	w.mu.Lock()
	e := w.ready[id]
	delete(w.ready, id)
	w.mu.Unlock()
	if e == nil {
		return nil
	}
	if e.set != set {
		w.s.drop(e)
		return nil
	}
	return e
}

// refillSoon starts the next relay for id after refillDelay.
func (w *warmRelays) refillSoon(id relayID) {
	time.AfterFunc(refillDelay, func() { w.refill(id) })
}

// refill starts a relay for id in the background unless one waits or is
// on its way; over warm-relays, the one waiting longest is ended.
func (w *warmRelays) refill(id relayID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.starting[id] || w.ready[id] != nil || id.uid == 0 || id.gid == 0 {
		return
	}
	limit := w.s.current().cfg.WarmRelays
	if limit <= 0 {
		return
	}
	if len(w.ready)+len(w.starting) >= limit {
		var oldest *warmRelay
		for _, e := range w.ready {
			if oldest == nil || e.since.Before(oldest.since) {
				oldest = e
			}
		}
		if oldest == nil {
			return // all on their way
		}
		delete(w.ready, oldest.id)
		w.s.drop(oldest)
	}
	w.starting[id] = true
	go func() {
		set := w.s.settings()
		e, err := w.s.execWarm(set, id)
		w.s.done(set)
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.starting, id)
		switch {
		case err != nil:
			w.s.log.Warn("starting a warm relay", "uid", id.uid, "err", err)
		case w.closed || w.ready[id] != nil || e.set != w.s.current():
			w.s.drop(e) // not needed, or started under settings a reload replaced
		default:
			e.since = time.Now()
			w.ready[id] = e
			time.AfterFunc(warmIdle, func() { w.expire(e) })
		}
	}()
}

// expire ends e if it still waits.
func (w *warmRelays) expire(e *warmRelay) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ready[e.id] == e {
		delete(w.ready, e.id)
		w.s.drop(e)
	}
}

// clear ends every waiting relay (a reload: they were started under the
// settings before it). closing: none are started after.
func (w *warmRelays) clear(closing bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = w.closed || closing
	for id, e := range w.ready {
		delete(w.ready, id)
		w.s.drop(e)
	}
}

// execWarm execs a relay as id that waits on its start channel.
func (s *Supervisor) execWarm(set *settings, id relayID) (_ *warmRelay, err error) {
	u, cred, err := relayIdentity(id.uid, id.gid)
	if err != nil {
		return nil, err
	}
	e := &warmRelay{id: id, set: set, user: u, cred: cred}
	var toClose []*os.File
	defer func() {
		for _, f := range toClose {
			f.Close()
		}
		if err != nil {
			e.closeConns()
		}
	}()
	var startEnd, reportEnd *os.File
	if e.start, startEnd, err = ipc.Pair(); err != nil {
		return nil, err
	}
	toClose = append(toClose, startEnd)
	if e.report, reportEnd, err = ipc.Pair(); err != nil {
		return nil, err
	}
	toClose = append(toClose, reportEnd)
	args := []string{"--report"}
	fds := map[string]*os.File{"start": startEnd, "report": reportEnd}
	if set.starter != nil {
		var childEnd *os.File
		if e.sessions, childEnd, err = ipc.Pair(); err != nil {
			return nil, err
		}
		toClose = append(toClose, childEnd)
		fds["session"] = childEnd
		args = append(args, "--start-session="+set.cfg.StartSession)
	}
	rc := s.bindRootControl()
	if rc != nil {
		fds["rootcontrol"] = rc.file
		args = append(args, "--root-control")
	}
	e.cmd, err = child.EarlyRelay.Command(child.Launch{Path: set.cfg.Worker, Args: args, Cred: cred, Env: relayEnv(u, id.uid, nil), Fds: fds})
	if err == nil {
		err = child.Start(e.cmd)
	}
	if err != nil {
		if rc != nil {
			rc.abandon()
		}
		return nil, err
	}
	e.pid = e.cmd.Process.Pid
	if rc != nil {
		s.placeRootControl(rc, e.pid)
	}
	s.log.Debug("warm relay waiting", "worker", e.pid, "uid", id.uid)
	return e, nil
}

func (e *warmRelay) closeConns() {
	for _, c := range []*ipc.Conn{e.start, e.report, e.sessions} {
		if c != nil {
			c.Close()
		}
	}
}

// drop ends a relay that will not get a client: its start channel
// closes, so it exits; one that does not is killed. Reaped in the
// background, its root control socket removed.
func (s *Supervisor) drop(e *warmRelay) {
	e.closeConns()
	go func() {
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				e.cmd.Process.Kill()
			}
		}()
		err := child.Wait(e.cmd)
		close(done)
		s.removeRootControl(e.pid)
		s.logSignalled("warm relay", e.pid, err)
	}()
}
