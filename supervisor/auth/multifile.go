// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// multifileModule is xpra's "multifile" module: one line per user,
//
//	username|password|uid|gid|displays|env_options|session_options
//
// each naming the password and the session that password grants.
type multifileModule struct {
	src *watchedFile[map[string]entry]
}

// entry is one parsed multifile line.
type entry struct {
	password []byte
	session  Session
	line     int
}

// dummyPassword is verified when the user is unknown, so the time taken
// does not tell a client which usernames exist.
var dummyPassword = []byte("\x00no such user: dummy password\x00")

func newMultifile(spec Spec, cfg Config) (Module, error) {
	name := spec.Options["filename"]
	if name == "" {
		return nil, fmt.Errorf("auth: module multifile needs filename=PATH")
	}
	owners := fileOwners(cfg)
	if err := checkSecretPath(name, owners); err != nil {
		return nil, fmt.Errorf("auth: module multifile: %w", err)
	}
	return &multifileModule{src: newWatchedFile(name, owners, func(data []byte) map[string]entry {
		entries, warnings := parseMultifile(data)
		// Logged once per (re)load, not per attempt; the messages never
		// contain a password.
		for _, w := range warnings {
			slog.Warn("auth: multifile: problem in password file", "file", name, "problem", w)
		}
		return entries
	})}, nil
}

func (m *multifileModule) Name() string         { return "multifile" }
func (m *multifileModule) NeedsChallenge() bool { return true }

func (m *multifileModule) Authenticate(r Request) (*Session, error) {
	if r.Verify == nil && r.Plain == nil {
		return nil, fmt.Errorf("%w: multifile: no challenge answered", ErrDenied)
	}
	entries, err := m.src.get()
	if err != nil {
		return nil, fmt.Errorf("%w: multifile: %w", ErrDenied, err)
	}
	e, ok := entries[r.Username]
	if !ok {
		verifies(dummyPassword)(r)
		return nil, fmt.Errorf("%w: multifile: no entry for user %q in %s", ErrDenied, r.Username, m.src.path)
	}
	if !verifies(e.password)(r) {
		return nil, fmt.Errorf("%w: multifile: wrong password for user %q (%s line %d)", ErrDenied, r.Username, m.src.path, e.line)
	}
	return cloneSession(e.session), nil
}

// parseMultifile parses a multifile's content. Lines it cannot use are
// skipped and reported in the returned errors (which never quote a line,
// since a line may hold a password). Blank lines and '#' comments are
// ignored; for a duplicated username the first line wins.
func parseMultifile(data []byte) (map[string]entry, []error) {
	entries := map[string]entry{}
	var warnings []error
	for i, raw := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line := strings.TrimSpace(string(raw))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, username, err := parseMultifileLine(line)
		if err != nil {
			warnings = append(warnings, fmt.Errorf("line %d: %w, line skipped", n, err))
			continue
		}
		if prev, dup := entries[username]; dup {
			warnings = append(warnings, fmt.Errorf("line %d: duplicate entry for user %q, keeping line %d", n, username, prev.line))
			continue
		}
		e.line = n
		entries[username] = e
	}
	return entries, warnings
}

func parseMultifileLine(line string) (entry, string, error) {
	f := strings.Split(line, "|")
	if len(f) < 2 {
		return entry{}, "", errors.New("expected at least username|password")
	}
	username := f[0]
	if username == "" {
		// No client should match a nameless entry by accident.
		return entry{}, "", errors.New("empty username")
	}
	e := entry{password: []byte(f[1])}
	// With fewer than 5 fields the entry grants nobody's uid and no
	// displays (an empty, non-nil list), as in the reference.
	var uidField, gidField string
	e.session.Displays = []string{}
	if len(f) >= 5 {
		uidField, gidField = f[2], f[3]
		if d := ParseDisplays(f[4]); d != nil {
			e.session.Displays = d
		}
	}
	var err error
	if e.session.UID, err = LookupUID(uidField); err != nil {
		return entry{}, "", fmt.Errorf("user %q: uid: %w", username, err)
	}
	if e.session.GID, err = LookupGID(gidField); err != nil {
		return entry{}, "", fmt.Errorf("user %q: gid: %w", username, err)
	}
	e.session.Env = map[string]string{}
	e.session.SessionOptions = map[string]string{}
	if len(f) >= 6 {
		e.session.Env = ParseOptions(f[5])
	}
	if len(f) >= 7 {
		e.session.SessionOptions = ParseOptions(f[6])
	}
	return e, username, nil
}
