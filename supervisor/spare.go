// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
)

// preauthProc is a pre-auth process the supervisor started, with its end
// of their channel.
type preauthProc struct {
	ipc    *ipc.Conn
	pid    int
	cmd    *exec.Cmd
	done   chan struct{} // closed once it has exited and been reaped
	status error         // how it exited, once done is closed
	killed atomic.Bool   // the supervisor killed it (login time over, shutdown)
	niced  bool          // at nice 19, for a busy source (priority.go)
	spare  bool          // started ahead of its connection (the setup timeline says so)
	set    *settings     // it was started with (identity only: a spare of older settings is not used)
	// release gives back its launcher slot (a busy source's process, once
	// it has spoken or ended; priority.go). Never nil.
	release func()
}

func (p *preauthProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends a pre-auth process whatever it is doing.
func (p *preauthProc) kill() {
	if !p.exited() {
		p.killed.Store(true)
		_ = p.cmd.Process.Kill()
	}
}

// abnormalEnd describes how a pre-auth process ended when that was not a
// clean exit of its own: killed by a signal it did not get from us, or a
// non-zero status (2 is the Go runtime's fatal errors, "out of memory"
// under its RLIMIT_DATA among them; after its hand-over the program
// itself exits 0 whatever the client did). "" for a clean end.
func (p *preauthProc) abnormalEnd() string {
	var ee *exec.ExitError
	switch {
	case p.status == nil || p.killed.Load():
		return ""
	case !errors.As(p.status, &ee):
		return p.status.Error()
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Signaled():
			return fmt.Sprintf("killed by signal %v", ws.Signal())
		case ws.ExitStatus() == 2:
			return "exit status 2 (a Go fatal error: out of memory, or a crash)"
		}
	}
	return ee.Error()
}

// startPreauth execs a pre-auth process for a listener of type typ, as
// the unprivileged pre-auth user, with its named descriptors: the channel
// and, on TCP ports, the front document. Its connection comes later,
// over the channel (handOver). rank: how many unauthenticated
// connections its source has (1 for a spare): the start waits for those
// of lower rank, and over normalPerSource the process runs under
// nice 19 (priority.go).
// set: the settings to start it with, held by the caller.
func (s *Supervisor) startPreauth(set *settings, typ string, rank int) (*preauthProc, error) {
	sup, childEnd, err := ipc.Pair()
	if err != nil {
		return nil, err
	}
	fds := map[string]*os.File{"ipc": childEnd}
	if typ == "tcp" {
		fds["front"] = set.front
	}
	cmd, err := child.Preauth.Command(child.Launch{Path: set.preauthProgram(), Cred: s.preauth, Fds: fds,
		Args: []string{"--listener=" + typ,
			fmt.Sprintf("--packet-limit=%d", set.cfg.PreauthPacketLimit),
			fmt.Sprintf("--decompressed-limit=%d", set.cfg.PreauthDecompressedLimit),
			fmt.Sprintf("--login-timeout=%s", set.cfg.LoginTimeout.Duration),
			fmt.Sprintf("--first-packet-timeout=%s", set.cfg.FirstPacketTimeout.Duration),
			fmt.Sprintf("--proxy-protocol-timeout=%s", set.cfg.ProxyProtocolTimeout.Duration)}})
	if err != nil {
		childEnd.Close()
		sup.Close()
		return nil, err
	}
	niced := rank > normalPerSource && s.niceOK.Load()
	var niceErr error
	release := s.launch.run(rank, func() {
		// Nice 19 within its turn: the next start waits for it, so at
		// most one busy source's process runs at the normal priority.
		if err = child.Start(cmd); err == nil && niced {
			niceErr = lowerPriority(cmd.Process.Pid)
		}
	})
	childEnd.Close()
	if err != nil {
		release()
		sup.Close()
		return nil, fmt.Errorf("starting pre-auth process: %w", err)
	}
	p := &preauthProc{ipc: sup, pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{}), niced: niced && niceErr == nil, release: release, set: set}
	if niceErr != nil && s.niceOK.Swap(false) {
		// Without CAP_SYS_NICE: say so once, and from now on run all at
		// the normal priority, as before.
		s.log.Warn("pre-auth processes of busy sources run at the normal priority", "err", niceErr)
	}
	go func() {
		p.status = child.Wait(cmd) // no thread held while it runs
		s.logSignalled("pre-auth process", p.pid, p.status)
		close(p.done)
	}()
	return p, nil
}

// spares keeps one pre-auth process started ahead of the next connection
// per listener type, so that a client does not wait for exec and the Go
// runtime's start-up. A spare holds no connection: it waits on its
// channel, unprivileged and confined like any pre-auth process, and is
// not counted by the limits until it is handed a connection.
type spares struct {
	s        *Supervisor
	mu       sync.Mutex
	ready    map[string]*preauthProc // by listener type
	starting map[string]bool
	closed   bool
}

func newSpares(s *Supervisor) *spares {
	return &spares{s: s, ready: map[string]*preauthProc{}, starting: map[string]bool{}}
}

// take returns the spare for typ, or a process started now when there is
// none (a burst of connections, or the spare has died), or when the spare
// was started with other settings than set, the connection's (a reload
// came in between). The caller starts the next spare after the hand-over
// (refillSoon), not at once: that would compete with this connection for
// the CPU. A busy source (rank over normalPerSource) never gets the spare:
// it gets a process started in its turn, at nice 19, and the spare stays
// ready for a connection from another source.
func (sp *spares) take(set *settings, typ string, rank int) (*preauthProc, error) {
	if rank > normalPerSource {
		return sp.s.startPreauth(set, typ, rank)
	}
	sp.mu.Lock()
	p := sp.ready[typ]
	delete(sp.ready, typ)
	sp.mu.Unlock()
	if p != nil && !p.exited() && p.set == set {
		return p, nil
	}
	if p != nil {
		p.ipc.Close() // it exits when its channel closes
	}
	return sp.s.startPreauth(set, typ, rank)
}

// refillDelay is how long after a hand-over the next spare starts: its
// exec and runtime start-up would otherwise compete for the CPU with the
// connection just handed over, whose relay worker is starting then (on two
// cores that cost the new connection about what the spare saved it). A
// connection that comes sooner gets a process started for it, as before
// spares.
const refillDelay = 250 * time.Millisecond

// refillSoon starts the next spare for typ after refillDelay.
func (sp *spares) refillSoon(typ string) {
	time.AfterFunc(refillDelay, func() { sp.refill(typ) })
}

// refill starts a spare for typ in the background unless one is ready
// or on its way. One started while a reload came is replaced at once.
func (sp *spares) refill(typ string) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed || sp.starting[typ] || sp.ready[typ] != nil {
		return
	}
	sp.starting[typ] = true
	go func() {
		for {
			set := sp.s.settings()
			p, err := sp.s.startPreauth(set, typ, 1)
			sp.s.done(set)
			sp.mu.Lock()
			switch {
			case err != nil:
				sp.s.log.Error("starting a spare pre-auth process", "listener", typ, "err", err)
			case sp.closed:
				p.ipc.Close() // it exits when its channel closes
			case p.set != sp.s.current():
				sp.mu.Unlock()
				p.ipc.Close()
				continue
			default:
				p.spare = true
				sp.ready[typ] = p
			}
			sp.starting[typ] = false
			sp.mu.Unlock()
			return
		}
	}()
}

// renew replaces the spares after a reload: they were started with the
// old TLS key pair, limits and timeouts.
func (sp *spares) renew() {
	sp.mu.Lock()
	var types []string
	for typ, p := range sp.ready {
		p.ipc.Close()
		delete(sp.ready, typ)
		types = append(types, typ)
	}
	sp.mu.Unlock()
	for _, typ := range types {
		sp.refill(typ)
	}
}

// close lets the spares go: each exits when its channel closes.
func (sp *spares) close() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.closed = true
	for typ, p := range sp.ready {
		p.ipc.Close()
		delete(sp.ready, typ)
	}
}
