// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// postgresqlModule is the sqlite module's users table in the directory
// several proxies share (issue 16, package pgdir): the same rows, the
// same rules (the password the client proves selects its row). While the
// database is unreachable, the fallback module, if any, decides the
// login; without one the login is refused. pgdir bounds how long a login
// waits for a dead database (directory-timeout, then at once for
// directory-retry).
type postgresqlModule struct {
	db       *pgdir.DB
	fallback Module // nil: none
}

// postgresqlPlain is the module when its fallback needs the password
// itself (pam, ldap): the challenge is decided before anyone knows
// whether the database answers, so every login then asks for the
// password with the xor digest, over TLS only, as the fallback would.
// The database's rows are checked against that plain password.
type postgresqlPlain struct{ *postgresqlModule }

func (m postgresqlPlain) CheckTransport(confidential bool) error {
	return m.fallback.(PlainPassword).CheckTransport(confidential)
}

func newPostgreSQL(spec Spec, cfg Config) (Module, error) {
	for k := range spec.Options {
		if k != "fallback" {
			return nil, fmt.Errorf("auth: module postgresql: unknown option %q (known: fallback)", k)
		}
	}
	if cfg.Directory == nil {
		return nil, errors.New("auth: module postgresql: no shared directory: set directory-uri-file to a root-only file holding the PostgreSQL URI (it is opened at start-up: a reload does not)")
	}
	m := &postgresqlModule{db: cfg.Directory}
	text, ok := spec.Options["fallback"]
	if !ok {
		return m, nil
	}
	fs, err := ParseSpec(text)
	if err != nil {
		return nil, fmt.Errorf("auth: module postgresql: fallback: %w", err)
	}
	switch fs.Name {
	case "postgresql":
		return nil, errors.New("auth: module postgresql: the fallback cannot be the database that failed")
	case "none", "allow":
		return nil, fmt.Errorf("auth: module postgresql: fallback %s checks no password: an outage would let anyone in", fs.Name)
	}
	if m.fallback, err = New(fs, cfg); err != nil {
		return nil, fmt.Errorf("auth: module postgresql: fallback: %w", err)
	}
	if !m.fallback.NeedsChallenge() {
		return nil, fmt.Errorf("auth: module postgresql: fallback %s asks for no password", fs.Name)
	}
	if _, ok := m.fallback.(PlainPassword); ok {
		return postgresqlPlain{m}, nil
	}
	return m, nil
}

func (m *postgresqlModule) Name() string         { return "postgresql" }
func (m *postgresqlModule) NeedsChallenge() bool { return true }

func (m *postgresqlModule) Authenticate(r Request) (*Session, error) {
	if r.Verify == nil && r.Plain == nil {
		return nil, fmt.Errorf("%w: postgresql: no challenge answered", ErrDenied)
	}
	rows, err := m.db.UserRows(context.Background(), r.Username)
	if errors.Is(err, pgdir.ErrUnavailable) && m.fallback != nil {
		m.db.CountFallback()
		slog.Warn("auth: postgresql: the shared directory is unreachable: the fallback module decides this login",
			"user", r.Username, "fallback", m.fallback.Name(), "reason", err)
		s, ferr := m.fallback.Authenticate(r)
		if ferr != nil {
			return nil, fmt.Errorf("fallback %s: %w", m.fallback.Name(), ferr)
		}
		return s, nil
	}
	if err != nil {
		// pgdir.ErrUnavailable stays in the chain: the supervisor does
		// not penalise a source for our outage.
		return nil, fmt.Errorf("%w: postgresql: %w", ErrDenied, err)
	}
	passwords := make([]string, len(rows))
	for i, u := range rows {
		passwords[i] = u.Password
	}
	i := provedPassword(r, passwords)
	switch {
	case len(rows) == 0:
		return nil, fmt.Errorf("%w: postgresql: user %q not found", ErrDenied, r.Username)
	case i < 0:
		return nil, fmt.Errorf("%w: postgresql: wrong password for user %q", ErrDenied, r.Username)
	}
	u := rows[i]
	return rowSession("postgresql", r.Username, u.UID, u.GID, u.Displays, u.EnvOptions, u.SessionOptions)
}

// Close lets the fallback's resources go (a reload replaced the module);
// the pool is the supervisor's, shared by every module built on it.
func (m *postgresqlModule) Close() error {
	if c, ok := m.fallback.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
