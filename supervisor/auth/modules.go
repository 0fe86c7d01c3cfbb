package auth

import (
	"crypto/subtle"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// Config is what modules may need from the proxy's own configuration.
type Config struct {
	PasswordFile string // --password-file: the file module's fallback
}

// New builds a module from its spec.
func New(spec Spec, cfg Config) (Module, error) {
	switch spec.Name {
	case "allow":
		return simple{name: spec.Name, challenge: true, accept: func(Request) bool { return true }}, nil
	case "none":
		return simple{name: spec.Name, accept: func(Request) bool { return true }}, nil
	case "reject":
		return simple{name: spec.Name, challenge: true, accept: func(Request) bool { return false }}, nil
	case "fail":
		return nil, fmt.Errorf("auth: module fail: failing (as configured)")
	case "password":
		v, ok := spec.Options["value"]
		if !ok || v == "" {
			return nil, fmt.Errorf("auth: module password needs value=PASSWORD")
		}
		return simple{name: spec.Name, challenge: true, accept: verifies([]byte(v))}, nil
	case "env":
		name := spec.Options["name"]
		if name == "" {
			name = "XPRA_PASSWORD"
		}
		v := os.Getenv(name)
		if v == "" {
			return nil, fmt.Errorf("auth: module env: $%s is not set", name)
		}
		return simple{name: spec.Name, challenge: true, accept: verifies([]byte(v))}, nil
	case "file":
		return newFile(spec, cfg)
	case "multifile":
		return newMultifile(spec)
	case "sqlite":
		return newSQLite(spec)
	case "pam":
		return newPAM(spec)
	}
	return nil, fmt.Errorf("auth: unknown module %q (known: allow, none, fail, reject, password, env, file, multifile, sqlite, pam)", spec.Name)
}

// simple is a module that grants the client-named user's own sessions.
type simple struct {
	name      string
	challenge bool
	accept    func(Request) bool
}

func (m simple) Name() string         { return m.name }
func (m simple) NeedsChallenge() bool { return m.challenge }
func (m simple) Authenticate(r Request) (*Session, error) {
	if !m.accept(r) {
		return nil, ErrDenied
	}
	return UserSession(r.Username)
}

func verifies(password []byte) func(Request) bool {
	return func(r Request) bool {
		if r.Plain != nil {
			return subtle.ConstantTimeCompare(r.Plain, password) == 1
		}
		return r.Verify != nil && r.Verify(password)
	}
}

// UserSession is the "username matters" session of a system user: its
// uid and gid from passwd, sessions found by scanning its socket dirs.
func UserSession(username string) (*Session, error) {
	if username == "" {
		return nil, fmt.Errorf("%w: no username given", ErrDenied)
	}
	u, err := user.Lookup(username)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown user %q", ErrDenied, username)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &Session{UID: uid, GID: gid}, nil
}

// LookupUID resolves a uid given as a name or a number; empty means nobody.
func LookupUID(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = "nobody"
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("auth: unknown user %q: %w", s, err)
	}
	return strconv.Atoi(u.Uid)
}

// LookupGID resolves a gid given as a name or a number; empty means nobody
// (Debian's group for it is nogroup).
func LookupGID(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = "nobody"
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil && s == "nobody" {
		g, err = user.LookupGroup("nogroup")
	}
	if err != nil {
		return 0, fmt.Errorf("auth: unknown group %q: %w", s, err)
	}
	return strconv.Atoi(g.Gid)
}

// ParseOptions parses "k=v;k2=v2" (values may contain '='), as the
// multifile and sqlite env_options and session_options columns.
func ParseOptions(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k != "" {
			out[k] = v
		}
	}
	return out
}

// ParseDisplays splits a CSV display list, dropping empty entries.
func ParseDisplays(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}
