// SPDX-License-Identifier: GPL-2.0-or-later

// Package supervisor is the root process of xpra-proxy. It accepts
// connections, starts an unprivileged pre-auth process for each, checks
// the answers to password challenges with the stored secrets, and starts
// the relay worker as the session's owner. It never reads a byte a client
// sent: the client socket only passes through it to the children
// (ARCHITECTURE.md; cmd/xpra-proxy's TestDeps keeps protocol parsers out).
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/child"
	"github.com/xpra-proxy/xpra-proxy/internal/timeline"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/peercred"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/stats"
	"github.com/xpra-proxy/xpra-proxy/supervisor/account"
	"github.com/xpra-proxy/xpra-proxy/supervisor/audit"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
	"github.com/xpra-proxy/xpra-proxy/threadtrim"
)

// Supervisor serves the listeners.
type Supervisor struct {
	// cfg is the configuration at start-up: what only a restart changes
	// (the restartOnly keys) is read here; the rest from settings().
	cfg Config
	log *slog.Logger
	// set is what a reload replaces (reload.go); settings() and done()
	// count its users.
	setMu     sync.Mutex
	set       *settings
	reloadMu  sync.Mutex             // one reload at a time
	reloadErr atomic.Pointer[error]  // the last reload's, nil once one works
	reloads   <-chan os.Signal       // SIGHUP: Serve reloads (HandleReloads)
	load      func() (Config, error) // reads the configuration again
	displays  *displayBook           // sessions being started, across reloads
	// userRelays counts live relays per uid (max-relays-per-user).
	userRelays relayCount
	// warm: relays started ahead of their logins, per identity (warm.go).
	warm       *warmRelays
	registry   *registry // the relays started, for xpra-proxy list and the next supervisor
	rootCtlDir string    // where each relay's root-only :proxy-PID goes (rootctl.go); "" for none
	preauth    *syscall.Credential
	control    *syscall.Credential // the control process's: its own user, else preauth's
	limits     *limits.Limiter     // bounds unauthenticated work: sshd's MaxStartups, per source, penalties
	quiet      *limits.Throttle    // of the refused-connection log lines
	notes      chan struct{}       // slots for telling penalised clients why (refuseWithNote)
	wg         sync.WaitGroup
	salts      *saltCache
	spares     *spares // pre-auth processes started ahead of their connections
	// niceOK: the pre-auth processes of a source's further connections
	// run at nice 19 (priority.go); false once that failed.
	niceOK atomic.Bool
	launch *launcher // starts pre-auth processes, new sources first

	relays        atomic.Int64 // relay workers running now
	authenticated atomic.Int64 // connections authenticated since start
	accepted      atomic.Int64 // connections accepted since start (the thread trimmer's idleness)
	stats         *stats.Stats // for Prometheus (metrics.go)
	// dir is the directory shared with other proxies (PostgreSQL), nil
	// when this proxy keeps users, penalties and sessions to itself.
	dir *pgdir.DB
	// shared: penalties and relay counts shared through dir
	// (sharedlimits.go).
	shared sharedLimits
}

// New checks the configuration, builds the auth modules and opens the
// registry of relays (adopting those a previous supervisor left).
func New(cfg Config, log *slog.Logger) (*Supervisor, error) {
	s, err := prepare(cfg, log)
	if err != nil {
		return nil, err
	}
	s.rootCtlDir = rootControlDir(cfg)
	if s.registry, err = newRegistry(cfg.RunDir, log, s.adopt); err != nil {
		return nil, err
	}
	if n, err := sweepRootControl(s.rootCtlDir); err != nil {
		log.Warn("sweeping root control sockets", "err", err)
	} else if n > 0 {
		log.Info("removed root control sockets of ended relays", "dir", s.rootCtlDir, "removed", n)
	}
	return s, nil
}

// Check is --check-config: everything New checks (auth modules and their
// files, users, programs, session settings) and the TLS key pair, without
// touching the run directory or any listener. A reload checks the same.
func Check(cfg Config, log *slog.Logger) error {
	s, err := prepare(cfg, log)
	if err != nil {
		return err
	}
	s.set.close(log)
	if err := checkFiles(cfg); err != nil {
		return err
	}
	if _, err := user.Lookup(cfg.PreauthUser); err != nil {
		log.Warn("pre-auth user missing: pre-auth processes will run as nobody", "preauth_user", cfg.PreauthUser)
	}
	return nil
}

// checkFiles is what --check-config and a reload check beyond what the
// start-up does: the encoder's user. (The TLS key pair is checked where
// buildSettings reads it, once.)
func checkFiles(cfg Config) error {
	if cfg.EncoderSocket != "" {
		if _, err := user.Lookup(cfg.EncoderUser); err != nil {
			return fmt.Errorf("encoder-user %q: %w", cfg.EncoderUser, err)
		}
	}
	return nil
}

func prepare(cfg Config, log *slog.Logger) (*Supervisor, error) {
	s := &Supervisor{cfg: cfg, log: log, displays: newDisplayBook(),
		salts: newSaltCache(1 << 16), quiet: limits.NewThrottle(time.Second, 10, nil),
		notes: make(chan struct{}, noteSlots), stats: stats.New(time.Now())}
	s.spares = newSpares(s)
	s.userRelays = relayCount{max: cfg.MaxRelaysPerUser, n: map[int]int{}}
	s.warm = newWarmRelays(s)
	lim, err := limits.New(cfg.Limits(), nil, nil)
	if err != nil {
		return nil, err
	}
	s.limits = lim
	s.niceOK.Store(true)
	s.launch = newLauncher(2*runtime.NumCPU(), busyHold)
	cred, err := preauthCredential(cfg.PreauthUser)
	if err != nil {
		return nil, err
	}
	s.preauth = cred
	if s.control, err = controlCredential(cfg.ControlUser, cred, log); err != nil {
		return nil, err
	}
	if s.dir, err = openDirectory(cfg, log); err != nil {
		return nil, err
	}
	s.newShared()
	if s.set, err = buildSettings(cfg, log, s.displays, s.dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.controlProgram()); err != nil && cfg.ControlSocket != "off" {
		s.set.close(log)
		return nil, fmt.Errorf("control program: %w", err)
	}
	if _, err := os.Stat(s.metricsProgram()); err != nil && cfg.MetricsBind != "" {
		s.set.close(log)
		return nil, fmt.Errorf("metrics-bind: the metrics program: %w", err)
	}
	return s, nil
}

// preauthCredential is the unprivileged identity of pre-auth processes:
// the dedicated user, else nobody.
func preauthCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		u, err = user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("pre-auth user: neither %q nor nobody exists", name)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("pre-auth user %s must not be root", u.Username)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// controlCredential is the control process's identity: a user of its
// own, so that a compromised pre-auth process (whose uid could otherwise
// signal, trace or impersonate it) cannot drive the :proxy socket; run
// by hand without that user, the pre-auth user's, with a warning.
func controlCredential(name string, preauth *syscall.Credential, log *slog.Logger) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		log.Warn("control user missing: the control process shares the pre-auth processes' uid, so a compromised pre-auth process could reach it",
			"control_user", name, "shared_uid", preauth.Uid, "err", err)
		return preauth, nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("control user %s must not be root", u.Username)
	}
	if uint32(uid) == preauth.Uid {
		log.Warn("control user is the pre-auth user: a compromised pre-auth process could reach the control process",
			"control_user", name, "shared_uid", uid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// Serve accepts connections until ctx ends, then waits for the connections
// still in pre-auth (relay workers live on by themselves).
func (s *Supervisor) Serve(ctx context.Context, ls []Listener) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	control, controlPath, err := s.openControl()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	ls = slices.DeleteFunc(slices.Clone(ls), func(l Listener) bool {
		if l.Type == MetricsType {
			wg.Go(func() { s.serveMetrics(ctx, l.Listener) })
			return true
		}
		return false
	})
	// The child starter's locked thread (and the runtime's template
	// thread its lock starts) belong to the baseline, not to a load.
	child.StartHere()
	for _, l := range ls {
		s.log.Info("listening", "type", l.Type, "addr", l.Addr().String())
		s.spares.refill(l.Type)
		wg.Go(func() { s.accept(ctx, l) })
	}
	if base, err := threadtrim.Count(); err != nil {
		s.log.Warn("idle threads will not be given back", "err", err)
	} else {
		wg.Go(func() { threadtrim.Run(ctx, threadtrim.Options{Base: base, Busy: s.busySince(), Log: s.log}) })
	}
	if control != nil {
		wg.Go(func() { s.serveControl(ctx, stop, control, controlPath) })
	}
	if err := notifyReady(); err != nil {
		s.log.Warn("telling systemd", "err", err)
	}
	wg.Go(func() { s.reportStatus(ctx) })
	if s.dir != nil {
		wg.Go(func() { s.dir.Watch(ctx) })
		s.runShared(ctx, &wg)
	}
	if s.current().starter != nil {
		wg.Go(func() { s.watchSessions(ctx) }) // session-ended records
	}
	if s.reloads != nil {
		// Only now: until READY=1, a reload's READY=1 would tell systemd
		// the start-up is over.
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-s.reloads:
					_ = s.Reload(s.load) // Reload logs the outcome
				}
			}
		})
	}
	<-ctx.Done()
	_ = notifyStopping()
	for _, l := range ls {
		l.Close()
	}
	s.spares.close()
	s.warm.clear(true)
	wg.Wait()
	s.wg.Wait()
	return nil
}

// HandleReloads makes Serve reload the configuration (Reload, with load)
// on each signal from reloads, e.g. SIGHUP. Call it before Serve; the
// caller should have called signal.Notify early, so that a SIGHUP during
// start-up does not end the process.
func (s *Supervisor) HandleReloads(reloads <-chan os.Signal, load func() (Config, error)) {
	s.reloads, s.load = reloads, load
}

func (s *Supervisor) accept(ctx context.Context, l Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "type", l.Type, "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		s.accepted.Add(1)
		src := s.sourceOf(c)
		proxied := src.Addr.IsValid() && trustedProxy(s.current().proxyFrom, src.Addr)
		if proxied {
			// A trusted load balancer: the connection's source is the
			// client its PROXY header names, which only the pre-auth
			// process reads. Until then it counts toward the global cap
			// only; the exchange applies the source's own limits
			// (exchange.proxyHeader). The balancer's address is never
			// limited or penalised as a source.
			src = limits.Source{}
		}
		release, rank, err := s.limits.AdmitRanked(src)
		if err != nil {
			s.stats.Connection(l.Type, refusedResult(err))
			s.refuse(c, l.Type, err)
			continue
		}
		s.wg.Go(func() {
			defer release()
			s.handle(ctx, c, l.Type, rank, proxied)
		})
	}
}

// sourceOf is who a new connection is from for the limits: a TCP peer's
// address, or a unix peer's uid from the kernel. A unix peer whose
// credentials cannot be read counts toward the global cap only.
func (s *Supervisor) sourceOf(c net.Conn) limits.Source {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return limits.Source{Addr: a.AddrPort().Addr()}
	}
	if _, ok := c.(*net.UnixConn); ok {
		cred, err := peercred.Of(c)
		if err == nil {
			return limits.Source{Local: true, UID: cred.Uid}
		}
		s.log.Warn("unix peer without credentials: counted toward max-startups only", "err", err)
	}
	return limits.Source{}
}

// refuse closes a connection the limits turned away, before anything is
// started for it, and logs it: at most 10 lines a second, so that a flood
// does not flood the journal too.
func (s *Supervisor) refuse(c net.Conn, typ string, err error) {
	peer := c.RemoteAddr().String()
	if typ == "unix" {
		peer = "unix:" + c.LocalAddr().String()
	}
	if !s.refuseWithNote(c, err) {
		c.Close()
	}
	ok, more := s.quiet.Allow()
	if !ok {
		return
	}
	args := []any{"peer", peer, "listener", typ, "err", err}
	if more > 0 {
		args = append(args, "refused_unlogged", more)
	}
	s.log.Warn("connection refused", args...)
}

// fileOf returns a duplicate descriptor of a connection to pass to a child.
func fileOf(c net.Conn) (*os.File, error) {
	fc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("cannot pass a %T", c)
	}
	return fc.File()
}

// handle runs one connection's pre-auth exchange. rank: how many
// unauthenticated connections its source has, this one included; with
// others, its pre-auth process starts after other sources' and runs
// at nice 19 until it has authenticated (priority.go). proxied: the TCP
// peer is a trusted load balancer whose PROXY header comes first.
func (s *Supervisor) handle(ctx context.Context, c net.Conn, typ string, rank int, proxied bool) {
	defer c.Close()
	accepted := time.Now()
	tl := timeline.New(s.log, accepted) // nil unless at debug level
	tl.Mark("accept")
	peer := c.RemoteAddr().String()
	if typ == "unix" {
		peer = "unix:" + c.LocalAddr().String()
	}
	log := s.log.With("peer", peer, "listener", typ)
	client, err := fileOf(c)
	if err != nil {
		log.Error("connection", "err", err)
		return
	}
	defer client.Close()
	// The settings of this moment judge the whole exchange, whatever a
	// reload does meanwhile.
	set := s.settings()
	defer s.done(set)
	p, err := s.handOver(set, typ, peer, client, rank, proxied)
	if err != nil {
		log.Error("pre-auth process", "err", err)
		return
	}
	defer p.ipc.Close()
	tl.Mark("handover")
	log = log.With("preauth", p.pid)
	done := make(chan struct{})
	defer close(done)
	go func() {
		// The login timeout bounds the whole exchange, whatever the child
		// does; it runs from the hand-over, not from the spare's start.
		select {
		case <-time.After(set.cfg.LoginTimeout.Duration + 5*time.Second):
			log.Warn("pre-auth process over its time; killing it")
			p.kill()
		case <-ctx.Done():
			// Stopping (a restart): an exchange under way, such as a
			// version request or a login, gets a moment to finish rather
			// than a reset connection.
			select {
			case <-time.After(shutdownGrace):
				p.kill()
			case <-done:
			}
		case <-done:
		}
	}()
	var once sync.Once
	spoke := func() {
		// Its first message (AuthBegin: a hello parsed) ends what a
		// flood costs: from then on a busy source's process runs at the
		// normal priority, so that a real client behind a busy source
		// (a browser's parallel connections, a NAT) waits for its
		// password check, relay or TLS transport no longer than others.
		once.Do(func() {
			p.release()
			if p.niced {
				if err := normalPriority(p.pid); err != nil && !errors.Is(err, syscall.ESRCH) {
					log.Warn("the pre-auth process stays at a low priority", "err", err)
				}
			}
		})
	}
	x := exchange{s: s, set: set, log: log, ipc: p.ipc, pid: p.pid, typ: typ, peer: peer, client: client, spoke: spoke, proxied: proxied, tl: tl}
	defer func() {
		if x.releaseSource != nil {
			x.releaseSource() // with the accept's slot, which the caller releases
		}
	}()
	x.run()
	tlog := x.log
	if x.proxied && x.via == "" {
		// No PROXY header was taken (a health check, a dial that closed):
		// the balancer's address is not a client's, so not a peer= either.
		tlog = s.log.With("via", peer, "listener", typ)
	}
	tl.Log(tlog, slog.LevelDebug, "setup timeline", "worker", x.accepted, "spare", p.spare, "result", x.result())
	// The client's address once a PROXY header named it. A new variable:
	// the timeout goroutine above still reads log.
	xlog := x.log
	s.count(&x, accepted)
	p.release()
	if x.terminating {
		// The pre-auth process now terminates TLS or WebSocket for the
		// relay: it is no longer unauthenticated, so its slot and login
		// timer go, and it lives as long as the connection (at the
		// normal priority since its first message).
		go func() {
			<-p.done
			xlog.Debug("transport process ended", "status", p.status)
		}()
		return
	}
	<-p.done
	s.reaped(p, &x, xlog)
}

// reaped judges how a pre-auth process that was handed a connection
// ended. One that died abnormally (a signal, Go's "out of memory" or
// another fatal error) before the supervisor gave a verdict counts as a
// failed login for its source, as a wrong password would: a client that
// can crash or exhaust its pre-auth process must not do so at the rate
// of its connections.
func (s *Supervisor) reaped(p *preauthProc, x *exchange, log *slog.Logger) {
	cause := p.abnormalEnd()
	switch {
	case x.accepted != 0 || x.verdict:
		if p.status != nil {
			log.Debug("pre-auth process ended", "err", p.status)
		}
	case cause != "" && x.proxied && x.via == "":
		// Before its PROXY header named a client: the balancer itself is
		// never penalised (it would bar every client behind it).
		log.Warn("pre-auth process died before the PROXY protocol header was read", "cause", cause)
	case cause != "":
		log.Warn("pre-auth process died before a verdict: counted as a failed login", "cause", cause)
		s.penalize(log, peerAddr(x.peer))
	case p.status != nil:
		log.Debug("pre-auth process ended", "err", p.status)
	}
}

// handOver gives the accepted connection to a pre-auth process: the
// spare for its listener type, or one started now (always for a busy
// source, rank over normalPerSource: the spare is kept for other
// sources). A spare that died while it waited is replaced once.
func (s *Supervisor) handOver(set *settings, typ, peer string, client *os.File, rank int, proxied bool) (*preauthProc, error) {
	m := ipc.Message{Kind: ipc.Connection, Peer: peer, Proxied: proxied}
	p, err := s.spares.take(set, typ, rank)
	if err != nil {
		return nil, err
	}
	if err = p.ipc.Send(m, client); err == nil {
		s.spares.refillSoon(typ)
		return p, nil
	}
	p.ipc.Close()
	p.kill()
	s.log.Warn("spare pre-auth process gone; starting another", "preauth", p.pid, "err", err)
	if p, err = s.startPreauth(set, typ, rank); err != nil {
		return nil, err
	}
	if err := p.ipc.Send(m, client); err != nil {
		p.ipc.Close()
		p.kill()
		return nil, err
	}
	s.spares.refillSoon(typ)
	return p, nil
}

// shutdownGrace is how long a stopping supervisor lets connections in
// pre-auth finish before it kills their processes.
const shutdownGrace = 5 * time.Second

// exchange is one connection's conversation with its pre-auth process.
type exchange struct {
	s    *Supervisor
	set  *settings // as the exchange began
	log  *slog.Logger
	ipc  *ipc.Conn
	pid  int
	typ  string // listener type
	peer string
	// transport is what arrived, as the pre-auth process found it: it
	// picks the auth modules; "ssl", "ws" and "wss" are terminated by the
	// pre-auth process, which then stays as the connection's transport.
	transport   string
	terminating bool
	spoke       func() // called on the first message (or the end of the channel)
	client      *os.File
	username    string
	module      auth.Module // the one that asked for a password
	salt        []byte      // single use
	digest      string
	saltDig     string
	accepted    int
	verdict     bool   // Denied was sent
	denied      string // its reason
	grantedBy   string // the module that granted the session
	// proxied: the TCP peer is a trusted load balancer; once its PROXY
	// header is taken, via is the balancer's "host:port" and peer the
	// client's, as the header claims it.
	proxied       bool
	via           string
	releaseSource func() // the claimed source's slot (limits.AdmitProxied)
	refused       string // a stats result: the claimed source was refused
	// tl: the setup's stages, for the debug line (nil: not at debug).
	tl *timeline.Timeline
}

func (x *exchange) recv() (ipc.Message, *os.File, error) {
	m, f, peer, err := x.ipc.Recv()
	if err == nil && x.spoke != nil {
		x.spoke()
	}
	if err != nil {
		return m, nil, err
	}
	// The pair is ours, but check the sender is the child we started, as
	// its own uid, before trusting a word of it.
	if !peer.Known || int(peer.Pid) != x.pid || peer.UID != x.s.preauth.Uid {
		if f != nil {
			f.Close()
		}
		return m, nil, fmt.Errorf("message from pid %d uid %d, expected pid %d uid %d", peer.Pid, peer.UID, x.pid, x.s.preauth.Uid)
	}
	return m, f, nil
}

func (x *exchange) deny(reason string, details ...string) {
	x.verdict, x.denied = true, reason
	if err := x.ipc.Send(ipc.Message{Kind: ipc.Denied, Reason: reason, Details: details}, nil); err != nil {
		x.log.Debug("telling pre-auth", "err", err)
	}
}

func (x *exchange) run() {
	if x.proxied && !x.proxyHeader() {
		return
	}
	m, f, err := x.recv()
	if err != nil {
		if !errors.Is(err, ipc.ErrClosed) {
			x.log.Warn("pre-auth", "err", err)
		}
		return // version requests and bad clients end here
	}
	if f != nil {
		// Nothing comes with an AuthBegin; left open, root would hold
		// whatever a compromised pre-auth process sent until a GC.
		f.Close()
		x.log.Warn("pre-auth protocol", "got", m.Kind+" with a descriptor", "want", ipc.AuthBegin)
		return
	}
	if m.Kind != ipc.AuthBegin {
		x.log.Warn("pre-auth protocol", "got", m.Kind, "want", ipc.AuthBegin)
		return
	}
	x.tl.Mark("hello")
	if err := account.ValidUsername(m.Username); err != nil {
		// Before any module looks it up: cgo's getpwnam would read
		// "alice\x00junk" as alice. The client is told what a wrong
		// password gets.
		x.loginFailed("authentication refused", m.Username, "", err)
		x.deny("authentication failed")
		return
	}
	x.username = m.Username
	if x.transport, err = checkTransport(x.typ, m.Transport, x.set.cfg.FrontConfig.tlsCarries); err != nil {
		x.log.Warn("pre-auth protocol", "err", err)
		return
	}
	x.log = x.log.With("transport", x.transport)
	modules := x.set.modules[x.transport]
	if len(modules) == 0 {
		// As the reference: a proxy without authentication serves nobody.
		x.log.Error("no authentication module configured for this listener; use none to disable authentication")
		x.deny("session not found error", "no sessions found")
		return
	}
	for _, mod := range modules {
		if mod.NeedsChallenge() {
			x.module = mod
		}
	}
	if x.module == nil {
		x.reply(ipc.Message{Kind: ipc.NoChallenge})
	} else {
		order := []string{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5", digest.HMAC}
		digests, need := order, "an hmac digest"
		if pm, ok := x.module.(auth.PlainPassword); ok {
			// PAM needs the password itself: only xor carries it, and
			// only encryption protects it.
			if err := pm.CheckTransport(x.confidential()); err != nil {
				x.loginFailed("authentication refused", x.username, pm.Name(), err)
				x.deny("authentication failed", refusalDetails(err)...)
				return
			}
			digests, need = []string{digest.XOR}, "the xor digest"
		}
		if x.digest, err = digest.ChooseDigest(m.Digests, digests); err != nil {
			x.deny("authentication failed", "cannot proceed without "+need)
			return
		}
		if x.saltDig, err = digest.ChooseDigest(m.SaltDigests, order[:6]); err != nil {
			x.deny("authentication failed", "insecure salt digest rejected")
			return
		}
		x.salt = digest.NewServerSalt()
		prompt := "password"
		x.reply(ipc.Message{Kind: ipc.Challenge, Salt: x.salt, Digest: x.digest, SaltDigest: x.saltDig, Prompt: prompt})
	}
	x.tl.Mark("challenge")
	m, handover, err := x.recv()
	if err != nil {
		if !errors.Is(err, ipc.ErrClosed) {
			x.log.Warn("pre-auth", "err", err)
		}
		return
	}
	if handover != nil {
		defer handover.Close()
	}
	if m.Kind != ipc.AuthVerify || handover == nil || !launch.IsMemfd(handover) {
		x.log.Warn("pre-auth protocol", "got", m.Kind, "want", ipc.AuthVerify+" with a memfd")
		return
	}
	x.tl.Mark("answer")
	// Penalties count answers to a challenge: a source barred after this
	// connection started gets no guess, and only a proven password clears
	// the source.
	src := peerAddr(x.peer) // invalid for unix peers: exempt
	if x.module != nil {
		if err := x.s.limits.Check(src); err != nil {
			x.loginFailed("login refused", x.username, "", err)
			var r *limits.Refusal
			if errors.As(err, &r) && r.Reason == limits.ReasonPenalty {
				// The same words as refuseWithNote's line, in a packet.
				x.deny("authentication failed", strings.TrimSuffix(strings.TrimPrefix(penaltyNote(r.Until, time.Now()), "disconnect: "), "\n"))
				return
			}
			x.deny("authentication failed")
			return
		}
	}
	sess, module, err := x.authenticate(m)
	x.tl.Mark("verdict")
	if err != nil {
		x.loginFailed("authentication failed", x.username, moduleName(x.module), err)
		var te *targetError
		if errors.As(err, &te) {
			x.deny(te.reason, te.detail)
		} else {
			// A refusal because the shared directory is down (and no
			// fallback decided) is our outage, not a wrong guess.
			if x.module != nil && !errors.Is(err, pgdir.ErrUnavailable) {
				x.s.penalize(x.log, src)
			}
			x.deny("authentication failed", refusalDetails(err)...)
		}
		return
	}
	client, stream := x.client, (*os.File)(nil)
	if x.transport != x.typ {
		// TLS and WebSocket stay with the pre-auth process: the relay gets
		// one end of a stream socketpair carrying the plain xpra stream.
		var err error
		if client, stream, err = streamPair(); err != nil {
			x.log.Error("stream socketpair", "err", err)
			x.deny("server error", "failed to start the proxy instance")
			return
		}
		defer client.Close()
		defer stream.Close()
	}
	if sess.Displays == nil && x.set.router != nil {
		// A front of session hosts: the user's sessions are there.
		if sess, err = x.route(sess); err != nil {
			x.log.Error("routing to a session host", "err", err)
			x.deny("server error", "failed to start the proxy instance")
			return
		}
	}
	pid, err := x.s.startRelay(x, sess, module, handover, client)
	x.tl.Mark("relay_exec")
	var many *tooMany
	if errors.As(err, &many) {
		x.log.Warn("relay refused", "username", x.username, "err", err)
		x.deny("too many connections", err.Error())
		return
	}
	if err != nil {
		x.log.Error("starting relay worker", "err", err)
		x.deny("server error", "failed to start the proxy instance")
		return
	}
	x.accepted = pid
	x.grantedBy = module
	if x.module != nil {
		x.s.limits.Succeeded(src)
		x.s.shareSuccess(src)
	}
	x.log.Info("authenticated", audit.Event(audit.LoginSucceeded), audit.KeyUser, x.username, audit.KeySource, source(x.peer),
		audit.KeyModule, module, "uid", sess.UID, "worker", pid)
	if err := x.ipc.Send(ipc.Message{Kind: ipc.Accepted, Worker: pid}, stream); err != nil {
		x.log.Warn("replying to pre-auth", "err", err)
		return
	}
	x.tl.Mark("accepted_sent")
	x.terminating = stream != nil
}

// proxyHeader takes the source a trusted load balancer's PROXY header
// claims, as the pre-auth process parsed it, and applies that source's
// own limits and penalties (the balancer's connection counted toward the
// global cap only). From then on the claimed address is the connection's
// peer: for penalties, PAM_RHOST, logs, audit records and xpra-proxy
// list. false: the exchange is over (the pre-auth process refused the
// header and ends the connection, or the source was refused here).
func (x *exchange) proxyHeader() bool {
	m, f, peer, err := x.ipc.Recv()
	if err != nil {
		if !errors.Is(err, ipc.ErrClosed) {
			x.log.Warn("pre-auth", "err", err)
		}
		return false // the pre-auth process logged why it refused the header
	}
	if f != nil {
		f.Close()
	}
	if !peer.Known || int(peer.Pid) != x.pid || peer.UID != x.s.preauth.Uid {
		x.log.Warn("pre-auth", "err", fmt.Errorf("message from pid %d uid %d, expected pid %d uid %d", peer.Pid, peer.UID, x.pid, x.s.preauth.Uid))
		return false
	}
	if f != nil || m.Kind != ipc.ProxyHeader {
		x.log.Warn("pre-auth protocol", "got", m.Kind, "want", ipc.ProxyHeader)
		return false
	}
	ap, err := netip.ParseAddrPort(m.Peer)
	if err != nil || ap.Addr().Zone() != "" {
		x.log.Warn("pre-auth protocol", "err", fmt.Errorf("PROXY header source %q: %w", m.Peer, err))
		return false
	}
	claimed := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	release, _, err := x.s.limits.AdmitProxied(ap.Addr())
	if err != nil {
		x.refused = refusedResult(err)
		if ok, more := x.s.quiet.Allow(); ok {
			args := []any{"peer", claimed, "via", x.peer, "listener", x.typ, "err", err}
			if more > 0 {
				args = append(args, "refused_unlogged", more)
			}
			x.s.log.Warn("connection refused", args...)
		}
		reason := "connection refused"
		var r *limits.Refusal
		if errors.As(err, &r) {
			reason = r.Reason
			if r.Reason == limits.ReasonPenalty {
				reason = penaltyNote(r.Until, time.Now())
			}
		}
		x.deny(reason)
		return false
	}
	x.releaseSource = release
	x.via, x.peer = x.peer, claimed
	x.log = x.s.log.With("peer", claimed, "via", x.via, "listener", x.typ, "preauth", x.pid)
	x.log.Debug("PROXY protocol header taken")
	x.reply(ipc.Message{Kind: ipc.ProxyAccepted})
	return true
}

// checkTransport validates what the pre-auth process says arrived: only
// TCP ports carry TLS and WebSocket, and TLS only as the configuration
// lets it (tlsCarries). The supervisor cannot see the bytes, so a
// compromised pre-auth process may still call a plain connection "ssl"
// where TLS is on: it then gets ssl-auth's modules and encrypted()'s
// pam, as a TLS client would (ARCHITECTURE.md, TLS and WebSocket).
func checkTransport(listener, transport string, tlsCarries func(string) bool) (string, error) {
	if transport == "" {
		return listener, nil
	}
	switch {
	case transport == listener:
		return transport, nil
	case listener == "tcp" && transport == "ws":
		return transport, nil
	case listener == "tcp" && (transport == "ssl" || transport == "wss"):
		if tlsCarries(transport) {
			return transport, nil
		}
		return "", fmt.Errorf("transport %q, but TLS cannot carry it here (no ssl-cert, or the ssl option)", transport)
	}
	return "", fmt.Errorf("transport %q on a %s listener", transport, listener)
}

// streamPair is a connected pair of unix stream sockets, close-on-exec.
func streamPair() (*os.File, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "client-stream"), os.NewFile(uintptr(fds[1]), "transport-stream"), nil
}

// peerAddr is the address of a TCP peer ("host:port", as handle names it);
// invalid for anything else.
func peerAddr(peer string) netip.Addr {
	ap, err := netip.ParseAddrPort(peer)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

func (x *exchange) reply(m ipc.Message) {
	if err := x.ipc.Send(m, nil); err != nil {
		x.log.Debug("replying to pre-auth", "err", err)
	}
}

// refusalDetails is what a module lets the client know beyond
// "authentication failed" (e.g. "account expired").
func refusalDetails(err error) []string {
	var ref *auth.Refusal
	if errors.As(err, &ref) && ref.Detail != "" {
		return []string{ref.Detail}
	}
	return nil
}

// encrypted says whether the client's connection is encrypted, which the
// pam module demands before it asks for a password. AES is refused by
// the pre-auth process, so only TLS counts.
// confidential: no one between the client and us can read the bytes. TLS
// gives that; so does a unix socket, whose bytes only the kernel carries
// (and root, who can read the password file anyway).
func (x *exchange) confidential() bool {
	return x.transport == "ssl" || x.transport == "wss" || x.typ == "unix"
}

// remoteHost is the client's address without the port, for PAM_RHOST.
func (x *exchange) remoteHost() string {
	if x.typ == "unix" {
		return "" // x.peer is "unix:PATH"
	}
	host, _, err := net.SplitHostPort(x.peer)
	if err != nil {
		return ""
	}
	return host
}

type targetError struct{ reason, detail string }

func (e *targetError) Error() string { return e.reason + ": " + e.detail }

// authenticate checks the answer with each module in turn; the first that
// knows sessions for the user grants them.
func (x *exchange) authenticate(m ipc.Message) (*auth.Session, string, error) {
	var verify auth.Verifier
	var plain []byte
	if x.module != nil {
		if len(m.Response) == 0 || len(m.ClientSalt) == 0 {
			return nil, "", errors.New("no challenge response")
		}
		combined, err := digest.CombineSalts(x.saltDig, m.ClientSalt, x.salt)
		x.salt = nil // single use
		if err != nil {
			return nil, "", err
		}
		if !x.s.salts.add(string(combined)) {
			return nil, "", errors.New("danger: an attempt was made to re-use the same computed salt")
		}
		if x.digest == digest.XOR {
			// Asked for by a PlainPassword module only (see run).
			plain = digest.RecoverXorPassword(m.Response, combined)
			defer clear(plain)
		} else {
			verify = func(password []byte) bool {
				return digest.Verify(x.digest, password, combined, m.Response)
			}
		}
	}
	req := auth.Request{Username: x.username, Verify: verify, Plain: plain, RemoteHost: x.remoteHost()}
	var granted *auth.Session
	var by string
	for _, mod := range x.set.modules[x.transport] {
		sess, err := mod.Authenticate(req)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", mod.Name(), err)
		}
		if granted == nil && sess != nil {
			granted, by = sess, mod.Name()
		}
	}
	if granted == nil {
		return nil, "", &targetError{"session not found error", "no sessions found"}
	}
	// Whichever module granted it, the account must be one the admin lets
	// users become (never root, never a system account); refused like a
	// wrong password, and penalised so.
	acct, err := account.Lookup(granted.UID, granted.GID)
	if err == nil {
		err = x.set.policy.Check(acct)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", by, err)
	}
	return granted, by, nil
}

// busySince says, each time it is called, whether a connection was
// accepted since the last call or one is still logging in: the thread
// trimmer waits for a whole idle period (threadtrim.Run's), since under
// load the runtime soon needs its threads again.
func (s *Supervisor) busySince() func() bool {
	last := s.accepted.Load()
	return func() bool {
		now := s.accepted.Load()
		busy := now != last || s.limits.Stats().Startups > 0
		last = now
		return busy
	}
}

// reportStatus keeps systemd's status line (systemctl status) current.
func (s *Supervisor) reportStatus(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	last := ""
	for {
		line := s.statusLine()
		if line != last {
			if err := notifyStatus("%s", line); err != nil {
				s.log.Debug("telling systemd", "err", err)
			}
			last = line
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusLine is the figures, and a failed reload's error until a reload
// works: the running configuration is then not the file's.
func (s *Supervisor) statusLine() string {
	f := s.figures()
	line := fmt.Sprintf("%d relayed, %d logging in, %d authenticated since start, %d sources penalized",
		f["relays"], f["preauth"], f["authenticated"], f["penalized"])
	if s.dir != nil {
		line += "; " + directoryStatus(s.dir.Status(), s.dir.FallbackLogins())
	}
	if p := s.reloadErr.Load(); p != nil {
		line = fmt.Sprintf("reload failed, running the previous configuration: %v; %s", *p, line)
	}
	return line
}

// controlProgram is xpra-proxy-control, installed beside the worker: a
// binary of its own, so relays do not carry the sandbox's code.
func (s *Supervisor) controlProgram() string {
	return filepath.Join(filepath.Dir(s.cfg.Worker), "xpra-proxy-control")
}
