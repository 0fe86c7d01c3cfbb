// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
	"github.com/xpra-proxy/xpra-proxy/supervisor/connlist"
)

// startRelay starts the relay worker as the session's owner: its uid, gid
// and supplementary groups (as initgroups would), a clean environment,
// and only its named descriptors. It takes the warm relay waiting for
// this identity (warm.go), if any, else execs one.
func (s *Supervisor) startRelay(x *exchange, sess *auth.Session, module string, handover, client *os.File) (pid int, err error) {
	env := filterEnv(sess.Env)
	id := relayID{uid: sess.UID, gid: sess.GID}
	var warm *warmRelay // started ahead (warm.go): ours now, used or dropped below
	if len(env) == 0 {
		warm = s.warm.take(x.set, id)
	}
	var u *user.User
	var cred *syscall.Credential
	if warm != nil {
		u, cred = warm.user, warm.cred
	} else if u, cred, err = relayIdentity(sess.UID, sess.GID); err != nil {
		return 0, err
	}
	defer func() {
		if warm != nil && err != nil {
			s.drop(warm)
		}
	}()
	if err := s.userRelays.take(sess.UID, u.Username); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			s.userRelays.release(sess.UID)
		}
	}()
	if err := s.takeShared(sess.UID, u.Username); err != nil {
		return 0, err
	}
	l := launch.Launch{
		Username: u.Username, UID: sess.UID, GID: sess.GID, Home: u.HomeDir,
		Displays: sess.Displays, SessionOptions: sess.SessionOptions, SocketDirs: x.set.cfg.SocketDirs,
		Listener: x.typ, Transport: x.transport, Peer: x.peer, Module: module,
		ServerHelloTimeout: x.set.cfg.ServerHelloTimeout.Duration,
	}
	if t := x.tl.Origin(); !t.IsZero() {
		l.SetupStart = t.UnixNano()
	}
	if x.set.cfg.EncoderSocket != "" {
		// Looked up per relay: the encoder's user may be created after us.
		if eu, err := user.Lookup(x.set.cfg.EncoderUser); err == nil && eu.Uid != "0" {
			l.EncoderSocket = x.set.cfg.EncoderSocket
			l.EncoderUID, _ = strconv.Atoi(eu.Uid)
		} else {
			s.log.Warn("encoder-user not found or root: no re-encoding", "user", x.set.cfg.EncoderUser, "err", err)
		}
	}
	doc, err := launch.Write(l)
	if err != nil {
		return 0, err
	}
	defer doc.Close()
	var r *relayProc
	if warm != nil {
		if err = warm.start.SendRelayFiles(map[string]*os.File{"client": client, "handover": handover, "launch": doc}); err == nil {
			warm.start.Close()
			r = &relayProc{cmd: warm.cmd, report: warm.report, sessions: warm.sessions}
			warm = nil
		} else {
			// It died waiting: exec another, as without one.
			x.log.Warn("warm relay gone; starting another", "worker", warm.pid, "err", err)
			s.drop(warm)
			warm = nil
		}
	}
	if r == nil {
		if r, err = s.execRelay(x, u, cred, relayEnv(u, sess.UID, env), client, handover, doc); err != nil {
			return 0, err
		}
	}
	pid = r.cmd.Process.Pid
	started := time.Now()
	if r.sessions != nil {
		go x.set.starter.serve(r.sessions, startOwner{pid: pid, uid: cred.Uid, user: u.Username, remoteHost: x.remoteHost(), stats: x.s.stats})
	}
	if len(env) == 0 {
		// The next login as this identity finds its relay started.
		s.warm.refillSoon(id)
	}
	s.relays.Add(1)
	s.authenticated.Add(1)
	rec := connlist.Record{Pid: pid, UID: sess.UID, User: u.Username, Source: x.peer, Listener: x.typ, Transport: x.transport}
	if ticks, terr := connlist.StartTicks(pid); terr == nil {
		rec.StartTicks = ticks
	} else {
		// It runs: the registry just cannot tell it from a later pid.
		s.log.Warn("relay start time", "worker", pid, "err", terr)
	}
	s.registry.add(rec)
	s.sharedStarted(pid, u.Username)
	// worker= first: tests and admins grep "relay worker ended" worker=N.
	who := []any{"worker", pid, audit.KeyUser, u.Username, "peer", x.peer, audit.KeySource, source(x.peer), audit.KeyTransport, x.transport}
	s.log.Info("relay worker started", append(who, audit.Event(audit.RelayStarted))...)
	go func() {
		err := child.Wait(r.cmd) // no thread held for the relay's life
		s.registry.remove(pid)
		s.sharedEnded(pid)
		s.removeRootControl(pid)
		s.relays.Add(-1)
		s.userRelays.release(sess.UID)
		s.logSignalled("relay worker", pid, err)
		relayEnded(s.log, s.stats, who, r.report, pid, cred.Uid, time.Since(started), err)
	}()
	return pid, nil
}

// relayProc is a started relay worker and root's ends of its channels.
type relayProc struct {
	cmd      *exec.Cmd
	report   *ipc.Conn // read when it is reaped (audit.go)
	sessions *ipc.Conn // nil without a session starter (ondemand.go)
}

// execRelay execs a relay worker with its descriptors.
func (s *Supervisor) execRelay(x *exchange, u *user.User, cred *syscall.Credential, env []string, client, handover, doc *os.File) (*relayProc, error) {
	r := &relayProc{}
	report, reportEnd, err := ipc.Pair()
	if err != nil {
		return nil, err
	}
	defer reportEnd.Close()
	r.report = report
	args := x.relayArgs()
	fds := map[string]*os.File{"client": client, "handover": handover, "launch": doc, "report": reportEnd}
	if x.set.starter != nil {
		sup, childEnd, err := ipc.Pair()
		if err != nil {
			report.Close()
			return nil, err
		}
		defer childEnd.Close()
		r.sessions = sup
		fds["session"] = childEnd
		args = append(args, "--start-session="+x.set.cfg.StartSession)
	}
	rc := s.bindRootControl()
	if rc != nil {
		fds["rootcontrol"] = rc.file
		args = append(args, "--root-control")
	}
	cmd, err := child.Relay.Command(child.Launch{Path: x.set.cfg.Worker, Args: args, Cred: cred, Env: env, Fds: fds})
	if err == nil {
		err = child.Start(cmd)
	}
	if err != nil {
		report.Close()
		if r.sessions != nil {
			r.sessions.Close()
		}
		if rc != nil {
			rc.abandon()
		}
		return nil, err
	}
	r.cmd = cmd
	if rc != nil {
		s.placeRootControl(rc, cmd.Process.Pid)
	}
	return r, nil
}

// relayArgs are a relay's arguments that do not depend on its session.
func (x *exchange) relayArgs() []string {
	args := []string{"--listener=" + x.typ, "--transport=" + x.transport, "--peer=" + x.peer, "--report"}
	if t := x.tl.Origin(); !t.IsZero() {
		// At debug level: the relay logs its stages from the same origin.
		args = append(args, "--setup-start="+strconv.FormatInt(t.UnixNano(), 10))
	}
	return args
}

// relayIdentity looks up the session owner's account: the relay runs
// with its uid, the session's gid and the account's supplementary groups.
func relayIdentity(uid, gid int) (*user.User, *syscall.Credential, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil, nil, fmt.Errorf("uid %d not found: %w", uid, err)
	}
	groups, err := u.GroupIds()
	if err != nil {
		return nil, nil, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	for _, g := range groups {
		if n, err := strconv.Atoi(g); err == nil && n != 0 {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return u, cred, nil
}

// relayEnv is a relay's environment: the module's env options (filtered)
// and the account's.
func relayEnv(u *user.User, uid int, options []string) []string {
	return append(slices.Clone(options),
		"HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username,
		fmt.Sprintf("XDG_RUNTIME_DIR=/run/user/%d", uid))
}

// relayCount counts each uid's live relays for max-relays-per-user.
type relayCount struct {
	max int // 0: no limit
	mu  sync.Mutex
	n   map[int]int
}

// tooMany is the refusal of a relay over max-relays-per-user; the client
// is told why.
type tooMany struct {
	user  string
	limit int
}

func (e *tooMany) Error() string {
	return fmt.Sprintf("%s has %d connections through the proxy, the most allowed (max-relays-per-user)", e.user, e.limit)
}

// setMax changes the limit (a reload); relays over a lower one live on.
func (c *relayCount) setMax(max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max
}

func (c *relayCount) take(uid int, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.n[uid] >= c.max {
		return &tooMany{user: name, limit: c.max}
	}
	c.n[uid]++
	return nil
}

// count is uid's relays and the limit.
func (c *relayCount) count(uid int) (n, max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[uid], c.max
}

// force counts a relay that exists already, over the limit or not.
func (c *relayCount) force(uid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[uid]++
}

func (c *relayCount) release(uid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[uid]--; c.n[uid] <= 0 {
		delete(c.n, uid)
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// filterEnv keeps the env options a module set, minus what could change
// how the worker program itself runs (the reference applies them
// unfiltered).
func filterEnv(env map[string]string) []string {
	var out []string
	for k, v := range env {
		switch {
		case !envName.MatchString(k), strings.HasPrefix(k, "LD_"), strings.HasPrefix(k, "GO"),
			k == "PATH", k == "HOME", k == "USER", k == "LOGNAME", k == namedfd.EnvVar, strings.ContainsRune(v, 0):
			continue
		}
		out = append(out, k+"="+v)
	}
	return out
}

// saltCache remembers combined salts so an answer is never accepted twice
// (the reference keeps the same kind of replay cache), bounded by evicting
// the oldest. It keeps a 16-byte digest of each salt in a ring rather than
// the salt in a list: a full cache (65,536 logins) costs 3.5 MB of heap
// instead of 12 MB, memory the supervisor's RSS grows by with every login
// and keeps after the load (issue 19's soak).
type saltCache struct {
	mu   sync.Mutex
	max  int
	ring [][16]byte // oldest at next once full
	next int
	seen map[[16]byte]struct{}
}

func newSaltCache(max int) *saltCache {
	return &saltCache{max: max, seen: map[[16]byte]struct{}{}}
}

// add reports false when the salt was seen before. Two salts share a
// digest with probability 2^-128: never in practice.
func (c *saltCache) add(salt string) bool {
	sum := sha256.Sum256([]byte(salt))
	key := [16]byte(sum[:16])
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok {
		return false
	}
	c.seen[key] = struct{}{}
	if len(c.ring) < c.max {
		c.ring = append(c.ring, key)
		return true
	}
	delete(c.seen, c.ring[c.next])
	c.ring[c.next] = key
	c.next = (c.next + 1) % c.max
	return true
}
