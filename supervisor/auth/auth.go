// SPDX-License-Identifier: GPL-2.0-or-later

// Package auth holds the proxy's authentication modules, which run inside
// the root supervisor because they hold the stored secrets. They never see
// client bytes: the supervisor hands them the client's username and a
// verifier that checks a candidate password against the challenge answer
// (an HMAC over the single-use salts), so no stored password leaves root.
//
// Module names and options follow xpra's --auth / --tcp-auth syntax
// (PROXY.md §4): "name", "name,opt=v,opt2=v2" or "name:opt=v".
package auth

import (
	"errors"
	"fmt"
	"strings"
)

// Session is what a module grants: whose sessions, which ones, and the
// options the reference's modules return (PROXY.md §4.2).
type Session struct {
	UID, GID int
	// Displays lists the targets (":10", "tcp://host:port/", ...). Nil
	// means "username matters": the worker scans the uid's socket
	// directories for live sessions, as `xpra list` does.
	Displays       []string
	Env            map[string]string // applied to the worker (filtered)
	SessionOptions map[string]string // e.g. compression_level, password
}

// Verifier reports whether password is the one the client answered the
// challenge with. Modules call it for each stored candidate.
type Verifier func(password []byte) bool

// Request is one authentication attempt.
type Request struct {
	Username string   // from the client's hello (may be empty)
	Verify   Verifier // nil when no challenge was answered
	// Plain is the password itself when the client answered an xor
	// challenge (PAM-style modules); nil otherwise.
	Plain []byte
	// RemoteHost is the client's address without the port, "" on unix
	// sockets (PAM_RHOST).
	RemoteHost string
}

// Module is one configured authentication module.
type Module interface {
	// Name is the module name as configured ("sqlite", "multifile", ...).
	Name() string
	// NeedsChallenge says whether the client must answer a password
	// challenge for this module.
	NeedsChallenge() bool
	// Authenticate checks the request and returns the session it grants.
	// A nil Session with a nil error means "authenticated, but this module
	// knows no sessions" (the supervisor then asks the next module).
	Authenticate(r Request) (*Session, error)
}

// ErrDenied is the error of a refused authentication; its text is what
// the client is told ("authentication failed"), so details go in the log.
var ErrDenied = errors.New("authentication failed")

// Refusal is a denial whose Detail the client may be shown after
// "authentication failed" (e.g. "account expired"); Log is for the log
// only. It wraps ErrDenied.
type Refusal struct {
	Detail string
	Log    string
}

func (e *Refusal) Error() string {
	msg := ErrDenied.Error()
	for _, s := range []string{e.Detail, e.Log} {
		if s != "" {
			msg += ": " + s
		}
	}
	return msg
}

func (e *Refusal) Unwrap() error { return ErrDenied }

// Spec is a parsed module string.
type Spec struct {
	Name    string
	Options map[string]string
}

// ParseSpec parses "name", "name,k=v,..." or "name:k=v,...". Dashes in the
// name become underscores, as in xpra. A value that must hold commas (an
// LDAP DN) is written in double quotes: k="cn=%username,dc=example,dc=org";
// the quotes are removed, and such a value cannot hold a double quote.
func ParseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Spec{}, errors.New("auth: empty module")
	}
	name, rest := s, ""
	if i := strings.IndexAny(s, ":,"); i >= 0 {
		name, rest = s[:i], s[i+1:]
	}
	spec := Spec{Name: strings.ReplaceAll(strings.ToLower(name), "-", "_"), Options: map[string]string{}}
	for rest != "" {
		var kv string
		var more bool
		kv, rest, more = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return Spec{}, fmt.Errorf("auth: module %q: option %q is not key=value", spec.Name, kv)
		}
		if strings.HasPrefix(v, `"`) {
			// The value runs to the next quote, commas included.
			tail := v[1:]
			if more {
				tail += "," + rest
			}
			end := strings.IndexByte(tail, '"')
			if end < 0 {
				return Spec{}, fmt.Errorf("auth: module %q: option %q: unterminated quoted value", spec.Name, k)
			}
			v, rest = tail[:end], tail[end+1:]
			if rest != "" && rest[0] != ',' {
				return Spec{}, fmt.Errorf("auth: module %q: option %q: text after the closing quote", spec.Name, k)
			}
			rest, more = strings.CutPrefix(rest, ",")
		}
		if more && rest == "" {
			return Spec{}, fmt.Errorf("auth: module %q: option %q is not key=value", spec.Name, "")
		}
		spec.Options[strings.ReplaceAll(k, "-", "_")] = v
	}
	return spec, nil
}
