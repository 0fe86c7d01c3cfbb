// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"sync"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
)

// Early relays. Between the challenge and its answer a client spends a
// round trip (about 6 ms for xpra's Python client), and after the verdict
// the relay's exec and Go start-up cost about 12 ms more before it can
// say hello to the server (BENCHMARKS.md, issue 17). So when a username
// was granted an identity before, root execs the relay as that identity
// while the client answers, and hands it the connection only once the
// password is proven; if the verdict grants another identity, or none,
// the waiting process is ended and nothing was given to it.
//
// What an unauthenticated client can cause: one waiting process per
// connection in pre-auth (so within max-startups and the per-source
// limits), as a user who logged in through this proxy before, holding no
// descriptor of the client's, ended with the login.

// grantedIDs remembers the identity each login name was last granted,
// by transport (the modules differ by transport). Bounded: a full table
// forgets an arbitrary entry, which only costs that user an early start.
type grantedIDs struct {
	mu  sync.Mutex
	max int
	m   map[string]grantedID
}

type grantedID struct{ uid, gid int }

const maxGrantedIDs = 4096

func grantedKey(transport, username string) string { return transport + "\x00" + username }

func (g *grantedIDs) get(transport, username string) (grantedID, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id, ok := g.m[grantedKey(transport, username)]
	return id, ok
}

func (g *grantedIDs) put(transport, username string, id grantedID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]grantedID{}
	}
	k := grantedKey(transport, username)
	if _, ok := g.m[k]; !ok && len(g.m) >= g.max {
		for old := range g.m {
			delete(g.m, old)
			break
		}
	}
	g.m[k] = id
}

// earlyRelay is a relay worker waiting for its client.
type earlyRelay struct {
	id       grantedID
	user     *user.User
	cred     *syscall.Credential
	cmd      *exec.Cmd
	pid      int
	start    *ipc.Conn // root's end of "start"
	report   *ipc.Conn // root's end of "report"
	sessions *ipc.Conn // root's end of "session" (nil without a session starter)
}

// startEarly execs, in the background, a relay for x's user as the
// identity that login name was last granted. The channel gives it (nil:
// the exec failed, logged; the relay is then exec'd after the verdict as
// usual); nil channel: no identity known.
func (s *Supervisor) startEarly(x *exchange) <-chan *earlyRelay {
	id, ok := s.granted.get(x.transport, x.username)
	if !ok || id.uid == 0 || id.gid == 0 {
		return nil
	}
	ch := make(chan *earlyRelay, 1)
	go func() {
		e, err := s.execEarly(x, id)
		if err != nil {
			x.log.Warn("early relay", "err", err)
		}
		ch <- e
	}()
	return ch
}

// takeEarly waits for x's early relay, if one is being started; the
// caller then owns it (nil: none).
func (x *exchange) takeEarly() *earlyRelay {
	if x.early == nil {
		return nil
	}
	e := <-x.early
	x.early = nil
	return e
}

func (s *Supervisor) execEarly(x *exchange, id grantedID) (_ *earlyRelay, err error) {
	u, cred, err := relayIdentity(id.uid, id.gid)
	if err != nil {
		return nil, err
	}
	e := &earlyRelay{id: id, user: u, cred: cred}
	var toClose []interface{ Close() error }
	defer func() {
		for _, c := range toClose {
			c.Close()
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
	args := x.relayArgs()
	fds := map[string]*os.File{"start": startEnd, "report": reportEnd}
	if x.set.starter != nil {
		var childEnd *os.File
		if e.sessions, childEnd, err = ipc.Pair(); err != nil {
			return nil, err
		}
		toClose = append(toClose, childEnd)
		fds["session"] = childEnd
		args = append(args, "--start-session="+x.set.cfg.StartSession)
	}
	rc := s.bindRootControl()
	if rc != nil {
		fds["rootcontrol"] = rc.file
		args = append(args, "--root-control")
	}
	e.cmd, err = child.EarlyRelay.Command(child.Launch{Path: x.set.cfg.Worker, Args: args, Cred: cred, Env: relayEnv(u, id.uid, nil), Fds: fds})
	if err == nil {
		err = child.Start(e.cmd)
	}
	if err != nil {
		if rc != nil {
			rc.abandon()
		}
		return nil, fmt.Errorf("exec as uid %d: %w", id.uid, err)
	}
	e.pid = e.cmd.Process.Pid
	if rc != nil {
		s.placeRootControl(rc, e.pid)
	}
	x.tl.Mark("early_exec")
	x.log.Debug("early relay waiting", "worker", e.pid, "uid", id.uid)
	return e, nil
}

func (e *earlyRelay) closeConns() {
	for _, c := range []*ipc.Conn{e.start, e.report, e.sessions} {
		if c != nil {
			c.Close()
		}
	}
}

// fits says whether the verdict granted the identity e runs as, with
// nothing that must be set at exec (env options).
func (e *earlyRelay) fits(uid, gid int, env []string) bool {
	return e.id.uid == uid && e.id.gid == gid && len(env) == 0
}

// drop ends a relay that will not get a client: its start channel
// closes, so it exits; one that does not is killed. Reaped in the
// background, its root control socket removed.
func (s *Supervisor) drop(e *earlyRelay) {
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
		s.logSignalled("early relay", e.pid, err)
	}()
}
