// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/xpra-proxy/xpra-proxy/launch"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
	"github.com/xpra-proxy/xpra-proxy/placement"
	"github.com/xpra-proxy/xpra-proxy/supervisor/account"
	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
)

// Reload (SIGHUP, systemctl reload) replaces the settings below while the
// supervisor runs: listeners, their queued connections, relays and the
// transport processes of live connections are not touched. A connection
// is judged by the settings of the moment its exchange began: a login
// under way when the reload comes ends under the old ones, the next one
// gets the new ones. The spare pre-auth processes (started with the old
// TLS key pair, limits and timeouts) are replaced.

// settings is everything built from the configuration that a reload
// replaces, as one snapshot.
type settings struct {
	cfg     Config
	modules map[string][]auth.Module // by transport
	policy  account.Policy           // who may be proxied to, whichever module granted
	front   *os.File                 // sealed memfd for TCP pre-auth processes (launch.Front)
	starter *starter                 // sessions on demand; nil when start-session is never
	router  *placement.Router        // session-hosts: where logins go; nil: this machine's sessions
	// proxyFrom: proxy-protocol-from, parsed (trusted load balancers)
	proxyFrom []netip.Prefix

	users int // exchanges and starts using it; guarded by Supervisor.setMu
}

// preauthProgram is xpra-proxy-preauth, installed beside the worker: a
// binary of its own, so relay workers do not carry its TLS and HTTP code.
func (st *settings) preauthProgram() string {
	return filepath.Join(filepath.Dir(st.cfg.Worker), "xpra-proxy-preauth")
}

// close lets go of what the snapshot holds open: the front memfd and the
// modules' databases.
func (st *settings) close(log *slog.Logger) {
	if st.front != nil {
		st.front.Close()
	}
	for _, ms := range st.modules {
		for _, m := range ms {
			if c, ok := m.(io.Closer); ok {
				if err := c.Close(); err != nil {
					log.Warn("closing a replaced auth module", "module", m.Name(), "err", err)
				}
			}
		}
	}
}

// buildSettings checks cfg and builds its modules, front document and
// session starter. book: the display reservations, which outlive a
// reload.
func buildSettings(cfg Config, log *slog.Logger, book *displayBook, dir *pgdir.DB) (_ *settings, err error) {
	st := &settings{cfg: cfg, modules: map[string][]auth.Module{}, policy: cfg.policy()}
	defer func() {
		if err != nil {
			st.close(log)
		}
	}()
	if st.proxyFrom, err = cfg.proxyFrom(); err != nil {
		return nil, err
	}
	if len(cfg.ArgvSecrets) > 0 {
		log.Warn("an auth secret is on the command line, where every local user can read it (ps); use value-file= or the config file",
			"modules", cfg.ArgvSecrets)
	}
	authCfg := auth.Config{PasswordFile: cfg.PasswordFile, HelperForbiddenUIDs: cfg.helperForbiddenUIDs(), Directory: dir,
		ProxyName: cfg.proxyName()}
	if cfg.AuthFileOwner != "" {
		uid, err := auth.LookupUID(cfg.AuthFileOwner)
		if err != nil {
			return nil, fmt.Errorf("auth-file-owner: %w", err)
		}
		authCfg.FileOwnerUID = uid
	}
	specsOf := cfg.authSpecs()
	// In this order, the keys' own transports before those that inherit
	// tcp-auth: a bad module is reported under the key that names it.
	for _, typ := range []string{"unix", "tcp", "ssl", "ws", "wss"} {
		specs := specsOf[typ]
		key := typ + "-auth"
		if typ == "unix" {
			key = "auth"
		}
		challenges := 0
		for _, text := range specs {
			spec, err := auth.ParseSpec(text)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			m, err := auth.New(spec, authCfg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			if m.NeedsChallenge() {
				challenges++
			}
			st.modules[typ] = append(st.modules[typ], m)
		}
		if challenges > 1 {
			return nil, fmt.Errorf("%s: at most one module may ask for a password (chain it with none or allow)", key)
		}
	}
	fr, err := cfg.FrontConfig.front()
	if err != nil {
		return nil, err
	}
	// Checked here, where the files are read: at start-up (a bad pair
	// would otherwise fail every TLS handshake), --check-config and reload.
	if len(fr.CertPEM) > 0 {
		if err := checkKeyPair(fr.CertPEM, fr.KeyPEM); err != nil {
			return nil, fmt.Errorf("ssl-cert %s / ssl-key: %w", cfg.SSLCert, err)
		}
	}
	if st.front, err = launch.WriteFront(fr); err != nil {
		return nil, err
	}
	if _, err := os.Stat(st.preauthProgram()); err != nil {
		return nil, fmt.Errorf("pre-auth program: %w", err)
	}
	if _, err := os.Stat(cfg.Worker); err != nil {
		return nil, fmt.Errorf("worker program: %w", err)
	}
	if st.starter, err = newStarter(cfg.SessionConfig, log, book); err != nil {
		return nil, err
	}
	if st.starter != nil {
		st.starter.dir = dir
	}
	if st.router, err = cfg.router(authCfg, dir, log); err != nil {
		return nil, err
	}
	if st.router != nil && st.starter != nil {
		// A client's start-new-session would start a session on the
		// front itself: the users' sessions belong on the hosts.
		log.Info("session-hosts: this front starts no sessions itself (start-session ignored)")
		st.starter = nil
	}
	return st, nil
}

// settings returns the current snapshot for one use; the caller gives it
// back with done once that use is over.
func (s *Supervisor) settings() *settings {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.set.users++
	return s.set
}

// done gives back a snapshot settings returned; a replaced one is closed
// by its last user.
func (s *Supervisor) done(st *settings) {
	s.setMu.Lock()
	st.users--
	last := st.users == 0 && st != s.set
	s.setMu.Unlock()
	if last {
		st.close(s.log)
	}
}

// current is the snapshot now, for a look that holds nothing it opened
// (a status line, a key that only a restart changes).
func (s *Supervisor) current() *settings {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	return s.set
}

// restartOnly are the keys a reload cannot change: what is bound or
// started once, at start-up. A reload keeps their old values and says
// so. The listeners may be systemd's (socket activation): those change
// in xpra-proxy.socket, with a restart of the socket units.
var restartOnly = []struct {
	key string
	get func(*Config) any
	set func(dst, src *Config)
}{
	{"bind-tcp", func(c *Config) any { return c.BindTCP }, func(d, s *Config) { d.BindTCP = s.BindTCP }},
	{"bind-unix", func(c *Config) any { return c.BindUnix }, func(d, s *Config) { d.BindUnix = s.BindUnix }},
	{"run-dir", func(c *Config) any { return c.RunDir }, func(d, s *Config) { d.RunDir = s.RunDir }},
	{"control-socket", func(c *Config) any { return c.ControlSocket }, func(d, s *Config) { d.ControlSocket = s.ControlSocket }},
	{"control-user", func(c *Config) any { return c.ControlUser }, func(d, s *Config) { d.ControlUser = s.ControlUser }},
	{"metrics-bind", func(c *Config) any { return c.MetricsBind }, func(d, s *Config) { d.MetricsBind = s.MetricsBind }},
	// The pre-auth processes of live TLS and WebSocket connections, and
	// the spares, run as this user; the supervisor checks each message's
	// sender against it.
	// One pool for the life of the supervisor: penalties, relay counts
	// and sessions it recorded live in that database.
	{"directory-uri-file", func(c *Config) any { return c.DirectoryURIFile }, func(d, s *Config) { d.DirectoryURIFile = s.DirectoryURIFile }},
	{"proxy-name", func(c *Config) any { return c.ProxyName }, func(d, s *Config) { d.ProxyName = s.ProxyName }},
	{"preauth-user", func(c *Config) any { return c.PreauthUser }, func(d, s *Config) { d.PreauthUser = s.PreauthUser }},
}

// keepRestartOnly copies the restart-only keys of old into next and
// returns those that differed.
func keepRestartOnly(old Config, next *Config) []string {
	var changed []string
	for _, k := range restartOnly {
		if !reflect.DeepEqual(k.get(&old), k.get(next)) {
			changed = append(changed, k.key)
			k.set(next, &old)
		}
	}
	return changed
}

// ErrReloadHeld is Reload's answer while holding the sockets on a bad
// configuration: only a restart starts the proxy.
var ErrReloadHeld = errors.New("the proxy is not running (configuration error at start-up): systemctl restart xpra-proxy.service")

// Reload reads the configuration again (load) and, when all of it is
// usable, as --check-config judges it, puts it in place of the running
// one; otherwise the running one stays, and the error says why, naming
// the key. systemd hears RELOADING=1 first and READY=1 last, with the
// outcome as the status line.
func (s *Supervisor) Reload(load func() (Config, error)) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if err := notifyReloading(); err != nil {
		s.log.Warn("telling systemd", "err", err)
	}
	err := s.reload(load)
	if err != nil {
		s.log.Error("reload failed: the running configuration stays", "err", err)
		s.reloadErr.Store(&err)
	} else {
		s.reloadErr.Store(nil)
	}
	if nerr := notifyReady(); nerr != nil {
		s.log.Warn("telling systemd", "err", nerr)
	}
	if nerr := notifyStatus("%s", s.statusLine()); nerr != nil {
		s.log.Warn("telling systemd", "err", nerr)
	}
	return err
}

func (s *Supervisor) reload(load func() (Config, error)) error {
	cfg, err := load()
	if err != nil {
		return err
	}
	old := s.current().cfg
	changed := keepRestartOnly(old, &cfg)
	if err := checkFiles(cfg); err != nil {
		return err
	}
	next, err := buildSettings(cfg, s.log, s.displays, s.dir)
	if err != nil {
		return err
	}
	if err := s.limits.Reconfigure(cfg.Limits()); err != nil {
		next.close(s.log)
		return err
	}
	s.userRelays.setMax(cfg.MaxRelaysPerUser)
	s.setMu.Lock()
	prev := s.set
	s.set = next
	idle := prev.users == 0
	s.setMu.Unlock()
	if idle {
		prev.close(s.log)
	}
	s.spares.renew()
	s.warm.clear(false) // started under the settings before; the next logins start new ones
	if len(changed) > 0 {
		s.log.Warn("reloaded, but these keys need a restart to change (systemctl restart xpra-proxy.service); their old values stay",
			"keys", strings.Join(changed, ","))
	}
	if old.FirstPacketTimeout != cfg.FirstPacketTimeout && len(old.BindTCP) > 0 {
		s.log.Warn("first-packet-timeout: pre-auth processes use the new value; TCP_DEFER_ACCEPT on the bind-tcp ports keeps the old one until a restart")
	}
	s.log.Info("configuration reloaded", "changed", strings.Join(diffKeys(old, cfg), ","))
	return nil
}

// diffKeys names the settings that differ between a and b, by their
// TOML keys, for the reload's log line.
func diffKeys(a, b Config) []string {
	var out []string
	var walk func(va, vb reflect.Value)
	walk = func(va, vb reflect.Value) {
		t := va.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(va.Field(i), vb.Field(i))
				continue
			}
			key := strings.Split(f.Tag.Get("toml"), ",")[0]
			if key == "" || key == "-" || !f.IsExported() {
				continue
			}
			if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
				out = append(out, key)
			}
		}
	}
	walk(reflect.ValueOf(a), reflect.ValueOf(b))
	slices.Sort(out)
	return out
}

// displayBook is the display reservations of sessions being started
// (ondemand.go), kept across reloads: a starter built by a reload must
// not hand out a display an earlier one is starting a session on.
type displayBook struct {
	mu       sync.Mutex
	reserved map[int]reservation // display number → why it counts as taken
}

func newDisplayBook() *displayBook {
	return &displayBook{reserved: map[int]reservation{}}
}
