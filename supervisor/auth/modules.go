// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// Config is what modules may need from the proxy's own configuration.
type Config struct {
	PasswordFile string // --password-file: the file module's fallback
	// FileOwnerUID may own auth files and databases besides root
	// (auth-file-owner); 0: root only.
	FileOwnerUID int
	// HelperForbiddenUIDs are the uids an unprivileged auth helper (the
	// ldap module's) must not run as: the pre-auth and control users.
	HelperForbiddenUIDs []int
	// Directory is the database shared with other proxies (the
	// postgresql module's), nil without directory-uri-file.
	Directory *pgdir.DB
	// ProxyName is this proxy's name (proxy-name, else the host name):
	// the session-host module's own name in its tokens.
	ProxyName string
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
		v, err := passwordValue(spec, cfg)
		if err != nil {
			return nil, err
		}
		return simple{name: spec.Name, challenge: true, accept: verifies(v)}, nil
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
		return newMultifile(spec, cfg)
	case "sqlite":
		return newSQLite(spec, cfg)
	case "pam":
		return newPAM(spec)
	case "ldap":
		return newLDAP(spec, cfg)
	case "session_host":
		return newSessionHost(spec, cfg)
	case "postgresql":
		return newPostgreSQL(spec, cfg)
	}
	return nil, fmt.Errorf("auth: unknown module %q (known: allow, none, fail, reject, password, env, file, multifile, sqlite, pam, ldap, session-host, postgresql)", spec.Name)
}

// passwordValue is the password module's secret: value=, or the first
// line of value-file= (checked like every auth file), which keeps it out
// of ps.
func passwordValue(spec Spec, cfg Config) ([]byte, error) {
	v, hasValue := spec.Options["value"]
	file, hasFile := spec.Options["value_file"]
	switch {
	case hasValue && hasFile:
		return nil, fmt.Errorf("auth: module password: value and value-file are exclusive")
	case hasFile:
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("auth: module password: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("auth: module password: %w", err)
		}
		if err := checkSecretFile(file, fi, fileOwners(cfg)); err != nil {
			return nil, fmt.Errorf("auth: module password: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("auth: module password: reading %s: %w", file, err)
		}
		line, _, _ := bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return nil, fmt.Errorf("auth: module password: %s is empty", file)
		}
		return line, nil
	case v == "":
		return nil, fmt.Errorf("auth: module password needs value=PASSWORD or value-file=PATH")
	}
	return []byte(v), nil
}

// SecretOnCommandLine reports whether a module spec carries a secret
// itself (password,value=...): on the command line, every local user
// reads it in ps.
func SecretOnCommandLine(spec Spec) bool {
	_, ok := spec.Options["value"]
	return spec.Name == "password" && ok
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
