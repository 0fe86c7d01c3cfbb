// Package supervisor is the root process of xpra-proxy. It accepts
// connections, starts an unprivileged pre-auth process for each, checks
// the answers to password challenges with the stored secrets, and starts
// the relay worker as the session's owner. It never reads a byte a client
// sent: the client socket only passes through it to the children
// (ARCHITECTURE.md; TestSupervisorImports keeps protocol parsers out).
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/namedfd"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
)

// Supervisor serves the listeners.
type Supervisor struct {
	cfg     Config
	log     *slog.Logger
	modules map[string][]auth.Module // by listener type
	preauth *syscall.Credential
	slots   chan struct{} // bounds concurrent unauthenticated connections
	wg      sync.WaitGroup
	salts   *saltCache
}

// New checks the configuration and builds the auth modules.
func New(cfg Config, log *slog.Logger) (*Supervisor, error) {
	s := &Supervisor{cfg: cfg, log: log, modules: map[string][]auth.Module{},
		slots: make(chan struct{}, cfg.MaxPreauth), salts: newSaltCache(1 << 16)}
	for typ, specs := range map[string][]string{"unix": cfg.Auth, "tcp": cfg.TCPAuth} {
		challenges := 0
		for _, text := range specs {
			spec, err := auth.ParseSpec(text)
			if err != nil {
				return nil, err
			}
			m, err := auth.New(spec, auth.Config{PasswordFile: cfg.PasswordFile})
			if err != nil {
				return nil, fmt.Errorf("%s auth: %w", typ, err)
			}
			if m.NeedsChallenge() {
				challenges++
			}
			s.modules[typ] = append(s.modules[typ], m)
		}
		if challenges > 1 {
			return nil, fmt.Errorf("%s auth: at most one module may ask for a password (chain it with none or allow)", typ)
		}
	}
	cred, err := preauthCredential(cfg.PreauthUser)
	if err != nil {
		return nil, err
	}
	s.preauth = cred
	if _, err := os.Stat(cfg.Worker); err != nil {
		return nil, fmt.Errorf("worker program: %w", err)
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

// Serve accepts connections until ctx ends, then waits for the connections
// still in pre-auth (relay workers live on by themselves).
func (s *Supervisor) Serve(ctx context.Context, ls []Listener) error {
	var wg sync.WaitGroup
	for _, l := range ls {
		s.log.Info("listening", "type", l.Type, "addr", l.Addr().String())
		wg.Go(func() { s.accept(ctx, l) })
	}
	<-ctx.Done()
	for _, l := range ls {
		l.Close()
	}
	wg.Wait()
	s.wg.Wait()
	return nil
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
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("too many unauthenticated connections; dropping one", "peer", c.RemoteAddr().String(), "max", cap(s.slots))
			c.Close()
			continue
		}
		s.wg.Go(func() {
			defer func() { <-s.slots }()
			s.handle(ctx, c, l.Type)
		})
	}
}

// fileOf returns a duplicate descriptor of a connection to pass to a child.
func fileOf(c net.Conn) (*os.File, error) {
	fc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("cannot pass a %T", c)
	}
	return fc.File()
}

// handle runs one connection's pre-auth exchange.
func (s *Supervisor) handle(ctx context.Context, c net.Conn, typ string) {
	defer c.Close()
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
	sup, childEnd, err := ipc.Pair()
	if err != nil {
		log.Error("ipc", "err", err)
		return
	}
	defer sup.Close()
	cmd := s.command("--preauth", "--listener="+typ, "--peer="+peer,
		fmt.Sprintf("--packet-limit=%d", s.cfg.PreauthPacketLimit),
		fmt.Sprintf("--login-timeout=%s", s.cfg.LoginTimeout.Duration))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/", "LANG=C.UTF-8"}
	namedfd.Attach(cmd, namedfd.Fd{Name: "client", File: client}, namedfd.Fd{Name: "ipc", File: childEnd})
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.preauth, Setsid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	childEnd.Close()
	if err != nil {
		log.Error("starting pre-auth process", "err", err)
		return
	}
	pid := cmd.Process.Pid
	log = log.With("preauth", pid)
	done := make(chan struct{})
	defer close(done)
	go func() {
		// The login timeout bounds the whole exchange, whatever the child does.
		select {
		case <-time.After(s.cfg.LoginTimeout.Duration + 5*time.Second):
			log.Warn("pre-auth process over its time; killing it")
			cmd.Process.Kill()
		case <-ctx.Done():
			cmd.Process.Kill()
		case <-done:
		}
	}()
	x := exchange{s: s, log: log, ipc: sup, pid: pid, typ: typ, peer: peer, client: client}
	x.run()
	if err := cmd.Wait(); err != nil && x.accepted == 0 {
		log.Debug("pre-auth process ended", "err", err)
	}
}

// command is the worker program with its mode and arguments.
func (s *Supervisor) command(args ...string) *exec.Cmd {
	cmd := exec.Command(s.cfg.Worker, args...)
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr // children log to the service's journal
	return cmd
}

// exchange is one connection's conversation with its pre-auth process.
type exchange struct {
	s        *Supervisor
	log      *slog.Logger
	ipc      *ipc.Conn
	pid      int
	typ      string
	peer     string
	client   *os.File
	username string
	module   auth.Module // the one that asked for a password
	salt     []byte      // single use
	digest   string
	saltDig  string
	accepted int
}

func (x *exchange) recv() (ipc.Message, *os.File, error) {
	m, f, peer, err := x.ipc.Recv()
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
	if err := x.ipc.Send(ipc.Message{Kind: ipc.Denied, Reason: reason, Details: details}, nil); err != nil {
		x.log.Debug("telling pre-auth", "err", err)
	}
}

func (x *exchange) run() {
	m, _, err := x.recv()
	if err != nil {
		if !errors.Is(err, ipc.ErrClosed) {
			x.log.Warn("pre-auth", "err", err)
		}
		return // version requests and bad clients end here
	}
	if m.Kind != ipc.AuthBegin {
		x.log.Warn("pre-auth protocol", "got", m.Kind, "want", ipc.AuthBegin)
		return
	}
	x.username = m.Username
	modules := x.s.modules[x.typ]
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
		if x.digest, err = digest.ChooseDigest(m.Digests, order); err != nil {
			x.deny("authentication failed", "cannot proceed without an hmac digest")
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
	sess, module, err := x.authenticate(m)
	if err != nil {
		x.log.Warn("authentication failed", "username", x.username, "err", err)
		var te *targetError
		if errors.As(err, &te) {
			x.deny(te.reason, te.detail)
		} else {
			x.deny("authentication failed")
		}
		return
	}
	pid, err := x.s.startRelay(x, sess, module, handover)
	if err != nil {
		x.log.Error("starting relay worker", "err", err)
		x.deny("server error", "failed to start the proxy instance")
		return
	}
	x.accepted = pid
	x.log.Info("authenticated", "username", x.username, "module", module, "uid", sess.UID, "worker", pid)
	x.reply(ipc.Message{Kind: ipc.Accepted, Worker: pid})
}

func (x *exchange) reply(m ipc.Message) {
	if err := x.ipc.Send(m, nil); err != nil {
		x.log.Debug("replying to pre-auth", "err", err)
	}
}

type targetError struct{ reason, detail string }

func (e *targetError) Error() string { return e.reason + ": " + e.detail }

// authenticate checks the answer with each module in turn; the first that
// knows sessions for the user grants them.
func (x *exchange) authenticate(m ipc.Message) (*auth.Session, string, error) {
	var verify auth.Verifier
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
		verify = func(password []byte) bool {
			return digest.Verify(x.digest, password, combined, m.Response)
		}
	}
	req := auth.Request{Username: x.username, Verify: verify}
	var granted *auth.Session
	var by string
	for _, mod := range x.s.modules[x.typ] {
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
	if granted.UID == 0 || granted.GID == 0 {
		return nil, "", &targetError{"authentication error", "cannot run proxy instances as root"}
	}
	return granted, by, nil
}
